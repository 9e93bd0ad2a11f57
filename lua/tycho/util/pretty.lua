--- Human-readable rendering of Lua values for the REPL: nested tables with
-- sorted keys, cycles shown as <cycle>, long output truncated. A value with
-- a __tostring metamethod (frames, models) prints as it says.
local M = {}

local defaults = { depth = 6, items = 50, width = 2000, indent = "  " }

local function is_ident(k) return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local NULL = require("tycho.util.json").null

--- A number as the shortest text that reads back as it (33.6, not
-- 33.600000000000001): any decimal of 15 digits survives a double, so
-- "%.15g" is shortest whenever it reads back; the rest need 17.
local function shortest(v)
  local s = string.format("%.15g", v)
  if tonumber(s) ~= v then s = string.format("%.17g", v) end
  return s
end
M.shortest = shortest

local function scalar(v)
  if type(v) == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  if v == NULL then return "null" end
  if type(v) == "number" and v % 1 ~= 0 and v == v and v ~= math.huge and v ~= -math.huge then return shortest(v) end
  return tostring(v)
end

local function render(v, opts, depth, seen, out)
  local mt = getmetatable(v)
  if type(v) ~= "table" or (mt and mt.__tostring) then
    out[#out + 1] = type(v) == "table" and tostring(v) or scalar(v)
    return
  end
  if seen[v] then out[#out + 1] = "<cycle>" return end
  if depth >= opts.depth then out[#out + 1] = "{...}" return end
  seen[v] = true
  local n, keys = #v, {}
  for k in pairs(v) do
    if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_order)
  if n + #keys == 0 then out[#out + 1] = "{}" seen[v] = nil return end
  local pad = string.rep(opts.indent, depth + 1)
  out[#out + 1] = "{\n"
  local shown = 0
  local function item(prefix, value)
    shown = shown + 1
    if shown > opts.items then return false end
    out[#out + 1] = pad .. prefix
    render(value, opts, depth + 1, seen, out)
    out[#out + 1] = ",\n"
    return true
  end
  local complete = true
  for i = 1, n do
    if not item("", v[i]) then complete = false break end
  end
  for _, k in ipairs(complete and keys or {}) do
    local prefix = is_ident(k) and (k .. " = ") or ("[" .. scalar(k) .. "] = ")
    if not item(prefix, v[k]) then complete = false break end
  end
  if not complete then
    out[#out + 1] = pad .. string.format("... (%d more)\n", n + #keys - opts.items)
  end
  out[#out + 1] = string.rep(opts.indent, depth) .. "}"
  seen[v] = nil
end

--- A number for a report table: string.format(f or "%.4g", v), or "-"
-- when v is missing (nil, JSON null).
function M.number(v, f)
  if type(v) ~= "number" then return "-" end
  return string.format(f or "%.4g", v)
end

--- Makes a list of records print as an aligned table (columns in the given
-- order; "a.b" reads field b of field a; the list stays a plain list to
-- index). Returns the list.
function M.as_table(list, columns)
  return setmetatable(list, { __tostring = function(self)
    local width, rows = {}, {}
    for j, c in ipairs(columns) do width[j] = #c end
    for i, r in ipairs(self) do
      rows[i] = {}
      for j, c in ipairs(columns) do
        local v = r[c]
        local outer, inner = c:match("^(.-)%.(.+)$")
        if v == nil and outer and type(r[outer]) == "table" then v = r[outer][inner] end
        local s = v == nil and "-" or (type(v) == "table" and "{...}" or scalar(v))
        if type(v) == "string" then s = v end
        rows[i][j] = s
        width[j] = math.max(width[j], #s)
      end
    end
    local lines = {}
    local function line(cells)
      local parts = {}
      for j, s in ipairs(cells) do parts[j] = s .. string.rep(" ", width[j] - #s) end
      lines[#lines + 1] = table.concat(parts, "  "):gsub("%s+$", "")
    end
    line(columns)
    for _, r in ipairs(rows) do line(r) end
    return table.concat(lines, "\n")
  end })
end

--- Renders v as text. opts: depth, items (per table), width (characters).
function M.format(v, opts)
  opts = setmetatable(opts or {}, { __index = defaults })
  local out = {}
  render(v, opts, 0, {}, out)
  local s = table.concat(out)
  if #s > opts.width then
    s = s:sub(1, opts.width) .. string.format("\n... (output truncated, %d characters in all)", #s)
  end
  return s
end

return M
