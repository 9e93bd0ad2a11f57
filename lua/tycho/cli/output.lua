--- What commands print: one JSON document on stdout for --json (stable
-- field names, documented with each command), aligned text tables
-- otherwise, numbers in their shortest exact form. Errors go to stderr.
local json = require "tycho.util.json"
local pretty = require "tycho.util.pretty"

local M = {}

local function usage_error(text)
  io.stderr:write(text, "\n")
  return 2
end

--- The two ways a command ends badly, for command `cmd`: usage(text) writes
-- text (and `hint`, when given) to stderr and returns 2; fail(msg) writes
-- "cmd: msg" and returns 1.
function M.reporters(cmd, hint)
  local function usage(text)
    io.stderr:write(text, "\n", hint and (hint .. "\n") or "")
    return 2
  end
  local function fail(msg)
    io.stderr:write(cmd, ": ", tostring(msg), "\n")
    return 1
  end
  return usage, fail
end

--- A number as the shortest text that reads back as it (33.6, not
-- 33.600000000000001); "-" for a missing one.
function M.number(v)
  if type(v) ~= "number" then return "-" end
  if v ~= v then return "nan" end
  return pretty.shortest(v)
end

--- A cell: numbers shortest, tables as compact JSON, nil and null as "-".
function M.cell(v)
  if v == nil or v == json.null then return "-" end
  if type(v) == "number" then return M.number(v) end
  if type(v) == "table" then return json.encode(v) end
  return tostring(v)
end

--- Prints doc as one JSON document on stdout; returns 0.
function M.json(doc)
  io.write(json.encode(doc), "\n")
  return 0
end

--- Prints rows (lists of cells) under headers, columns aligned; returns 0.
function M.table(headers, rows)
  local width = {}
  for j, h in ipairs(headers) do width[j] = #h end
  local text = {}
  for i, r in ipairs(rows) do
    text[i] = {}
    for j = 1, #headers do
      local c = M.cell(r[j])
      if #c > 60 then c = c:sub(1, 57) .. "..." end
      text[i][j] = c
      width[j] = math.max(width[j], #c)
    end
  end
  local function line(cells)
    local parts = {}
    for j, c in ipairs(cells) do parts[j] = j == #cells and c or (c .. string.rep(" ", width[j] - #c)) end
    io.write(table.concat(parts, "  "), "\n")
  end
  line(headers)
  for _, r in ipairs(text) do line(r) end
  return 0
end

--- Command-line options: known maps a flag to its field. A field written
-- "?name" is a switch (no value, true when given); "name[]" collects every
-- value of a repeated flag. Returns the fields, or nil and the usage code.
function M.options(cmd, args, known)
  local out, i = {}, 1
  while args[i] do
    local opt, val = args[i], args[i + 1]
    local field = known[opt]
    if not field then
      local names = {}
      for k in pairs(known) do names[#names + 1] = k end
      table.sort(names)
      return nil, usage_error(cmd .. ": unknown option '" .. opt .. "' (" .. table.concat(names, ", ") .. ")")
    end
    if field:sub(1, 1) == "?" then
      out[field:sub(2)] = true
      i = i + 1
    else
      if not val then return nil, usage_error(cmd .. ": " .. opt .. " needs a value") end
      local list = field:match("^(.*)%[%]$")
      if list then
        out[list] = out[list] or {}
        table.insert(out[list], val)
      else
        out[field] = val
      end
      i = i + 2
    end
  end
  return out
end

--- Splits args into flags (table) and positional values, given which flags
-- take a value (`takes[flag] = true`) and which are switches; unknown flags
-- are refused. Returns flags, positional, or nil and the message.
function M.parse(args, takes, switches)
  local flags, positional, i = {}, {}, 1
  while i <= #args do
    local a = args[i]
    if a:sub(1, 2) == "--" then
      if takes[a] then
        if args[i + 1] == nil then return nil, a .. " needs a value" end
        flags[a:sub(3)] = args[i + 1]
        i = i + 2
      elseif switches[a] then
        flags[a:sub(3)] = true
        i = i + 1
      else
        local known = {}
        for k in pairs(takes) do known[#known + 1] = k end
        for k in pairs(switches) do known[#known + 1] = k end
        table.sort(known)
        return nil, "unknown option '" .. a .. "' (" .. table.concat(known, ", ") .. ")"
      end
    else
      positional[#positional + 1] = a
      i = i + 1
    end
  end
  return flags, positional
end

return M
