--- The model registry (MLflow-like) in the home's `registry` database.
--
--   local reg = tycho.registry.open()
--   local v = reg:register("spam", pipe, { metrics = m, data = train:fingerprint() })  -- "1.0.0"
--   reg:promote("spam", v, "production", { gates = { auc = 0.95 } })
--   reg:rollback("spam", "production")
--
-- Keys: "model/NAME" (versions, aliases), "version/NAME/VERSION" (metadata
-- JSON), "artifact/NAME/VERSION" (bytes), "history/NAME/SEQ" (alias moves).
-- Every change is one write transaction, so concurrent registrations get
-- distinct versions and a crash leaves no half-registered version. With a
-- cluster, the registry is shared by every home on it (registry/shared.lua):
-- each change commits there first, and the home's database is the copy
-- reads look at.
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local pipeline = require "tycho.ml.pipeline"
local timeutil = require "tycho.util.timeutil"
local internal = require "tycho.internal"
local metrics = require "tycho.ml.metrics"
local evaluation = require "tycho.ml.evaluation"
local frame = require "tycho.core.frame"
local options = require "tycho.util.options"
local errors = require "tycho.util.errors"
local xgboost = require "tycho.ml.xgboost"
local publish = require "tycho.registry.publish"
local shared = require "tycho.registry.shared"

local M = {}
local Registry = {}
Registry.__index = Registry

--- The largest artifact the registry keeps (and a cluster carries): as
-- large as the largest model file reg:import reads.
M.MAX_ARTIFACT_BYTES = xgboost.MAX_FILE_BYTES

--- Opens the registry of a home (default: this process's). opts: home,
-- store, cluster (a Redis Cluster URL alias moves are published on, see
-- registry/publish.lua, and the registry itself shared there, see
-- registry/shared.lua; default $TYCHO_CLUSTER, false: none). Returns the
-- registry or nil, message, "unavailable" (the store's own code, a
-- tz_strerror name, is not one of tycho.util.errors).
function M.open(opts)
  local st, err = require("tycho.core.store").from(opts)
  if not st then return errors.fail("unavailable", err) end
  local cluster = opts and opts.cluster
  if cluster == nil then cluster = os.getenv("TYCHO_CLUSTER") end
  return setmetatable({ store = st, cluster = cluster ~= "" and cluster or nil }, Registry)
end

-- The registry shared on the cluster (joined when first wanted, so that
-- opening needs no cluster), or nil, message, code.
local function shared_of(self)
  return shared.of(self.store, self.cluster)
end

-- fn(tx) in a read transaction of the home's database, brought up to date
-- with the cluster's registry first when there is one (the copy as it is,
-- said once, when the cluster does not answer).
local function read(self, fn)
  if self.cluster then shared.before_read(self.store, self.cluster) end
  return self.store:view(fn)
end

