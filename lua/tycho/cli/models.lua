--- `tycho models list | show | promote | policy | rollback | import | export`: the registry
-- from the command line. A model is named NAME, NAME@ALIAS or NAME VERSION
-- wherever one is named.
--
-- JSON (--json): list -> {"models": [{"name", "latest", "versions",
-- "aliases": {alias: version}}]}; show -> {"name", "record" (the version's
-- full record: version, created, owner, description, params, metrics, data,
-- code, inputs, input_types, sha256, size, aliases), "versions": [{"version",
-- "created", "owner", "metrics", "aliases"}], "aliases", "policies": {alias:
-- policy}, "history": [...]}.
local json = require "tycho.util.json"
local out = require "tycho.cli.output"

local M = {}

local usage, fail = out.reporters("tycho models")

-- NAME@ALIAS, or NAME with an optional VERSION: name, ref.
local function model_ref(a, b)
  local name, alias = (a or ""):match("^([^@]+)@(.+)$")
  if name then return name, alias end
  return a, b
end

local function metrics_line(m)
  if type(m) ~= "table" then return "" end
  local names = {}
  for k, v in pairs(m) do if type(v) == "number" and k ~= "rows" then names[#names + 1] = k end end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = k .. "=" .. out.number(m[k]) end
  return table.concat(parts, " ")
end

local function list(reg, flags)
  local models = reg:list()
  if flags.json then return out.json({ models = #models > 0 and models or json.empty_array }) end
  if #models == 0 then print("no models registered") return 0 end
  local rows = {}
  for i, m in ipairs(models) do
    local aliases = {}
    for alias, v in pairs(m.aliases) do aliases[#aliases + 1] = alias .. "=" .. v end
    table.sort(aliases)
    rows[i] = { m.name, m.latest or "-", m.versions, table.concat(aliases, " ") }
  end
  return out.table({ "MODEL", "LATEST", "VERSIONS", "ALIASES" }, rows)
end

local function section(title, t)
  if type(t) ~= "table" or next(t) == nil then return end
  print(title .. ":")
  local names = {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(names) do print(string.format("  %-22s %s", tostring(k), out.cell(t[k]))) end
end

-- Who made a history entry, and on which home when a cluster shares the registry.
local function by_whom(h) return h.home and (h.who .. " on " .. h.home) or h.who end

local function history_line(h)
  local null = json.null
  if h.kind == "policy" then
    return string.format("  %s  %-12s policy %s  by %s", h.at, h.alias,
      h.policy == null and "removed" or json.encode(h.policy), by_whom(h))
  end
  local from = (h.from == nil or h.from == null) and "-" or h.from
  return string.format("  %s  %-12s %s -> %s  by %s (%s)%s", h.at, h.alias, from, h.to, by_whom(h), h.why,
    h.forced and ("; forced: " .. tostring(h.reason) .. "; overrode: " .. table.concat(h.overrode or {}, "; "))
      or ((h.approved_by and h.approved_by ~= null and ("; approved by " .. h.approved_by) or "")
        .. (type(h.gates) == "table" and ("; checked: " .. table.concat(h.gates, ", ")) or "")))
end

local function show(reg, flags, positional)
  local name, ref = model_ref(positional[1], positional[2])
  if not name or #positional > (positional[1]:find("@", 1, true) and 1 or 2) then
    return usage("usage: tycho models show NAME[@ALIAS] | NAME VERSION [--json]")
  end
  local record, err = reg:get(name, ref)
  if not record then return fail(err) end
  local versions = assert(reg:versions(name))
  local brief, aliases, policies = {}, {}, {}
  for i, v in ipairs(versions) do
    local meta = reg:get(name, v.version)
    brief[i] = { version = v.version, created = v.created, owner = v.owner, metrics = v.metrics or json.null,
                 aliases = #meta.aliases > 0 and meta.aliases or json.empty_array }
    for _, a in ipairs(meta.aliases) do aliases[a] = v.version end
  end
  for alias in pairs(aliases) do policies[alias] = reg:policy(name, alias) or json.null end
  local history = reg:history(name)
  if flags.json then
    return out.json({ name = name, record = record, versions = brief, aliases = aliases, policies = policies,
                      history = #history > 0 and history or json.empty_array })
  end
  print(string.format("model %s %s%s", name, record.version,
    #record.aliases > 0 and (" (" .. table.concat(record.aliases, ", ") .. ")") or ""))
  if record.description then print(record.description) end
  print(string.format("created %s by %s; %s bytes, sha256 %s", tostring(record.created), tostring(record.owner),
    out.cell(record.size), tostring(record.sha256)))
  section("hyperparameters", record.params)
  section("metrics", record.metrics)
  local data = type(record.data) == "table" and record.data or nil
  if data then
    section("data", { rows = data.rows, content_hash = data.content_hash, views = data.views,
                      time_range = data.time_range, columns = data.columns and #data.columns or nil })
  end
  section("code", record.code)
  section("provenance", record.provenance)
  if type(record.inputs) == "table" then
    local inputs = {}
    for _, c in ipairs(record.inputs) do inputs[c] = (record.input_types or {})[c] or "?" end
    section("inputs", inputs)
  end
  print("")
  local rows = {}
  for i, v in ipairs(brief) do
    rows[i] = { v.version, v.created:sub(1, 19), tostring(v.owner),
                v.aliases == json.empty_array and "" or table.concat(v.aliases, ","), metrics_line(v.metrics) }
  end
  out.table({ "VERSION", "CREATED", "OWNER", "ALIASES", "METRICS" }, rows)
  if next(policies) then
    print("")
    for alias, p in pairs(policies) do
      print(string.format("policy of %s: %s", alias, p == json.null and "none" or json.encode(p)))
    end
  end
  if #history > 0 then
    print("")
    print("alias history:")
    for _, h in ipairs(history) do print(history_line(h)) end
  end
  return 0
end

-- The subcommands that move things (positional arguments, then options).
local options = out.options
local movers = {
  promote = function(reg, name, version, alias, ...)
    local PROMOTE_USAGE = "usage: tycho models promote NAME VERSION ALIAS [--force --reason TEXT] [--approved-by NAME]"
    if not (name and version and alias) then return usage(PROMOTE_USAGE) end
    local opts, code = options("tycho models promote", { ... }, { ["--force"] = "?force", ["--reason"] = "reason",
                                                                  ["--approved-by"] = "approved_by" })
    if not opts then return code end
    local ok, err, _, reasons = reg:promote(name, version, alias, opts)
    if not ok then
      if not reasons then return fail(err) end
      io.stderr:write(string.format("tycho models: promotion of %s %s to %s refused:\n", name, version, alias))
      for _, r in ipairs(reasons) do io.stderr:write("  - ", r, "\n") end
      io.stderr:write("(tycho models promote ... --force --reason TEXT overrides, and is recorded)\n")
      return 1
    end
    print(string.format("%s %s is now %s%s", name, version, alias, opts.force and " (forced: " .. opts.reason .. ")" or ""))
    return 0
  end,
  policy = function(reg, name, alias, ...)
    if not (name and alias) then
      return usage("usage: tycho models policy NAME ALIAS [--gate METRIC=MIN ...] [--no-worse-than METRIC[:BY]]"
        .. " [--holdout FILE] [--approval] [--no-schema] | --clear")
    end
    local opts, code = options("tycho models policy", { ... }, { ["--gate"] = "gates[]", ["--holdout"] = "holdout",
      ["--no-worse-than"] = "no_worse_than", ["--approval"] = "?approval", ["--no-schema"] = "?no_schema",
      ["--clear"] = "?clear" })
    if not opts then return code end
    if not next(opts) then
      local p, err = reg:policy(name, alias)
      if p == nil then return fail(err) end
      print(p and json.encode(p) or ("alias " .. alias .. " of " .. name .. " has no policy"))
      return 0
    end
    local policy = false
    if not opts.clear then
      policy = { approval = opts.approval or nil, schema = not opts.no_schema or false }
      for _, g in ipairs(opts.gates or {}) do
        local metric, threshold = g:match("^([%w_]+)=(.+)$")
        if not tonumber(threshold) then return usage("tycho models policy: --gate wants METRIC=NUMBER, got " .. g) end
        policy.gates = policy.gates or {}
        policy.gates[metric] = tonumber(threshold)
      end
      if opts.no_worse_than then
        local metric, by = opts.no_worse_than:match("^([%w_]+):?(.*)$")
        if not metric or (by ~= "" and not tonumber(by)) then
          return usage("tycho models policy: --no-worse-than wants METRIC or METRIC:BY, got " .. opts.no_worse_than)
        end
        policy.no_worse_than = { metric = metric, by = tonumber(by) or 0, holdout = opts.holdout }
      end
    end
    local stored, err = reg:policy(name, alias, policy)
    if stored == nil then return fail(err) end
    print(stored and ("policy of " .. name .. " " .. alias .. ": " .. json.encode(stored))
      or ("policy of " .. name .. " " .. alias .. " removed"))
    return 0
  end,
  import = function(reg, file, ...)
    local IMPORT_USAGE = "usage: tycho models import FILE --name NAME [--format xgboost] [--features A,B,...]"
      .. " [--label NAME] [--description TEXT]"
    if not file or file:sub(1, 2) == "--" then return usage(IMPORT_USAGE) end
    local opts, code = options("tycho models import", { ... }, { ["--format"] = "format", ["--name"] = "name",
      ["--features"] = "features", ["--label"] = "label", ["--description"] = "description" })
    if not opts then return code end
    if not opts.name then return usage(IMPORT_USAGE) end
    if opts.features then
      local names = {}
      for f in opts.features:gmatch("[^,]+") do names[#names + 1] = f end
      opts.features = names
    end
    local version, err = reg:import(file, opts)
    if not version then return fail(err) end
    local record = reg:get(opts.name, version) or {}
    print(string.format("imported %s as %s %s (%s)", file, opts.name, version, record.description or "imported"))
    return 0
  end,
  export = function(reg, a, b, ...)
    local EXPORT_USAGE = "usage: tycho models export NAME[@ALIAS] | NAME VERSION --format onnx -o FILE"
    if not a then return usage(EXPORT_USAGE) end
    local rest = { ... }
    if b and b:sub(1, 1) == "-" then table.insert(rest, 1, b) b = nil end
    local opts, code = options("tycho models export", rest, { ["--format"] = "format", ["-o"] = "output",
      ["--output"] = "output" })
    if not opts then return code end
    if not opts.output or (opts.format or "onnx") ~= "onnx" then return usage(EXPORT_USAGE) end
    local name, ref = model_ref(a, b)
    local meta, err = reg:get(name, ref)
    if not meta then return fail(err) end
    local pipe, perr = reg:load(name, meta.version)
    if not pipe then return fail(perr) end
    local ok, xerr = pipe:export_onnx(opts.output, { name = name, version = meta.version })
    if not ok then return fail(xerr) end
    print(string.format("exported %s %s to %s (ONNX)", name, meta.version, opts.output))
    return 0
  end,
  rollback = function(reg, name, alias)
    if not (name and alias) then return usage("usage: tycho models rollback NAME ALIAS") end
    local version, err = reg:rollback(name, alias)
    if not version then return fail(err) end
    print(string.format("%s %s rolled back to %s", name, alias, version))
    return 0
  end,
}

--- `tycho models SUB ...`; the exit code.
function M.main(sub, ...)
  local args = { ... }
  if sub == "list" or sub == "show" then
    local flags, positional = out.parse(args, {}, { ["--json"] = true })
    if not flags then return usage("tycho models " .. sub .. ": " .. positional) end
    local reg, err = require("tycho.registry").open()
    if not reg then return fail(err) end
    if sub == "list" then return list(reg, flags) end
    return show(reg, flags, positional)
  end
  local cmd = movers[sub or ""]
  if not cmd then
    return usage("usage: tycho models list | show NAME[@ALIAS| VERSION] | promote NAME VERSION ALIAS"
      .. " | policy NAME ALIAS | rollback NAME ALIAS | import FILE --name NAME | export NAME -o FILE"
      .. "   (tycho models --help)")
  end
  local reg, err = require("tycho.registry").open()
  if not reg then return fail(err) end
  return cmd(reg, ...)
end

return M
