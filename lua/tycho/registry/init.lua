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
-- distinct versions and a crash leaves no half-registered version.
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local pipeline = require "tycho.ml.pipeline"
local timeutil = require "tycho.util.timeutil"
local internal = require "tycho.internal"
local metrics = require "tycho.ml.metrics"

local M = {}
local Registry = {}
Registry.__index = Registry

--- Opens the registry of a home (default: this process's). Returns the
-- registry or nil, message.
function M.open(opts)
  local st, err = require("tycho.core.store").from(opts)
  if not st then return nil, err end
  return setmetatable({ store = st }, Registry)
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

local function next_version(model, opts)
  if opts.version then return tostring(opts.version) end
  local latest = model.latest
  if not latest then return "1.0.0" end
  local v = parse_version(latest)
  if opts.bump == "major" then return string.format("%d.0.0", v[1] + 1) end
  if opts.bump == "minor" then return string.format("%d.%d.0", v[1], v[2] + 1) end
  return string.format("%d.%d.%d", v[1], v[2], v[3] + 1)
end

--- Registers a fitted pipeline (or raw artifact bytes) as the next version
-- of `name`. opts: metrics, params, data (a training-data fingerprint),
-- description, owner, bump = "patch" | "minor" | "major", version
-- (explicit). Returns the version string or nil, message.
function Registry:register(name, pipe, opts)
  opts = opts or {}
  if not valid_name(name) then
    return nil, "invalid model name '" .. tostring(name) .. "': letters, digits, _ - . (starting with a letter)"
  end
  if opts.version and not parse_version(opts.version) then
    return nil, "version must be MAJOR.MINOR.PATCH, got '" .. tostring(opts.version) .. "'"
  end
  local bytes, sum
  if type(pipe) == "string" then
    local p, err = pipeline.from_bytes(pipe)
    if not p then return nil, err end
    bytes, sum = pipe, p.sha256
  else
    if not pipeline.is_pipeline(pipe) then error("register: expected a pipeline", 2) end
    bytes, sum = pipe:to_bytes()
    if not bytes then return nil, sum end
  end
  local code = code_fingerprint()
  return self.store:update(function(tx)
    local model = tx:get_json("registry", "model/" .. name) or { name = name, versions = {}, aliases = {}, history_seq = 0 }
    local version = next_version(model, opts)
    if tx:get_json("registry", "version/" .. name .. "/" .. version) then
      return nil, "version " .. version .. " of " .. name .. " exists already"
    end
    local meta = {
      name = name, version = version, sha256 = sum, size = #bytes, created = timeutil.format(timeutil.now()),
      owner = opts.owner or who(), description = opts.description, metrics = opts.metrics, params = opts.params,
      data = opts.data, code = code,
      inputs = type(pipe) == "table" and pipe.inputs or nil,
      input_types = type(pipe) == "table" and pipe.input_types or nil,
      features = type(pipe) == "table" and pipe.features or nil,
    }
    tx:put_json("registry", "version/" .. name .. "/" .. version, meta)
    tx:put("registry", "artifact/" .. name .. "/" .. version, bytes)
    model.versions[#model.versions + 1] = version
    if not model.latest or version_less(model.latest, version) then model.latest = version end
    tx:put_json("registry", "model/" .. name, model)
    return version
  end)
end

--- Registered models: { {name, latest, versions = n, aliases = {...}} }.
function Registry:list()
  return self.store:view(function(tx)
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
  if not model then return nil, "no model named '" .. tostring(name) .. "'" end
  if ref == nil or ref == "latest" then ref = model.latest end
  local version = model.aliases[ref] or ref
  if not tx:get_json("registry", "version/" .. name .. "/" .. tostring(version)) then
    return nil, "model " .. name .. " has no version or alias '" .. tostring(ref) .. "'"
  end
  return version, model
end

--- Metadata of a version or alias (default: latest), or nil, message.
function Registry:get(name, ref)
  return self.store:view(function(tx)
    local version, model = resolve(tx, name, ref)
    if not version then return nil, model end
    local meta = tx:get_json("registry", "version/" .. name .. "/" .. version)
    meta.aliases = {}
    for alias, v in pairs(model.aliases) do
      if v == version then meta.aliases[#meta.aliases + 1] = alias end
    end
    table.sort(meta.aliases)
    return meta
  end)
end

--- The pipeline of a version or alias, loaded from its artifact (checked).
function Registry:load(name, ref)
  local bytes, err = self.store:view(function(tx)
    local version, e = resolve(tx, name, ref)
    if not version then return nil, e end
    return tx:get("registry", "artifact/" .. name .. "/" .. version), version
  end)
  if not bytes then return nil, err end
  local p, perr = pipeline.from_bytes(bytes)
  if not p then return nil, name .. "@" .. tostring(err) .. ": " .. perr end
  p.registry_version = err
  return p
end

--- Versions of a model, oldest first, with their metadata.
function Registry:versions(name)
  return self.store:view(function(tx)
    local model = tx:get_json("registry", "model/" .. name)
    if not model then return nil, "no model named '" .. tostring(name) .. "'" end
    local out = {}
    for i, v in ipairs(model.versions) do out[i] = tx:get_json("registry", "version/" .. name .. "/" .. v) end
    table.sort(out, function(a, b) return version_less(a.version, b.version) end)
    return out
  end)
end

--- Every alias move of a model, oldest first: {alias, from, to, who, at, why}.
function Registry:history(name)
  return self.store:view(function(tx)
    if not tx:get_json("registry", "model/" .. name) then return nil, "no model named '" .. tostring(name) .. "'" end
    local out = {}
    for _, v in tx:scan("registry", { prefix = keys.pack("s", "history/" .. name) }) do out[#out + 1] = json.decode(v) end
    return out
  end)
end

--- Metrics and params of two versions side by side:
-- { metrics = { name = {a, b} }, params = { name = {a, b} } }.
function Registry:compare(name, v1, v2)
  local a, e1 = self:get(name, v1)
  if not a then return nil, e1 end
  local b, e2 = self:get(name, v2)
  if not b then return nil, e2 end
  local out = { versions = { a.version, b.version }, metrics = {}, params = {} }
  for _, section in ipairs { "metrics", "params" } do
    for k, v in pairs(type(a[section]) == "table" and a[section] or {}) do out[section][k] = { v, json.null } end
    for k, v in pairs(type(b[section]) == "table" and b[section] or {}) do
      out[section][k] = out[section][k] or { json.null, json.null }
      out[section][k][2] = v
    end
  end
  return out
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
    local metric, by = g.metric or "accuracy", g.by or 0
    local new, old = self:load(name, version), self:load(name, current)
    local a, b = new:evaluate(g.holdout)[metric], old:evaluate(g.holdout)[metric]
    local worse = metrics.higher_is_better(metric) and (b - a) or (a - b)
    if worse > by then
      reasons[#reasons + 1] = string.format("%s on the holdout is %.6g against %.6g for %s (%s), worse by more than %g",
        metric, a, b, current, alias, by)
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
  table.sort(reasons)
  return reasons
end

local function move_alias(tx, name, alias, to, why)
  local model = tx:get_json("registry", "model/" .. name)
  local from = model.aliases[alias]
  model.aliases[alias] = to
  model.history_seq = (model.history_seq or 0) + 1
  tx:put_json("registry", "model/" .. name, model)
  tx:put_json("registry", keys.pack("s u64", "history/" .. name, model.history_seq),
    { alias = alias, from = from, to = to, who = who(), at = timeutil.format(timeutil.now()), why = why })
  return from
end

--- Points alias at version after the gates pass. gates: { metrics = {auc =
-- 0.95} (shorthand: metric = threshold at the top level), no_worse_than =
-- { holdout = frame, metric = "auc", by = 0.01 }, schema = true (default:
-- the new version must accept what the current holder accepts) }. Returns
-- true, or nil and every reason (joined) when refused; nothing moves then.
function Registry:promote(name, version, alias, opts)
  opts = opts or {}
  if not valid_name(alias) then return nil, "invalid alias '" .. tostring(alias) .. "'" end
  local target, model = self.store:view(function(tx) return resolve(tx, name, version) end)
  if not target then return nil, model end
  local gates = {}
  for k, v in pairs(opts.gates or {}) do
    if k == "metrics" or k == "no_worse_than" or k == "schema" then gates[k] = v
    else gates.metrics = gates.metrics or {} gates.metrics[k] = v end
  end
  local current = model.aliases[alias]
  local reasons = check_gates(self, name, target, alias, gates, current)
  if #reasons > 0 then
    return nil, "promotion of " .. name .. " " .. target .. " to " .. alias .. " refused: " .. table.concat(reasons, "; "),
      reasons
  end
  self.store:update(function(tx) move_alias(tx, name, alias, target, opts.why or "promote") end)
  return true
end

--- Moves alias back to the version it held before its latest promotion
-- that has not been rolled back (repeated rollbacks walk further back).
-- Returns that version, or nil and why (no history, nothing earlier).
function Registry:rollback(name, alias, opts)
  local hist, err = self:history(name)
  if not hist then return nil, err end
  local stack, moved = {}, false
  for _, h in ipairs(hist) do
    if h.alias == alias then
      moved = true
      if h.why == "rollback" then stack[#stack] = nil
      else stack[#stack + 1] = (h.from ~= json.null and h.from) or false end
    end
  end
  if not moved then return nil, "alias " .. alias .. " of " .. name .. " has no history" end
  local target = stack[#stack]
  if not target then
    return nil, "alias " .. alias .. " of " .. name .. " has no earlier version to roll back to"
  end
  self.store:update(function(tx) move_alias(tx, name, alias, target, "rollback") end)
  local _ = opts
  return target
end

return M
