--- Experiments, definitions: checked, stored, loaded and listed.
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local timeutil = require "tycho.util.timeutil"
local errors = require "tycho.util.errors"
local ffi = require "ffi"
local shared = require "tycho.experiments.records"
local Experiment = shared.Experiment
local KINDS = shared.KINDS
local REWARDS = shared.REWARDS
local st = shared.st
local def_key = shared.def_key
local status_key = shared.status_key
local counter_key = shared.counter_key
local put_counters = shared.put_counters
local salt_state = shared.salt_state
local cluster = require "tycho.experiments.cluster"

local M = {}

-- The variants' cumulative weights, for tz_hash_bucket.
local function running_sums(variants)
  local bounds, acc = ffi.new("double[?]", #variants), 0
  for i, v in ipairs(variants) do
    acc = acc + v.weight
    bounds[i - 1] = acc
  end
  return bounds
end

local function bad(msg) error("experiment: " .. msg, 3) end

-- "spam@staging" -> "spam", "staging"; "spam" -> "spam", "production".
function M.parse_model_ref(ref)
  local name, alias = tostring(ref):match("^([%w_%.%-]+)@([%w_%.%-]+)$")
  if name then return name, alias end
  if tostring(ref):match("^[%w_%.%-]+$") then return ref, "production" end
  return nil
end

--- Validates a definition and returns the experiment (raises on errors,
-- naming the field). Functions (target, reward) stay in this process; the
-- rest is what gets stored.
function M.define(def)
  if type(def) ~= "table" then bad("expected a table") end
  local name = def.name
  if type(name) ~= "string" or not name:match("^[%w_%.%-]+$") or #name > shared.MAX_NAME_BYTES then
    bad("name must be 1 to " .. shared.MAX_NAME_BYTES .. " letters, digits, '_', '.' or '-', got " .. tostring(name))
  end
  local kind = def.kind or "ab"
  if not KINDS[kind] then bad(name .. ": unknown kind '" .. tostring(kind) .. "' (ab, thompson, ucb1, epsilon_greedy)") end
  if type(def.unit) ~= "string" then bad(name .. ": unit must name the request field that identifies a unit") end
  if type(def.variants) ~= "table" or #def.variants < 2 then bad(name .. ": needs at least two variants") end
  local variants, seen, names_json, total, weighted = {}, {}, {}, 0, 0
  for i, v in ipairs(def.variants) do
    if type(v) ~= "table" or type(v.name) ~= "string" then bad(name .. ": variant " .. i .. " needs a name") end
    if seen[v.name] then bad(name .. ": variant '" .. v.name .. "' appears twice") end
    if v.name == "" or v.name:byte(1) == 123 then bad(name .. ": variant name '" .. v.name .. "' is empty or starts with '{'") end
    seen[v.name], names_json[v.name] = true, json.encode(v.name)
    if v.weight ~= nil then
      if type(v.weight) ~= "number" or v.weight < 0 or v.weight ~= v.weight then
        bad(name .. ": variant '" .. v.name .. "' has a bad weight " .. tostring(v.weight))
      end
      total, weighted = total + v.weight, weighted + 1
    end
    if v.model ~= nil and not M.parse_model_ref(v.model) then
      bad(name .. ": variant '" .. v.name .. "' names a bad model '" .. tostring(v.model) .. "' (NAME or NAME@ALIAS)")
    end
    local copy = {}
    for k, x in pairs(v) do copy[k] = x end
    variants[i] = copy
  end
  if weighted > 0 and weighted < #variants then bad(name .. ": give every variant a weight, or none") end
  if weighted == 0 then
    for _, v in ipairs(variants) do v.weight = 1 / #variants end
  elseif math.abs(total - 1) > 1e-6 then
    bad(string.format("%s: weights sum to %.6g, not 1", name, total))
  end
  if def.winner ~= nil and not seen[def.winner] then bad(name .. ": winner '" .. tostring(def.winner) .. "' is no variant") end
  if def.target ~= nil and type(def.target) ~= "function" then bad(name .. ": target must be a function(req)") end
  local reward = def.reward or "outcome"
  if type(reward) ~= "function" and not REWARDS[reward] then
    bad(name .. ": reward must be a function(output, outcome) or one of correct, outcome, neg_abs_error")
  end
  local metric_type = def.metric_type or (reward == "correct" and "binary") or "binary"
  if metric_type ~= "binary" and metric_type ~= "continuous" then
    bad(name .. ": metric_type must be binary or continuous")
  end
  return setmetatable({
    name = name, kind = kind, unit = def.unit, variants = variants, metric = def.metric or "conversion",
    metric_type = metric_type, reward = reward, target = def.target, salt = tostring(def.salt or name),
    winner = def.winner, epsilon = def.epsilon or 0.1, seed = def.seed or 1, description = def.description,
    status_key = status_key(name), salt_state = salt_state(tostring(def.salt or name)),
    unit_prefix = keys.pack("s s", "u", name), bounds = running_sums(variants),
    by_name = seen, names_json = names_json, pending = {}, target_errors = 0,
  }, Experiment)
end

function Experiment:control() return self.variants[1] end

function Experiment:variant(name)
  for _, v in ipairs(self.variants) do if v.name == name then return v end end
end

-- What is stored: the definition without functions.
function Experiment:record()
  local vs = {}
  for i, v in ipairs(self.variants) do
    local c = {}
    for k, x in pairs(v) do if type(x) ~= "function" then c[k] = x end end
    vs[i] = c
  end
  return { name = self.name, kind = self.kind, unit = self.unit, variants = vs, metric = self.metric,
           metric_type = self.metric_type, reward = type(self.reward) == "string" and self.reward or "function",
           salt = self.salt, winner = self.winner, epsilon = self.epsilon, seed = self.seed,
           description = self.description, targeted = self.target ~= nil }
end

--- Stores the definition; a stored one keeps its status, winner and start
-- time (a restart never restarts or resumes a stopped experiment). With a
-- cluster, on the cluster and copied in; while the cluster does not answer,
-- on this home (stderr says so) until a serving worker's poll publishes it.
function Experiment:save(store)
  store = store or st()
  local sh = cluster.of(store)
  if sh then
    local rec, err = sh:publish(store, self)
    if rec then return rec end
    sh:say("save", "experiment " .. self.name .. ": " .. err .. "; stored on this home only for now")
  end
  return store:update(function(tx)
    local old = tx:get_json("experiments", def_key(self.name))
    local rec = self:record()
    rec.status = old and old.status or "running"
    rec.started_at = old and old.started_at or timeutil.now()
    rec.stopped_at = old and old.stopped_at or nil
    rec.winner = old and old.winner or rec.winner
    tx:put_json("experiments", def_key(self.name), rec)
    if not tx:get("experiments", status_key(self.name)) then tx:put("experiments", status_key(self.name), "running") end
    for _, v in ipairs(self.variants) do
      if not tx:get("experiments", counter_key(self.name, v.name)) then
        put_counters(tx, self.name, v.name, { units = 0, exposures = 0, sum = 0, sumsq = 0 })
      end
    end
    return rec
  end)
end

--- An experiment rebuilt from its stored record (for the CLI and for
-- experiments not declared by the running app); tx: an open transaction.
-- nil, message, "not_found" when none is stored under name.
function M.load(name, store, tx)
  local rec
  if tx then rec = tx:get_json("experiments", def_key(name))
  else
    store = store or st()
    local sh = cluster.of(store)
    if sh then sh:before_read(store) end
    rec = store:view(function(t) return t:get_json("experiments", def_key(name)) end)
  end
  if not rec then return errors.fail("not_found", "no experiment '" .. tostring(name) .. "'") end
  local def = {}
  for k, v in pairs(rec) do def[k] = v end
  def.reward = REWARDS[rec.reward] and rec.reward or "outcome"
  def.winner = nil
  local e = M.define(def)
  e.stored = rec
  return e
end

--- Every stored experiment's record (name, kind, status, unit, metric,
-- variants, ...) as plain tables, sorted by name, from store (default: the
-- home's). Unreadable records are skipped; an empty list when there are none.
function M.list(store)
  store = store or st()
  local sh = cluster.of(store)
  if sh then sh:before_read(store) end
  local out = {}
  store:view(function(tx)
    for _, v in tx:scan("experiments", { prefix = keys.pack("s", "d") }) do
      local ok, rec = pcall(json.decode, v)
      if ok and type(rec) == "table" and rec.name then out[#out + 1] = rec end
    end
  end)
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end


return M
