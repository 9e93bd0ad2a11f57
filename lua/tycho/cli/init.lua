--- Subcommands written in Lua: `tycho features ...` and `tycho models ...`.
local M = {}

local function usage(text)
  io.stderr:write(text, "\n")
  return 2
end

local function open_fs()
  local fs, err = require("tycho.features").open()
  if not fs then
    io.stderr:write("tycho features: ", err, "\n")
    return nil
  end
  return fs
end

-- Parses "--name value" pairs into a table by the names known (a map from
-- option to field). Returns the table, or nil and the usage exit code.
-- Command-line options: known maps a flag to its field. A field written
-- "?name" is a switch (no value, true when given); "name[]" collects every
-- value of a repeated flag. Returns the fields, or nil and the usage code.
local function options(cmd, args, known)
  local out, i = {}, 1
  while args[i] do
    local opt, val = args[i], args[i + 1]
    local field = known[opt]
    if not field then
      local names = {}
      for k in pairs(known) do names[#names + 1] = k end
      table.sort(names)
      return nil, usage(cmd .. ": unknown option '" .. opt .. "' (" .. table.concat(names, ", ") .. ")")
    end
    if field:sub(1, 1) == "?" then
      out[field:sub(2)] = true
      i = i + 1
    else
      if not val then return nil, usage(cmd .. ": " .. opt .. " needs a value") end
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

local function show_list(fs, args)
  local filter, code = options("tycho features list", args, { ["--owner"] = "owner", ["--tag"] = "tag",
                                                             ["--search"] = "search" })
  if not filter then return code end
  local views = fs:list(filter)
  if #views == 0 then print("no feature views") return 0 end
  print(string.format("%-24s %-12s %-10s %3s  %s", "VIEW", "ENTITY", "OWNER", "VER", "FEATURES"))
  for _, v in ipairs(views) do
    print(string.format("%-24s %-12s %-10s %3d  %s", v.name, v.entity or "", v.owner or "", v.version,
      table.concat(v.features, ", ")))
    for _, d in ipairs(v.duplicates) do print("    duplicate definition: " .. d) end
  end
  return 0
end

local function show_view(fs, name)
  if not name then return usage("usage: tycho features show VIEW") end
  local d, err = fs:describe(name)
  if not d then
    io.stderr:write("tycho features: ", err, "\n")
    return 1
  end
  print(string.format("view %s (version %d) of entity %s, join key %s", d.name, d.version, d.entity, d.join_key))
  if d.description then print(d.description) end
  print(string.format("owner %s; tags %s; ttl %ss; pii %s", d.owner or "-", table.concat(d.tags or {}, ","),
    d.ttl or 0, #d.pii > 0 and table.concat(d.pii, ",") or "none"))
  print(string.format("%d rows, %d entities, freshest event %s", d.rows, d.entities, d.freshness or "never"))
  print("")
  print(string.format("%-24s %-8s %8s %8s %12s %12s %12s", "FEATURE", "TYPE", "COUNT", "NULLS", "MEAN", "MIN", "MAX"))
  local stats = {}
  for _, s in ipairs(d.stats) do stats[s.column] = s end
  local function num(v) return v and string.format("%.6g", v) or "" end
  for _, f in ipairs(d.features) do
    local s = stats[f.name] or {}
    print(string.format("%-24s %-8s %8s %8s %12s %12s %12s", f.name, f.type, s.count or 0, s.nulls or 0,
      num(s.mean), num(s.min), num(s.max)))
  end
  for tname in pairs(d.transforms or {}) do print(string.format("%-24s %-8s (on demand)", tname, "lua")) end
  return 0
end

--- `tycho features list [--owner O] [--tag T] [--search S]` | `show VIEW`.
function M.features(sub, ...)
  local args = { ... }
  if sub ~= "list" and sub ~= "show" then
    return usage("usage: tycho features list [--owner O] [--tag T] [--search TEXT] | show VIEW")
  end
  local fs = open_fs()
  if not fs then return 1 end
  if sub == "list" then return show_list(fs, args) end
  return show_view(fs, args[1])
end

local function open_registry()
  local reg, err = require("tycho.registry").open()
  if not reg then io.stderr:write("tycho models: ", err, "\n") end
  return reg
end

local function fail(msg, cmd)
  io.stderr:write(cmd or "tycho models", ": ", msg, "\n")
  return 1
end

local function fmt_metrics(m)
  if type(m) ~= "table" then return "" end
  local names = {}
  for k, v in pairs(m) do if type(v) == "number" and k ~= "rows" then names[#names + 1] = k end end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = string.format("%s=%.4g", k, m[k]) end
  return table.concat(parts, " ")
end

local model_commands = {
  list = function(reg)
    local models = reg:list()
    if #models == 0 then print("no models registered") return 0 end
    print(string.format("%-24s %-10s %8s  %s", "MODEL", "LATEST", "VERSIONS", "ALIASES"))
    for _, m in ipairs(models) do
      local aliases = {}
      for alias, v in pairs(m.aliases) do aliases[#aliases + 1] = alias .. "=" .. v end
      table.sort(aliases)
      print(string.format("%-24s %-10s %8d  %s", m.name, m.latest or "-", m.versions, table.concat(aliases, " ")))
    end
    return 0
  end,
  show = function(reg, name)
    if not name then return usage("usage: tycho models show NAME") end
    local versions, err = reg:versions(name)
    if not versions then return fail(err) end
    local model = reg:get(name)
    print(string.format("model %s, latest %s", name, model and model.version or "-"))
    print(string.format("%-10s %-20s %-10s %-12s %s", "VERSION", "CREATED", "OWNER", "ALIASES", "METRICS"))
    for _, v in ipairs(versions) do
      local meta = reg:get(name, v.version)
      print(string.format("%-10s %-20s %-10s %-12s %s", v.version, v.created:sub(1, 19), tostring(v.owner),
        table.concat(meta.aliases, ","), fmt_metrics(v.metrics)))
    end
    local hist = reg:history(name)
    if #hist > 0 then
      print("")
      print("alias history:")
      local null = require("tycho.util.json").null
      for _, h in ipairs(hist) do
        local from = (h.from == nil or h.from == null) and "-" or h.from
        if h.kind == "policy" then
          print(string.format("  %s  %-12s policy %s  by %s", h.at, h.alias,
            h.policy == null and "removed" or require("tycho.util.json").encode(h.policy), h.who))
        else
          print(string.format("  %s  %-12s %s -> %s  by %s (%s)%s", h.at, h.alias, from, h.to, h.who, h.why,
            h.forced and ("; forced: " .. tostring(h.reason) .. "; overrode: " .. table.concat(h.overrode or {}, "; "))
              or (h.approved_by and h.approved_by ~= null and ("; approved by " .. h.approved_by) or "")))
        end
      end
    end
    return 0
  end,
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
      print(p and require("tycho.util.json").encode(p) or ("alias " .. alias .. " of " .. name .. " has no policy"))
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
    print(stored and ("policy of " .. name .. " " .. alias .. ": " .. require("tycho.util.json").encode(stored))
      or ("policy of " .. name .. " " .. alias .. " removed"))
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

-- ---- batch scoring ---------------------------------------------------------------------

local function is_terminal() return require("luv").guess_handle(2) == "tty" end

--- `tycho score NAME[@ALIAS|VERSION] --input FILE --output FILE [--to-view VIEW]`:
-- scores a CSV or JSONL file with the registered pipeline (entity keys in a
-- row fetch its online features, as in serving), writes the rows with their
-- prediction (and probability), and with --to-view pushes the predictions
-- into a feature view so the online store serves them by key.
function M.score(target, ...)
  local opts, code = options("tycho score", { ... }, { ["--input"] = "input", ["--output"] = "output",
                                                        ["--to-view"] = "view", ["--missing"] = "missing" })
  if not opts then return code end
  if not target or not opts.input or not (opts.output or opts.view) or
     (opts.missing and opts.missing ~= "skip" and opts.missing ~= "fill") then
    return usage("usage: tycho score NAME[@ALIAS|VERSION] --input FILE (--output FILE | --to-view VIEW) " ..
                 "[--missing skip|fill]")
  end
  local name, ref = target:match("^([^@]+)@?(.*)$")
  if ref == "" then ref = "production" end
  local frame, json, serving = require "tycho.core.frame", require "tycho.util.json", require "tycho.serve.hosted"
  local version, err = serving.load_version(name, ref)
  if not version then return fail(err) end
  local input, rep
  if opts.input:match("%.jsonl$") or opts.input:match("%.ndjson$") then input, rep = frame.read_jsonl(opts.input)
  else input, rep = frame.read_csv(opts.input) end
  if not input then return fail(rep) end
  local n = input:nrows()
  -- A key with no stored features would be scored as an "average" item by
  -- the fill steps: such rows are skipped and named unless --missing fill.
  local out_rows, skipped, tty = {}, {}, is_terminal()
  local now = require("tycho.util.timeutil").now()
  for r = 1, n do
    local inst = input:row(r)
    local row, missing = serving.assemble(version, inst, now)
    if missing and opts.missing ~= "fill" then
      skipped[#skipped + 1] = r
    else
      local pred, perr = version.pipe:predict(row)
      if not pred then return fail("row " .. r .. ": " .. tostring(perr)) end
      for k, v in pairs(pred) do inst[k] = v end
      out_rows[#out_rows + 1] = inst
    end
    if tty and (r % 500 == 0 or r == n) then io.stderr:write(string.format("\rscored %d/%d", r, n)) end
  end
  if tty then io.stderr:write("\n") end
  if #skipped > 0 then
    local first = {}
    for i = 1, math.min(5, #skipped) do first[i] = tostring(skipped[i]) end
    io.stderr:write(string.format("tycho score: skipped %d rows with missing inputs (no stored features for the key,"
      .. " or an empty field; rows %s%s); "
      .. "--missing fill scores them with filled-in values\n", #skipped, table.concat(first, ", "),
      #skipped > 5 and ", ..." or ""))
  end
  if #out_rows == 0 then return fail("no row could be scored", "tycho score") end
  local order = input:names()
  order[#order + 1] = "prediction"
  if out_rows[1] and out_rows[1].probability ~= nil then order[#order + 1] = "probability" end
  local result = frame.from_rows(out_rows, { order = order })
  if opts.output then
    local ok, werr
    if opts.output:match("%.jsonl$") then
      local f = io.open(opts.output, "w")
      if not f then return fail("cannot write " .. opts.output) end
      for r = 1, result:nrows() do f:write(json.encode(result:row(r)), "\n") end
      f:close()
      ok = true
    else
      ok, werr = result:write_csv(opts.output)
    end
    if not ok then return fail(werr) end
  end
  if opts.view then
    local fs = assert(require("tycho.features").open())
    local view, verr = fs:view(opts.view)
    if not view then return fail(verr) end
    if not result:has(view.timestamp) then
      local scored_at = os.time()
      result = result:with_column(view.timestamp, function() return scored_at end)
    end
    local report, perr = fs:push(opts.view, result, "online_and_offline")
    if not report then return fail(perr) end
    print(string.format("pushed %d predictions to %s (%d rejected)", report.landed, opts.view, report.rejected))
  end
  print(string.format("scored %d rows with %s %s (%s)%s", #out_rows, name, version.version, ref,
    opts.output and (" into " .. opts.output) or ""))
  return 0
end

--- `tycho models list | show NAME | promote NAME VERSION ALIAS | policy NAME ALIAS | rollback NAME ALIAS`:
-- 0 done, 1 refused (unknown model, failed gate, nothing to roll back), 2 usage.
function M.models(sub, ...)
  local cmd = model_commands[sub or ""]
  if not cmd then
    return usage("usage: tycho models list | show NAME | promote NAME VERSION ALIAS | policy NAME ALIAS"
      .. " | rollback NAME ALIAS")
  end
  local reg = open_registry()
  if not reg then return 1 end
  return cmd(reg, ...)
end

-- ---- experiments and monitoring -----------------------------------------------------

local experiment_commands = {
  list = function()
    local list = require("tycho.experiments").list()
    if #list == 0 then print("no experiments") return 0 end
    print(string.format("%-24s %-15s %-9s %-14s %-14s %s", "EXPERIMENT", "KIND", "STATUS", "UNIT", "METRIC", "VARIANTS"))
    for _, e in ipairs(list) do
      local names = {}
      for i, v in ipairs(e.variants) do names[i] = v.name .. (v.model and ("=" .. v.model) or "") end
      print(string.format("%-24s %-15s %-9s %-14s %-14s %s", e.name, e.kind, e.status, e.unit, e.metric,
        table.concat(names, " ")))
    end
    return 0
  end,
  show = function(name)
    if not name then return usage("usage: tycho experiments show NAME") end
    local experiments = require "tycho.experiments"
    local e, err = experiments.load(name)
    if not e then return fail(err, "tycho experiments") end
    print(experiments.format_results(e:results()))
    return 0
  end,
  stop = function(name, ...)
    if not name then return usage("usage: tycho experiments stop NAME [--winner VARIANT]") end
    local opts, code = options("tycho experiments stop", { ... }, { ["--winner"] = "winner" })
    if not opts then return code end
    local e, err = require("tycho.experiments").load(name)
    if not e then return fail(err, "tycho experiments") end
    local rec, serr = e:stop(opts.winner)
    if not rec then return fail(serr, "tycho experiments") end
    print(string.format("stopped %s: every unit gets %s", name, rec.winner))
    return 0
  end,
}

--- `tycho experiments list | show NAME | stop NAME [--winner V]`.
function M.experiments(sub, ...)
  local cmd = experiment_commands[sub or ""]
  if not cmd then return usage("usage: tycho experiments list | show NAME | stop NAME [--winner VARIANT]") end
  return cmd(...)
end

--- `tycho monitor NAME [--window 1h]`.
function M.monitor(name, ...)
  if not name or name:sub(1, 1) == "-" then return usage("usage: tycho monitor NAME [--window 1h]") end
  local opts, code = options("tycho monitor", { ... }, { ["--window"] = "window" })
  if not opts then return code end
  local monitor = require "tycho.monitor"
  local ok, s = pcall(monitor.summary, name, { window = opts.window or "1h" })
  if not ok then return fail(tostring(s), "tycho monitor") end
  print(monitor.format(s))
  return 0
end

--- `tycho runs list | show ID | compare ID ID...` (cli/runs.lua).
function M.runs(...) return require("tycho.cli.runs").main(...) end

--- `tycho completion bash` (cli/completion.lua).
function M.completion(...) return require("tycho.cli.completion").main(...) end

return M
