--- `tycho features list | show | apply | ingest | materialize | drain`: the
-- feature store from the command line (Feast users' `feast apply` and
-- `feast materialize`).
--
-- JSON (--json): list -> {"views": [{"name", "entity", "owner", "version",
-- "features", "tags", "duplicates"}]}; show -> {"name", "version", "entity",
-- "join_key", "ttl", "owner", "tags", "description", "pii", "quality"
-- (fs:quality's record)}; ingest and materialize ->
-- their reports; drain -> fs:drain_stream's report; duplicates -> {"duplicates": [{"a", "b", "owners", "shared",
-- "identical", "correlation"}]}.
local json = require "tycho.util.json"
local out = require "tycho.cli.output"

local M = {}

local usage, fail = out.reporters("tycho features", "(tycho features --help shows the usage)")

local function list(fs, flags)
  local views = fs:list({ owner = flags.owner, tag = flags.tag, search = flags.search })
  if flags.json then return out.json({ views = #views > 0 and views or json.empty_array }) end
  if #views == 0 then print("no feature views") return 0 end
  local rows = {}
  for i, v in ipairs(views) do
    rows[i] = { v.name, v.entity or "", v.owner or "", v.version, table.concat(v.features, ", ") }
  end
  out.table({ "VIEW", "ENTITY", "OWNER", "VER", "FEATURES" }, rows)
  for _, v in ipairs(views) do
    for _, d in ipairs(v.duplicates) do print("duplicate definition in " .. v.name .. ": " .. d) end
  end
  return 0
end

local function show(fs, flags, name)
  if not name then return usage("usage: tycho features show VIEW [--json]") end
  local v, err = fs:view(name)
  if not v then return fail(err) end
  local q = assert(fs:quality(name))
  local d = { name = v.name, version = v.version, entity = v.entity, join_key = v.join_key, ttl = v.ttl,
              owner = v.owner, tags = v.tags, description = v.description, pii = v.pii, quality = q }
  if flags.json then return out.json(d) end
  print(string.format("view %s (version %d) of entity %s, join key %s", d.name, d.version, d.entity, d.join_key))
  if d.description then print(d.description) end
  print(string.format("owner %s; tags %s; ttl %ss; pii %s", d.owner or "-", table.concat(d.tags or {}, ","),
    d.ttl or 0, #d.pii > 0 and table.concat(d.pii, ",") or "none"))
  print(string.format("%d rows, about %d entities; %d ingests, last %s; newest event %s (%s ago); %.2f%% missing",
    q.rows, q.entities, q.ingests, out.cell(q.last_ingest), out.cell(q.last_event),
    type(q.freshness_seconds) == "number" and string.format("%.0fs", q.freshness_seconds) or "-",
    100 * q.missing_ratio))
  if q.consumers ~= json.empty_array then print("read by: " .. table.concat(q.consumers, ", ")) end
  for _, violation in ipairs(q.violations) do print("EXPECTATION NOT MET: " .. violation) end
  print("")
  local rows = {}
  for _, f in ipairs(q.features) do
    rows[#rows + 1] = { f.name, f.type, f.values, f.nulls, string.format("%.1f%%", 100 * f.missing_ratio), f.mean,
                        type(f.variance) == "number" and math.sqrt(f.variance) or nil, f.min, f.max, f.distinct }
  end
  for tname in pairs(v.transforms or {}) do rows[#rows + 1] = { tname, "lua (on demand)" } end
  return out.table({ "FEATURE", "TYPE", "VALUES", "NULLS", "MISSING", "MEAN", "STD", "MIN", "MAX", "DISTINCT" }, rows)
end

-- What a definition file declares: it returns { entities = {...}, views =
-- {...} }, or a function(fs) that declares them itself.
local function load_definitions(path)
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  local ok, defs = pcall(chunk)
  if not ok then return nil, path .. ": " .. tostring(defs) end
  if type(defs) ~= "table" and type(defs) ~= "function" then
    return nil, path .. " must return { entities = {...}, views = {...} } or a function(fs)"
  end
  return defs
end

-- One line per view on what apply did to it.
local function view_change(before, after)
  if not before then return string.format("created view %s (version %d)", after.name, after.version) end
  if before.version == after.version then return "view " .. after.name .. " unchanged" end
  local had, added = {}, {}
  for _, f in ipairs(before.features) do had[f.name] = true end
  for _, f in ipairs(after.features) do if not had[f.name] then added[#added + 1] = f.name end end
  return string.format("view %s: version %d -> %d (added %s)", after.name, before.version, after.version,
    #added > 0 and table.concat(added, ", ") or "nothing new")
end

local function apply(fs, _, path)
  if not path then return usage("usage: tycho features apply FILE.lua") end
  local defs, err = load_definitions(path)
  if not defs then return fail(err) end
  if type(defs) == "function" then
    local ok, ferr = pcall(defs, fs)
    if not ok then return fail(tostring(ferr)) end
    print("applied " .. path)
    return 0
  end
  for _, e in ipairs(defs.entities or {}) do
    local ok, eerr = pcall(fs.entity, fs, e)
    if not ok then return fail(tostring(eerr)) end
    print("entity " .. tostring(e.name) .. " (join key " .. tostring(e.join_key or e.name) .. ")")
  end
  for _, def in ipairs(defs.views or {}) do
    local before = type(def) == "table" and fs:view(def.name) or nil
    local ok, after, verr = pcall(fs.feature_view, fs, def)
    if not ok then return fail(tostring(after)) end
    if not after then return fail(verr) end
    print(view_change(before, after))
  end
  return 0
end

local function ingest(fs, flags, view, path)
  if not (view and path) then
    return usage("usage: tycho features ingest VIEW FILE [--to online|offline|online_and_offline] [--json]")
  end
  local rep, err = fs:ingest(view, path, { to = flags.to })
  if not rep then return fail(err) end
  local shown = {}
  for k, v in pairs(rep) do if k ~= "issues" then shown[k] = v end end
  if flags.json then
    out.json(shown)
  else
    print(string.format("%s: %d rows read, %d landed, %d unchanged, %d rejected%s", view, rep.rows_read, rep.landed,
      rep.unchanged, rep.rejected, rep.quarantine and (" (quarantined in " .. rep.quarantine .. ")") or ""))
    for i = 1, math.min(5, #rep.issues) do
      local is = rep.issues[i]
      print(string.format("  line %s: %s", tostring(is.line), tostring(is.reason)))
    end
    if #rep.issues > 5 then print(string.format("  ... %d more in the quarantine file", #rep.issues - 5)) end
  end
  return rep.rejected > 0 and 1 or 0
end

local function materialize(fs, flags, view)
  if not view then return usage("usage: tycho features materialize VIEW [--from TIME] [--to TIME] [--json]") end
  local written, err = fs:materialize(view, flags.from, flags.to)
  if not written then return fail(err) end
  if flags.json then return out.json({ view = view, online_updates = written }) end
  print(string.format("%s: %d online values updated", view, written))
  return 0
end

-- Applies a view's push stream to this home's offline store, once.
local function drain(fs, flags, view)
  if not view then return usage("usage: tycho features drain VIEW [--group G] [--json]") end
  local rep, err = fs:drain_stream(view, { group = flags.group })
  if not rep then return fail(err) end
  if flags.json then
    rep.issues = #rep.issues > 0 and rep.issues or json.empty_array
    out.json(rep)
  else
    print(string.format("%s: %d entries (%d claimed from dead consumers), %d rows: %d landed, %d unchanged,"
      .. " %d rejected%s",
      view, rep.entries, rep.claimed, rep.rows_read, rep.landed, rep.unchanged, rep.rejected,
      rep.quarantine and (" (quarantined in " .. rep.quarantine .. ")") or ""))
  end
  return rep.rejected > 0 and 1 or 0
end

local function duplicates(fs, flags)
  local threshold = flags.threshold and tonumber(flags.threshold)
  if flags.threshold and not (threshold and threshold > 0 and threshold <= 1) then
    return usage("tycho features duplicates: --threshold is a correlation in (0, 1]")
  end
  local found = fs:duplicates({ threshold = threshold })
  if flags.json then return out.json({ duplicates = #found > 0 and found or json.empty_array }) end
  if #found == 0 then print("no duplicate features found") return 0 end
  local rows = {}
  for i, d in ipairs(found) do
    rows[i] = { d.a, d.b, d.owners[1] .. " / " .. d.owners[2], d.shared, d.identical, d.correlation }
  end
  return out.table({ "FEATURE", "DUPLICATE OF", "OWNERS", "SHARED", "IDENTICAL", "CORRELATION" }, rows)
end

local COMMANDS = { list = list, show = show, apply = apply, ingest = ingest, materialize = materialize,
                   duplicates = duplicates, drain = drain }

--- `tycho features SUB ...`; the exit code.
function M.main(sub, ...)
  local cmd = COMMANDS[sub or ""]
  if not cmd then
    return usage("usage: tycho features list | show VIEW | apply FILE | ingest VIEW FILE | materialize VIEW"
      .. " | duplicates | drain VIEW")
  end
  local flags, positional = out.parse({ ... }, { ["--owner"] = true, ["--tag"] = true, ["--search"] = true,
    ["--to"] = true, ["--from"] = true, ["--threshold"] = true, ["--group"] = true }, { ["--json"] = true })
  if not flags then return usage("tycho features " .. sub .. ": " .. positional) end
  local fs, err = require("tycho.features").open()
  if not fs then return fail(err) end
  return cmd(fs, flags, positional[1], positional[2])
end

return M
