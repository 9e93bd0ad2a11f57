--- `tycho runs list | show ID | compare ID ID...`: the recorded fits,
-- evaluations and tuning trials (registry/runs.lua), as tables or --json.
--
-- JSON: list -> {"runs": [run...]}; show -> the run; compare -> {"runs":
-- [id...], "params": {name: [v...]}, "metrics": {name: [v...]}, "differ":
-- [name...]}. A run: {"id", "at", "kind", "model", "params", "metrics",
-- "seconds", "data"}.
local runs = require "tycho.registry.runs"
local out = require "tycho.cli.output"
local json = require "tycho.util.json"

local M = {}

local usage_text, fail = out.reporters("tycho runs", "(tycho runs --help shows the usage)")
local function usage(msg) return usage_text("tycho runs: " .. msg) end

-- Parameters and metrics as one short line each for the table.
local function summary(t)
  if type(t) ~= "table" then return "-" end
  local names = {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = k .. "=" .. out.cell(t[k]) end
  return table.concat(parts, " ")
end

-- The run whose id is `id` or starts with it (unique), or nil and why.
local function find(id)
  local all, err = runs.list()
  if not all then return nil, err end
  local found
  for _, r in ipairs(all) do
    if r.id == id then return r end
    if r.id:sub(1, #id) == id then
      if found then return nil, "run id '" .. id .. "' is ambiguous (" .. found.id .. ", " .. r.id .. ", ...)" end
      found = r
    end
  end
  if not found then return nil, "no run '" .. id .. "'" end
  return found
end

local function list(flags)
  local limit = flags.limit and tonumber(flags.limit)
  if flags.limit and (not limit or limit < 1 or limit % 1 ~= 0) then return usage("--limit needs a positive integer") end
  if flags.kind and not ({ fit = true, trial = true, evaluate = true, evaluation = true })[flags.kind] then
    return usage("--kind is fit, trial or evaluate")
  end
  local kind = flags.kind == "evaluation" and "evaluate" or flags.kind
  local list_, err = runs.list { model = flags.model, kind = kind, sort = flags.sort, limit = limit }
  if not list_ then return fail(err) end
  if flags.json then return out.json({ runs = #list_ > 0 and list_ or json.empty_array }) end
  if #list_ == 0 then print("no runs") return 0 end
  local rows = {}
  for i, r in ipairs(list_) do
    rows[i] = { r.id, r.at, r.kind, r.model, r.seconds, summary(r.metrics), summary(r.params) }
  end
  return out.table({ "ID", "AT", "KIND", "MODEL", "SECONDS", "METRICS", "PARAMS" }, rows)
end

local function show(flags, ids)
  if #ids ~= 1 then return usage("show takes one run id") end
  local r, err = find(ids[1])
  if not r then return fail(err) end
  if flags.json then return out.json(r) end
  print(string.format("run %s (%s of %s, %s, %s s)", r.id, tostring(r.kind), tostring(r.model), tostring(r.at),
    out.number(r.seconds)))
  for _, section in ipairs { "params", "metrics", "data" } do
    local t = r[section]
    if type(t) == "table" and next(t) then
      print(section .. ":")
      local names = {}
      for k in pairs(t) do names[#names + 1] = k end
      table.sort(names)
      for _, k in ipairs(names) do print(string.format("  %-24s %s", k, out.cell(t[k]))) end
    end
  end
  return 0
end

local function compare(flags, ids)
  if #ids < 2 then return usage("compare takes two or more run ids") end
  local list_ = {}
  for i, id in ipairs(ids) do
    local r, err = find(id)
    if not r then return fail(err) end
    list_[i] = r
  end
  local doc = { runs = {}, params = {}, metrics = {}, differ = {} }
  local names = { params = {}, metrics = {} }
  for i, r in ipairs(list_) do
    doc.runs[i] = r.id
    for _, section in ipairs { "params", "metrics" } do
      for k in pairs(type(r[section]) == "table" and r[section] or {}) do
        if not doc[section][k] then
          doc[section][k] = {}
          names[section][#names[section] + 1] = k
        end
      end
    end
  end
  local rows = {}
  for _, section in ipairs { "params", "metrics" } do
    table.sort(names[section])
    for _, k in ipairs(names[section]) do
      local values, differs = doc[section][k], false
      local row = { section == "params" and k or (k .. " (metric)") }
      for i, r in ipairs(list_) do
        local v = json.null
        if type(r[section]) == "table" and r[section][k] ~= nil then v = r[section][k] end
        values[i] = v
        row[#row + 1] = v
        if out.cell(v) ~= out.cell(values[1]) then differs = true end
      end
      if differs then doc.differ[#doc.differ + 1] = k end
      row[1] = (differs and "* " or "  ") .. row[1]
      rows[#rows + 1] = row
    end
  end
  if #doc.differ == 0 then doc.differ = json.empty_array end
  if flags.json then return out.json(doc) end
  local headers = { "  NAME" }
  for i, r in ipairs(list_) do headers[i + 1] = r.id end
  return out.table(headers, rows)
end

--- Runs `tycho runs SUB ...`; the exit code.
function M.main(sub, ...)
  local flags, positional = out.parse({ ... }, { ["--model"] = true, ["--kind"] = true, ["--sort"] = true,
                                                 ["--limit"] = true }, { ["--json"] = true })
  if not flags then return usage(positional) end
  if sub == "list" then return list(flags) end
  if sub == "show" then return show(flags, positional) end
  if sub == "compare" then return compare(flags, positional) end
  return usage(sub and ("unknown subcommand '" .. sub .. "'") or "list, show or compare?")
end

return M