-- fn(tx) as one write transaction: of the home's database, or committed on
-- the cluster first when there is one (refused, "unavailable", when it does
-- not answer: never written on this home alone). artifacts: those fn's
-- version records name, { { name, sha256, bytes }, ... }, for the cluster
-- to store once before it tries fn (registry/shared.lua's change).
local function change(self, fn, artifacts)
  if not self.cluster then return self.store:update(fn) end
  local sh, err, code = shared_of(self)
  if not sh then return nil, err, code end
  return sh:change(self.store, fn, artifacts)
end

-- The artifact bytes of a version: the home's, or the cluster's (fetched,
-- verified and kept) for a version registered on another home. nil,
-- message, code when neither has them.
local function artifact_of(self, name, version)
  local bytes, sha = self.store:view(function(tx)
    local meta = tx:get_json("registry", "version/" .. name .. "/" .. version)
    return tx:get("registry", "artifact/" .. name .. "/" .. version), meta and meta.sha256
  end)
  if bytes then return bytes end
  if not (self.cluster and sha) then
    return errors.fail("not_found", "model " .. name .. " " .. version .. " has no artifact on this home")
  end
  local sh, err, code = shared_of(self)
  if not sh then return nil, err, code end
  return sh:artifact(self.store, name, version, sha)
end

local function valid_name(name)
  return type(name) == "string" and name:match("^[%a][%w_%-%.]*$") ~= nil and #name <= 128
end

local function parse_version(v)
  local a, b, c = tostring(v):match("^(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  return { tonumber(a), tonumber(b), tonumber(c) }
end

local function version_less(x, y)
  local a, b = parse_version(x), parse_version(y)
  for i = 1, 3 do
    if a[i] ~= b[i] then return a[i] < b[i] end
  end
  return false
end


local function who() return os.getenv("TYCHO_USER") or os.getenv("USER") or os.getenv("LOGNAME") or "unknown" end

-- Code fingerprint: hash of the running script and the git commit around it.
local function code_fingerprint()
  local script = rawget(_G, "arg") and arg[0]
  local out = { tycho = internal.version }
  if type(script) == "string" then
    local f = io.open(script, "rb")
    if f then
      out.script = script
      out.script_sha256 = pipeline.sha256(f:read("*a"))
      f:close()
      local dir = script:match("^(.*)/[^/]*$") or "."
      local p = io.popen("git -C '" .. dir:gsub("'", "'\\''") .. "' rev-parse HEAD 2>/dev/null")
      local commit = p and p:read("*l")
      if p then p:close() end
      if commit and commit:match("^%x+$") then out.git_commit = commit end
    end
  end
  return out
end

-- What a fitted pipeline was trained with: its model's family and options
-- (hyperparameters, under their canonical names) and its steps.
local function params_of(pipe)
  local model = pipe.model
  if type(model) ~= "table" then return nil end
  local out = { family = model.family }
  for k, v in pairs(model.opts or {}) do out[k] = v end
  if pipe.steps and #pipe.steps > 0 then
    local kinds = {}
    for i, st in ipairs(pipe.steps) do kinds[i] = st.kind end
    out.steps = table.concat(kinds, ",")
  end
  return out
end

local function next_version(model, opts)
  if opts.version then return tostring(opts.version) end
  local latest = model.latest
  if not latest then return "1.0.0" end
  local v = parse_version(latest)
  if opts.bump == "major" then return string.format("%d.0.0", v[1] + 1) end
  if opts.bump == "minor" then return string.format("%d.%d.0", v[1], v[2] + 1) end
  return string.format("%d.%d.%d", v[1], v[2], v[3] + 1)
end

-- A holdout given as a frame, or as a CSV / JSONL path (read here).
local function read_holdout(holdout)
  if type(holdout) ~= "string" then return holdout end
  local f, err = (holdout:match("%.jsonl$") and frame.read_jsonl or frame.read_csv)(holdout)
  if not f then return errors.fail("invalid", "holdout " .. holdout .. ": " .. tostring(err)) end
  return f
end

-- What a new version is stored with: { metrics = opts.metrics (else the
-- holdout's), evaluation = opts.evaluation (false: none; checked), else
-- that of opts.holdout, else the pipeline's last one (what
-- pipe:evaluate(holdout) kept) }, or nil, message, code. p: the pipeline
-- (loaded, for bytes).
local function evaluated(p, opts)
  local m, ev = opts.metrics, opts.evaluation
  if opts.holdout ~= nil then
    local f, err, code = read_holdout(opts.holdout)
    if not f then return nil, err, code end
    local ok, res = pcall(p.evaluate, p, f)
    if not ok then return errors.fail("invalid", "holdout: " .. tostring(res)) end
    m = m or res
  end
  if ev == nil then ev = p.evaluation end
  if ev then
    local ok, err, code = evaluation.check(ev)
    if not ok then return nil, err, code end
  end
  return { metrics = m, evaluation = ev or nil }
end

-- The stored evaluation's key, and what the version's metadata says of it.
local function evaluation_key(name, version) return "evaluation/" .. name .. "/" .. version end
local function evaluation_summary(ev) return ev and { task = ev.task, rows = ev.rows } or nil end

--- Registers a fitted pipeline (or raw artifact bytes) as the next version
-- of `name`. opts: metrics, params, data (a training-data fingerprint),
-- provenance (where a model made elsewhere came from: a table, kept as
-- given), description, owner, bump = "patch" | "minor" | "major", version
-- (explicit), holdout (a labelled frame or a CSV / JSONL path: evaluated
-- here, its metrics stored unless opts.metrics gives them), evaluation (a
-- tycho.ml.evaluation record; false stores none). Without either, the
-- evaluation of the pipeline's last pipe:evaluate(holdout) is stored with
-- the version (reg:evaluation reads it). Returns the version string or
-- nil, message, code.
function Registry:register(name, pipe, opts)
  opts = opts or {}
  if not valid_name(name) then
    return errors.fail("invalid",
      "invalid model name '" .. tostring(name) .. "': letters, digits, _ - . (starting with a letter)")
  end
  if opts.provenance ~= nil and type(opts.provenance) ~= "table" then error("register: opts.provenance must be a table", 2) end
  if opts.version and not parse_version(opts.version) then
    return errors.fail("invalid", "version must be MAJOR.MINOR.PATCH, got '" .. tostring(opts.version) .. "'")
  end
  local bytes, sum, loaded
  if type(pipe) == "string" then
    local p, err, code = pipeline.from_bytes(pipe)
    if not p then return nil, err, code end
    bytes, sum, loaded = pipe, p.sha256, p
  else
    if not pipeline.is_pipeline(pipe) then error("register: expected a pipeline", 2) end
    local code
    bytes, sum, code = pipe:to_bytes()
    if not bytes then return nil, sum, code end
  end
  if #bytes > M.MAX_ARTIFACT_BYTES then
    return errors.fail("too_large", "the artifact is larger than " .. M.MAX_ARTIFACT_BYTES .. " bytes")
  end
  local measured, eerr, ecode = evaluated(loaded or pipe, opts)
  if not measured then return nil, eerr, ecode end
  local ev = measured.evaluation
  local code = code_fingerprint()
  return change(self, function(tx)
    local model = tx:get_json("registry", "model/" .. name) or { name = name, versions = {}, aliases = {}, history_seq = 0 }
    local version = next_version(model, opts)
    if tx:get_json("registry", "version/" .. name .. "/" .. version) then
      return errors.fail("conflict", "version " .. version .. " of " .. name .. " exists already")
    end
    local meta = {
      name = name, version = version, sha256 = sum, size = #bytes, created = timeutil.format(timeutil.now()),
      owner = opts.owner or who(), description = opts.description, metrics = measured.metrics,
      params = opts.params or (type(pipe) == "table" and params_of(pipe)) or nil,
      data = opts.data or (type(pipe) == "table" and pipe.fitted and pipe.fitted.data) or nil, code = code,
      -- (from the artifact's header when bytes are registered: the schema
      -- diff and a view's lineage read them)
      inputs = (loaded or pipe).inputs, input_types = (loaded or pipe).input_types,
      features = (loaded or pipe).features, provenance = opts.provenance,
      evaluation = evaluation_summary(ev),
    }
    tx:put_json("registry", "version/" .. name .. "/" .. version, meta)
    if ev then tx:put_json("registry", evaluation_key(name, version), ev) end
    tx:put("registry", "artifact/" .. name .. "/" .. version, bytes)
    model.versions[#model.versions + 1] = version
    if not model.latest or version_less(model.latest, version) then model.latest = version end
    tx:put_json("registry", "model/" .. name, model)
    return version
  end, { { name = name, sha256 = sum, bytes = bytes } })
end

-- The formats reg:import reads, by name.
local IMPORTERS = { xgboost = xgboost }

--- Imports a model made elsewhere from a file and registers it as the
-- next version of opts.name, with its provenance (source, the file's
-- sha256, "imported from xgboost X.Y") and that note as its description
-- unless opts.description gives one. opts: name (required), format
-- ("xgboost", the default: an XGBoost JSON model, see tycho.ml.xgboost),
-- the importer's options (features, label, classes), and register's
-- (description, owner, bump, version). Returns the version and the
-- pipeline, or nil, message, code (a refused file: "invalid").
function Registry:import(path, opts)
  if type(opts) ~= "table" or opts.name == nil then error("import: opts.name names the model", 2) end
  local importer = IMPORTERS[opts.format or "xgboost"]
  if not importer then
    return errors.fail("invalid", "unknown import format '" .. tostring(opts.format) .. "' (known: xgboost)")
  end
  local p, info, code = importer.import(path, opts)
  if not p then return nil, info, code end
  local version, err, vcode = self:register(opts.name, p, { description = opts.description or info.note,
    owner = opts.owner, bump = opts.bump, version = opts.version, params = info.params, provenance = info.provenance })
  if not version then return nil, err, vcode end
  return version, p
end

--- Registered models: { {name, latest, versions = n, aliases = {...}} }.
function Registry:list()
  return read(self, function(tx)
    local out = {}
    for _, v in tx:scan("registry", { prefix = "model/" }) do
      local m = json.decode(v)
      out[#out + 1] = { name = m.name, latest = m.latest, versions = #m.versions, aliases = m.aliases }
    end
    return out
  end)
end

local function resolve(tx, name, ref)
  local model = tx:get_json("registry", "model/" .. name)
  if not model then return errors.fail("not_found", "no model named '" .. tostring(name) .. "'") end
  if ref == nil or ref == "latest" then ref = model.latest end
  local version = model.aliases[ref] or ref
  if not tx:get_json("registry", "version/" .. name .. "/" .. tostring(version)) then
    return errors.fail("not_found", "model " .. name .. " has no version or alias '" .. tostring(ref) .. "'")
  end
  return version, model
end

--- Metadata of a version or alias (default: latest), or nil, message.
function Registry:get(name, ref)
  return read(self, function(tx)
    local version, model, code = resolve(tx, name, ref)
    if not version then return nil, model, code end
    local meta = tx:get_json("registry", "version/" .. name .. "/" .. version)
    meta.aliases = {}
    for alias, v in pairs(model.aliases) do
      if v == version then meta.aliases[#meta.aliases + 1] = alias end
    end
    table.sort(meta.aliases)
    return meta
  end)
end

--- The pipeline of a version or alias, loaded from its artifact (checked);
-- or nil, message, code.
function Registry:load(name, ref)
  local version, err, code = read(self, function(tx) return resolve(tx, name, ref) end)
  if not version then return nil, err, code end
  local bytes, berr, bcode = artifact_of(self, name, version)
  if not bytes then return nil, berr, bcode end
  local p, perr, pcode = pipeline.from_bytes(bytes)
  if not p then return nil, name .. "@" .. version .. ": " .. perr, pcode end
  p.registry_version = version
  return p
end

--- Versions of a model, oldest first, with their metadata.
function Registry:versions(name)
  return read(self, function(tx)
    local model = tx:get_json("registry", "model/" .. name)
    if not model then return errors.fail("not_found", "no model named '" .. tostring(name) .. "'") end
    local out = {}
    for i, v in ipairs(model.versions) do out[i] = tx:get_json("registry", "version/" .. name .. "/" .. v) end
    table.sort(out, function(a, b) return version_less(a.version, b.version) end)
    return out
  end)
end

-- How a version's metadata reads feature view `view`: the feature refs
-- naming it, and "training data" when its training set came from it.
local function reads_view(meta, view)
  local how = {}
  for _, ref in ipairs(type(meta.features) == "table" and meta.features or {}) do
    if type(ref) == "string" and ref:match("^([^:]+):") == view then how[#how + 1] = ref end
  end
  local views = type(meta.data) == "table" and type(meta.data.views) == "table" and meta.data.views or {}
  if views[view] ~= nil then how[#how + 1] = "training data" end
  return #how > 0 and how or nil
end

-- The versions of one model worth naming as readers: its latest, those
-- its aliases point at, and those in also.
local function named_versions(model, also)
  local set, aliases = {}, {}
  if model.latest then set[model.latest] = true end
  for alias, v in pairs(model.aliases or {}) do
    set[v] = true
    aliases[v] = aliases[v] or {}
    table.insert(aliases[v], alias)
  end
  for v in pairs(also or {}) do set[v] = true end
  return set, aliases
end

--- The registered versions that read feature view `view` (their
-- pipeline's feature references name it, or their training data came from
-- it): of each model, its latest version, those its aliases point at, and
-- those in also ({ model = { version = true } }, e.g. the versions being
-- served). Returns { { name, version, latest, aliases, reads } } by model
-- then version; reads lists the refs (or "training data") that tie it.
function Registry:readers(view, also)
  return read(self, function(tx)
    local out = {}
    for _, raw in tx:scan("registry", { prefix = "model/" }) do
      local model = json.decode(raw)
      local set, aliases = named_versions(model, (also or {})[model.name])
      for version in pairs(set) do
        local meta = tx:get_json("registry", "version/" .. model.name .. "/" .. version)
        local how = meta and reads_view(meta, view)
        if how then
          local names = aliases[version] or {}
          table.sort(names)
          out[#out + 1] = { name = model.name, version = version, latest = version == model.latest,
                            aliases = #names > 0 and names or json.empty_array, reads = how }
        end
      end
    end
    table.sort(out, function(a, b)
      if a.name ~= b.name then return a.name < b.name end
      return version_less(a.version, b.version)
    end)
    return out
  end)
end

--- Every alias move of a model, oldest first: {alias, from, to, who, at, why}.
function Registry:history(name)
  return read(self, function(tx)
    if not tx:get_json("registry", "model/" .. name) then
      return errors.fail("not_found", "no model named '" .. tostring(name) .. "'")
    end
    local out = {}
    for _, v in tx:scan("registry", { prefix = keys.pack("s", "history/" .. name) }) do out[#out + 1] = json.decode(v) end
    return out
  end)
end

--- The holdout evaluation stored with a version or alias (see
-- tycho.ml.evaluation: curves, confusion matrix or residuals, importance),
-- false when it has none (registered without a holdout, or before
-- evaluations were kept); or nil, message, code.
function Registry:evaluation(name, ref)
  return read(self, function(tx)
    local version, err, code = resolve(tx, name, ref)
    if not version then return nil, err, code end
    return tx:get_json("registry", evaluation_key(name, version)) or false
  end)
end

-- How b's input schema differs from a's: { added = {{name, type}},
-- removed = {{name, type}}, changed = {{name, from, to}} }.
local function schema_diff(a, b)
  local ta, tb = a.input_types or {}, b.input_types or {}
  local out, in_a = { added = {}, removed = {}, changed = {} }, {}
  for _, c in ipairs(a.inputs or {}) do in_a[c] = true end
  for _, c in ipairs(b.inputs or {}) do
    if not in_a[c] then out.added[#out.added + 1] = { name = c, type = tb[c] or json.null }
    elseif ta[c] ~= tb[c] then out.changed[#out.changed + 1] = { name = c, from = ta[c] or json.null, to = tb[c] or json.null } end
    in_a[c] = nil
  end
  for _, c in ipairs(a.inputs or {}) do
    if in_a[c] then out.removed[#out.removed + 1] = { name = c, type = ta[c] or json.null } end
  end
  for k, list in pairs(out) do if #list == 0 then out[k] = json.empty_array end end
  return out
end

--- Two versions side by side: { versions = {a, b}, metrics = { name =
-- {a, b} }, params = { name = {a, b} }, schema = how b's inputs differ from
-- a's ({ added, removed, changed }), evaluations = { a's, b's } (each a
-- reg:evaluation record or false) }; or nil, message, code.
function Registry:compare(name, v1, v2)
  local a, e1, c1 = self:get(name, v1)
  if not a then return nil, e1, c1 end
  local b, e2, c2 = self:get(name, v2)
  if not b then return nil, e2, c2 end
  local out = { versions = { a.version, b.version }, metrics = {}, params = {}, schema = schema_diff(a, b),
                evaluations = { self:evaluation(name, a.version), self:evaluation(name, b.version) } }
  for _, section in ipairs { "metrics", "params" } do
    for k, v in pairs(type(a[section]) == "table" and a[section] or {}) do out[section][k] = { v, json.null } end
    for k, v in pairs(type(b[section]) == "table" and b[section] or {}) do
      out[section][k] = out[section][k] or { json.null, json.null }
      out[section][k][2] = v
    end
  end
  return out
end

-- The version's recorded metric and the holder's, or a frame's evaluation
-- of both on the same holdout (a frame, or a CSV/JSONL path stored with a
-- policy).
local function compared(self, name, version, current, g)
  local metric = g.metric or "accuracy"
  if g.holdout == nil then
    local a = (self:get(name, version).metrics or {})[metric]
    local b = (self:get(name, current).metrics or {})[metric]
    return a, b, metric
  end
  local holdout, err = read_holdout(g.holdout)
  if not holdout then return nil, err, metric end
  local new, old = self:load(name, version), self:load(name, current)
  return new:evaluate(holdout)[metric], old:evaluate(holdout)[metric], metric
end

-- Gate checks; returns the list of reasons a promotion is refused.
local function check_gates(self, name, version, alias, gates, current)
  local reasons = {}
  local meta = self:get(name, version)
  local m = type(meta.metrics) == "table" and meta.metrics or {}
  for metric, threshold in pairs(gates.metrics or {}) do
    local value = m[metric]
    if type(value) ~= "number" then
      reasons[#reasons + 1] = string.format("metric %s was not recorded for %s", metric, version)
    elseif metrics.higher_is_better(metric) and value < threshold then
      reasons[#reasons + 1] = string.format("%s %.6g is below the gate %.6g", metric, value, threshold)
    elseif not metrics.higher_is_better(metric) and value > threshold then
      reasons[#reasons + 1] = string.format("%s %.6g is above the gate %.6g", metric, value, threshold)
    end
  end
  if gates.no_worse_than and current and current ~= version then
    local g = gates.no_worse_than
    local a, b, metric = compared(self, name, version, current, g)
    if type(a) ~= "number" or type(b) ~= "number" then
      reasons[#reasons + 1] = type(b) == "string" and b
        or string.format("%s was not recorded for both %s and %s (%s): cannot compare", metric, version, current, alias)
    else
      local worse = metrics.higher_is_better(metric) and (b - a) or (a - b)
      if worse > (g.by or 0) then
        reasons[#reasons + 1] = string.format("%s %s is %.6g against %.6g for %s (%s), worse by more than %g", metric,
          g.holdout and "on the holdout" or "as recorded", a, b, current, alias, g.by or 0)
      end
    end
  end
  if gates.schema ~= false and current and current ~= version then
    local old = self:get(name, current)
    local accepts = {}
    for _, c in ipairs(old.inputs or {}) do accepts[c] = (old.input_types or {})[c] or true end
    for _, c in ipairs(meta.inputs or {}) do
      if accepts[c] == nil then
        reasons[#reasons + 1] = string.format("input '%s' is required by %s but not by %s (%s)", c, version, current,
          alias)
      elseif accepts[c] ~= true and meta.input_types and meta.input_types[c] and meta.input_types[c] ~= accepts[c]
          and not (accepts[c] == "int" and meta.input_types[c] == "float") then
        reasons[#reasons + 1] = string.format("input '%s' changes type from %s to %s", c, accepts[c],
          meta.input_types[c])
      end
    end
  end
  if gates.approval and not gates.approved_by then
    reasons[#reasons + 1] = string.format("%s needs an approval: name the approver (approved_by)", alias)
  end
  table.sort(reasons)
  return reasons
end

-- One audit record: an alias move (kind nil: what rollback walks) or a
-- policy change (kind "policy"); on a cluster, with the home that made it.
local function record(tx, model, entry)
  model.history_seq = (model.history_seq or 0) + 1
  tx:put_json("registry", "model/" .. model.name, model)
  entry.who, entry.at, entry.home = entry.who or who(), timeutil.format(timeutil.now()), shared.home_of(tx)
  tx:put_json("registry", keys.pack("s u64", "history/" .. model.name, model.history_seq), entry)
end

local function move_alias(tx, name, alias, to, why, extra)
  local model = tx:get_json("registry", "model/" .. name)
  local from = model.aliases[alias]
  model.aliases[alias] = to
  local entry = { alias = alias, from = from, to = to, why = why }
  for k, v in pairs(extra or {}) do entry[k] = v end
  record(tx, model, entry)
  return from
end

-- An alias move published on the registry's cluster, if any (Registry:publish
-- below). The local move stands when publishing fails (this home decided
-- it; the next move publishes again): said on stderr.
local function publish_or_warn(self, name, alias)
  local ok, err = self:publish(name, alias)
  if ok == nil then
    io.stderr:write("tycho registry: ", name, "@", alias, " moved on this home but not published: ", err, "\n")
  end
end

local function policy_key(name, alias) return "policy/" .. name .. "/" .. alias end

local POLICY = {
  gates = { type = "table" }, no_worse_than = { type = "table" }, schema = { type = "bool" },
  approval = { type = "bool" },
}

-- A policy as stored: checked, with JSON-safe values only.
local function checked_policy(p)
  local ok, res = pcall(options.check, "policy", POLICY, p, 1)
  if not ok then return errors.fail("invalid", tostring(res):gsub("^.-policy:", "policy:")) end
  for metric, threshold in pairs(res.gates or {}) do
    if type(metric) ~= "string" or type(threshold) ~= "number" or threshold ~= threshold then
      return errors.fail("invalid", "policy: gates map a metric name to a threshold, got " .. tostring(metric))
    end
  end
  local g = res.no_worse_than
  if g then
    local gok, gres = pcall(options.check, "policy: no_worse_than", {
      metric = { type = "string" }, by = { type = "number", min = 0 }, holdout = { type = "string" } }, g, 1)
    if not gok then return errors.fail("invalid", tostring(gres):gsub("^.-policy:", "policy:")) end
    res.no_worse_than = gres
  end
  return res
end

--- The stored policy of alias (a table, or nil when it has none); with
-- `policy`, stores it (false removes it) and records the change in the
-- audit history. A policy: { gates = { auc = 0.8, ... } (thresholds on the
-- version's recorded metrics), no_worse_than = { metric = "auc", by = 0.01,
-- holdout = "path.csv" } (against the alias's current holder: on the
-- holdout when given, else on the recorded metrics), schema = true (the new
-- version accepts what the holder accepts), approval = false (a promotion
-- must name its approver) }. Returns the policy, or nil, message, code.
function Registry:policy(name, alias, policy)
  if not valid_name(alias) then return errors.fail("invalid", "invalid alias '" .. tostring(alias) .. "'") end
  if policy == nil then
    return read(self, function(tx)
      if not tx:get("registry", "model/" .. name) then
        return errors.fail("not_found", "no model named '" .. tostring(name) .. "'")
      end
      return tx:get_json("registry", policy_key(name, alias)) or false
    end)
  end
  local stored = false
  if policy ~= false then
    local why, code
    stored, why, code = checked_policy(policy)
    if not stored then return nil, why, code end
  end
  return change(self, function(tx)
    local model = tx:get_json("registry", "model/" .. name)
    if not model then return errors.fail("not_found", "no model named '" .. tostring(name) .. "'") end
    if stored then tx:put_json("registry", policy_key(name, alias), stored)
    else tx:delete("registry", policy_key(name, alias)) end
    record(tx, model, { kind = "policy", alias = alias, policy = stored or json.null, why = "policy" })
    return stored
  end)
end

-- The gates a promotion to alias must pass: the stored policy's and the
-- caller's, both.
local function gates_for(stored, opts)
  local gates = { metrics = {}, schema = not (stored and stored.schema == false), approval = stored and stored.approval,
                  approved_by = opts.approved_by, no_worse_than = stored and stored.no_worse_than }
  for metric, threshold in pairs(stored and stored.gates or {}) do gates.metrics[metric] = threshold end
  for k, v in pairs(opts.gates or {}) do
    if k == "metrics" then for metric, t in pairs(v) do gates.metrics[metric] = t end
    elseif k == "no_worse_than" then gates.no_worse_than = v
    elseif k == "schema" then gates.schema = gates.schema and v ~= false
    else gates.metrics[k] = v end
  end
  return gates
end

-- What a promotion checked, in words, for its audit record.
local function gates_checked(gates, current)
  local out = {}
  for metric, threshold in pairs(gates.metrics) do
    out[#out + 1] = string.format("%s %s %s", metric, metrics.higher_is_better(metric) and ">=" or "<=",
      tostring(threshold))
  end
  table.sort(out)
  if gates.no_worse_than and current then
    out[#out + 1] = string.format("%s no worse than %s's", gates.no_worse_than.metric or "accuracy", current)
  end
  if gates.schema and current then out[#out + 1] = "accepts what " .. current .. " accepts" end
  if gates.approval then out[#out + 1] = "approved" end
  return #out > 0 and out or nil
end

--- Points alias at version after the alias's stored policy and the
-- caller's gates pass. opts: gates = { metrics = {auc = 0.95} (shorthand:
-- metric = threshold at the top level), no_worse_than = { holdout = frame,
-- metric = "auc", by = 0.01 }, schema = false (skip the input contract) },
-- approved_by (a name, when the policy wants an approval), why, force =
-- true with reason = "..." (overrides every refusal; recorded with the
-- reasons it overrode). Returns true, or nil, every reason joined, code
-- "forbidden", and the list of reasons; nothing moves then.
function Registry:promote(name, version, alias, opts)
  opts = opts or {}
  if not valid_name(alias) then return errors.fail("invalid", "invalid alias '" .. tostring(alias) .. "'") end
  if opts.force and (type(opts.reason) ~= "string" or not opts.reason:match("%S")) then
    return errors.fail("invalid", "a forced promotion needs a reason")
  end
  local target, model, code = read(self, function(tx) return resolve(tx, name, version) end)
  if not target then return nil, model, code end
  local stored = read(self, function(tx) return tx:get_json("registry", policy_key(name, alias)) end)
  local current = model.aliases[alias]
  local gates = gates_for(stored, opts)
  local reasons = check_gates(self, name, target, alias, gates, current)
  if #reasons > 0 and not opts.force then
    return nil, "promotion of " .. name .. " " .. target .. " to " .. alias .. " refused: " .. table.concat(reasons, "; "),
      "forbidden", reasons
  end
  local extra = { approved_by = opts.approved_by, gates = gates_checked(gates, current) }
  if #reasons > 0 then extra.forced, extra.reason, extra.overrode = true, opts.reason, reasons end
  local ok, err, ucode = change(self, function(tx)
    move_alias(tx, name, alias, target, opts.why or (extra.forced and "force") or "promote", extra)
    return true
  end)
  if not ok then return nil, err, ucode end
  publish_or_warn(self, name, alias)
  return true
end

-- ---- promotion requests (an alias whose policy wants an approval) ----------------

local function request_key(name, id) return "request/" .. name .. "/" .. id end

local MAX_TEXT = 512

local function text_or_nil(v) return type(v) == "string" and v:match("%S") and v:sub(1, MAX_TEXT) or nil end

--- Asks for alias to point at version, for a person to approve (an alias
-- whose policy has approval = true: MLflow's manual stage). Every other gate
-- is checked now, as promote checks it: a request that would fail one is
-- refused with the reasons. opts: by (who asks), reason. The request waits
-- until approve or reject decides it; the audit history records each step.
-- Returns the request { id, name, version, alias, current, by, reason,
-- status = "pending", at }, or nil, message, code (and the reasons).
function Registry:request(name, version, alias, opts)
  opts = opts or {}
  if not valid_name(alias) then return errors.fail("invalid", "invalid alias '" .. tostring(alias) .. "'") end
  local target, model, code = read(self, function(tx) return resolve(tx, name, version) end)
  if not target then return nil, model, code end
  local stored = read(self, function(tx) return tx:get_json("registry", policy_key(name, alias)) end)
  local current = model.aliases[alias]
  local gates = gates_for(stored, {})
  gates.approval = false  -- what the request is for
  local reasons = check_gates(self, name, target, alias, gates, current)
  if #reasons > 0 then
    local why = "request to promote " .. name .. " " .. target .. " to " .. alias .. " refused: "
      .. table.concat(reasons, "; ")
    return nil, why, "forbidden", reasons
  end
  local req = { id = string.format("%016x", timeutil.now()), name = name, version = target, alias = alias,
                current = current or json.null, by = text_or_nil(opts.by) or who(), reason = text_or_nil(opts.reason),
                status = "pending", at = timeutil.format(timeutil.now()) }
  return change(self, function(tx)
    local m = tx:get_json("registry", "model/" .. name)
    tx:put_json("registry", request_key(name, req.id), req)
    record(tx, m, { kind = "request", alias = alias, version = target, request = req.id, who = req.by,
                    why = req.reason or "request" })
    return req
  end)
end

--- The promotion requests of a model, newest first (pending and decided).
function Registry:requests(name)
  return read(self, function(tx)
    if not tx:get("registry", "model/" .. name) then
      return errors.fail("not_found", "no model named '" .. tostring(name) .. "'")
    end
    local out = {}
    for _, v in tx:scan("registry", { prefix = "request/" .. name .. "/" }) do table.insert(out, 1, json.decode(v)) end
    return out
  end)
end

-- Closes a pending request (status approved or rejected) in tx.
local function decide(tx, name, id, status, by, why)
  local req = tx:get_json("registry", request_key(name, id))
  req.status, req.decided_by, req.decided_at, req.decision = status, by, timeutil.format(timeutil.now()), why
  tx:put_json("registry", request_key(name, id), req)
  return req
end

local function pending(self, name, id)
  local req = read(self, function(tx) return tx:get_json("registry", request_key(name, tostring(id))) end)
  if not req then return errors.fail("not_found", "model " .. name .. " has no request '" .. tostring(id) .. "'") end
  if req.status ~= "pending" then return errors.fail("conflict", "request " .. id .. " is already " .. req.status) end
  return req
end

--- Approves a pending request: the version is promoted as promote does,
-- with opts.by as the approver (required) and opts.reason in the audit
-- history; the request closes as approved. Returns the request, or nil,
-- message, code (and the reasons when a gate fails now).
function Registry:approve(name, id, opts)
  opts = opts or {}
  local by = text_or_nil(opts.by)
  if not by then return errors.fail("invalid", "an approval names its approver (by)") end
  local req, err, code = pending(self, name, id)
  if not req then return nil, err, code end
  local ok, msg, pcode, reasons = self:promote(name, req.version, req.alias,
    { approved_by = by, why = "approve", reason = text_or_nil(opts.reason) })
  if not ok then return nil, msg, pcode, reasons end
  return change(self, function(tx) return decide(tx, name, req.id, "approved", by, text_or_nil(opts.reason)) end)
end

--- Rejects a pending request, with who (opts.by, required) and why
-- (opts.reason) in the audit history. Returns the request, or nil, message, code.
function Registry:reject(name, id, opts)
  opts = opts or {}
  local by = text_or_nil(opts.by)
  if not by then return errors.fail("invalid", "a rejection names who rejects (by)") end
  local req, err, code = pending(self, name, id)
  if not req then return nil, err, code end
  return change(self, function(tx)
    local m = tx:get_json("registry", "model/" .. name)
    record(tx, m, { kind = "request", alias = req.alias, version = req.version, request = req.id, who = by,
                    why = "rejected" .. (text_or_nil(opts.reason) and (": " .. text_or_nil(opts.reason)) or "") })
    return decide(tx, name, req.id, "rejected", by, text_or_nil(opts.reason))
  end)
end

--- Moves alias back to the version it held before its latest promotion
-- that has not been rolled back (repeated rollbacks walk further back).
-- Returns that version, or nil, why and a code (not_found: no such model
-- or no history; conflict: nothing earlier).
function Registry:rollback(name, alias, opts)
  local hist, err, code = self:history(name)
  if not hist then return nil, err, code end
  local stack, moved = {}, false
  for _, h in ipairs(hist) do
    if h.alias == alias and h.kind == nil then
      moved = true
      if h.why == "rollback" then stack[#stack] = nil
      else stack[#stack + 1] = (h.from ~= json.null and h.from) or false end
    end
  end
  if not moved then return errors.fail("not_found", "alias " .. alias .. " of " .. name .. " has no history") end
  local target = stack[#stack]
  if not target then
    return errors.fail("conflict", "alias " .. alias .. " of " .. name .. " has no earlier version to roll back to")
  end
  local ok, merr, mcode = change(self, function(tx)
    move_alias(tx, name, alias, target, "rollback", { reason = opts and opts.reason })
    return true
  end)
  if not ok then return nil, merr, mcode end
  publish_or_warn(self, name, alias)
  return target
end

-- ---- published on a cluster (registry/publish.lua) ---------------------------------

--- Publishes where alias points now on the registry's cluster, for serving
-- nodes on other homes: its artifact (once) and the move. Promote, approve
-- and rollback do it themselves. Returns the move's sequence number (false
-- without a cluster), or nil, message, code.
function Registry:publish(name, alias)
  if not self.cluster then return false end
  local meta, err, code = self:get(name, alias)
  if not meta then return nil, err, code end
  local bytes, berr, bcode = artifact_of(self, name, meta.version)
  if not bytes then return nil, berr, bcode end
  local conn, cerr, ccode = publish.connect(self.cluster)
  if not conn then return nil, cerr, ccode end
  return publish.announce(conn, meta, bytes, alias)
end

--- Points alias at version as another home decided (a move published on
-- the cluster, see registry/publish.lua): no gates, the publisher's passed;
-- not published again. The audit history records it as why = "cluster"
-- with extra's fields. Returns true when the alias moved, false when it
-- pointed there already; or nil, message, code. A registry shared on the
-- cluster only brings its copy up to date: the publisher's commit moved the
-- alias before the move was announced, so a copy pointing elsewhere holds a
-- later move (a promotion committed, not yet announced, when the move was
-- read), which moving back would undo for every home.
function Registry:follow(name, alias, version, extra)
  return change(self, function(tx)
    local model = tx:get_json("registry", "model/" .. name)
    if not model or not tx:get("registry", "version/" .. name .. "/" .. version) then
      return errors.fail("not_found", "model " .. name .. " has no version " .. version)
    end
    if model.aliases[alias] == version or self.cluster then return false end
    move_alias(tx, name, alias, version, "cluster", extra)
    return true
  end)
end

return M
