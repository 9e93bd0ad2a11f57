--- Experiments, assignment: the variant of each unit (A/B by hash, bandits
-- by their counters), exposures buffered and flushed with the prediction log.
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local base = require "tycho.core.base"
local ffi = require "ffi"
local shared = require "tycho.experiments.records"
local Experiment = shared.Experiment
local st = shared.st
local reader = shared.reader
local unit_record = shared.unit_record
local counter_key = shared.counter_key
local put_counters = shared.put_counters
local MAX_UNIT_BYTES = shared.MAX_UNIT_BYTES
local fault_key = shared.fault_key
local cluster = require "tycho.experiments.cluster"

local M = {}

-- The bandit's random state: seeded per experiment, independent of
-- math.random; the draws are C kernels (tz_sample), not interpreted Lua
-- arithmetic on every new unit.
local function rng(self)
  local state = self.rng
  if not state then
    state = ffi.new("uint64_t[1]", self.seed)
    self.rng = state
  end
  return state
end

local function rand(self) return base.sample.uniform(rng(self)) end

local function read_counters_in(tx, e, out)
  for _, v in ipairs(e.variants) do
    out[v.name] = tx:get_json("experiments", counter_key(e.name, v.name))
      or { units = 0, exposures = 0, sum = 0, sumsq = 0 }
  end
end

-- (No closure: creating one is not compiled by LuaJIT, and a bandit's
-- assignment, compiled, comes here after every commit.)
local function load_counters(e, store)
  local out = {}
  store:view(read_counters_in, e, out)
  return out
end

--- Per-variant counters, read again from the home only after a commit.
-- (The read is a function of its own: a closure here would stop LuaJIT's
-- trace on every call, the cached ones included.)
function Experiment:read_counters(store, fresh, version)
  store = store or st()
  version = version or store:version()
  if fresh or not self.counters or self.counters_version ~= version then
    self.counters, self.counters_version = load_counters(self, store), version
  end
  return self.counters
end

local function mean_of(c) return c.units > 0 and c.sum / c.units or 0 end

-- What the bandit draws from, per variant (arrays for the C kernels),
-- worked out once per reading of the counters: Beta(1 + sum, 1 + failures)
-- or Normal(mean, standard error) for Thompson sampling, and the pick of
-- UCB1 and of ε-greedy's greedy step, which only change with the counters.
local function policy(e, c)
  local n = #e.variants
  local p = { counters = c, a = ffi.new("double[?]", n), b = ffi.new("double[?]", n) }
  local total = 0
  for _, v in ipairs(e.variants) do total = total + c[v.name].units end
  local best_score
  for i, v in ipairs(e.variants) do
    local k = c[v.name]
    if e.metric_type == "binary" then
      p.a[i - 1], p.b[i - 1] = 1 + k.sum, 1 + math.max(0, k.units - k.sum)
    else
      local var = k.units > 1 and (k.sumsq - k.units * mean_of(k) ^ 2) / (k.units - 1) or 1e6
      p.a[i - 1], p.b[i - 1] = mean_of(k), math.sqrt(math.max(var, 0) / math.max(k.units, 1))
    end
    local score = mean_of(k)
    if e.kind == "ucb1" then
      score = k.units == 0 and math.huge or score + math.sqrt(2 * math.log(math.max(total, 1)) / k.units)
    end
    if not best_score or score > best_score then p.best, best_score = v, score end
  end
  return p
end

-- The bandit's pick for a new unit.
function Experiment:choose(store, version)
  local c = self:read_counters(store, false, version)
  local p = self.policy
  if not p or p.counters ~= c then
    p = policy(self, c)
    self.policy = p
  end
  if self.kind == "thompson" then
    local pick = self.metric_type == "binary" and base.sample.best_beta or base.sample.best_normal
    return self.variants[1 + pick(rng(self), #self.variants, p.a, p.b)]
  end
  if self.kind == "epsilon_greedy" and rand(self) < self.epsilon then
    return self.variants[1 + math.floor(rand(self) * #self.variants)]
  end
  return p.best
end

-- "running", or "stopped" and the variant every unit now gets.
-- Asked on every assignment, read again only after a commit (by any
-- process): through the store's point reader, the key packed when the
-- experiment is defined.
function Experiment:status(store, version)
  store = store or st()
  if not version then
    local sh = cluster.of(store)
    if sh then sh:before_read(store) end
    version = store:version()
  end
  if version ~= self.status_version then
    local p, n = reader(store)(self.status_key)
    local s = p and ffi.string(p, n)
    if not s or s == "running" then
      self.status_now, self.final_now = "running", nil
    else
      self.status_now, self.final_now = "stopped", self:variant(s:match("^stopped:(.*)$")) or self:control()
    end
    -- Taken before the read: a commit in between only makes the next call read again.
    self.status_version = version
  end
  return self.status_now, self.final_now
end

-- A new unit's variant on the cluster: this worker's choice unless another
-- node gave it one first. When the cluster does not answer (read_ms), the
-- choice stands and counts as a fallback (the flush records it later,
-- unless another node did meanwhile).
function Experiment:stick(sh, unit, store, version)
  local proposal = self:choose(store, version).name
  local held = sh:stick(self, unit, proposal)
  if held then
    sh:say("stick", nil)
    return held
  end
  self.fallbacks = (self.fallbacks or 0) + 1
  self.cluster_fallbacks = (self.cluster_fallbacks or 0) + 1
  sh:say("stick", "experiment " .. self.name .. ": the cluster did not answer; new units get this node's choice")
  return proposal
end

-- Exposures buffered while the home refuses writes: as many as serving's
-- prediction log keeps (serving.lua), as (unit, variant) pairs.
local MAX_BUFFERED = 2 * 100000

-- A full buffer: the unit keeps its variant but is not counted, rather than
-- the worker's memory growing while the home refuses writes.
function Experiment:overflow(variant)
  if not self.overflowing then
    self.overflowing = true
    io.stderr:write("tycho: experiment ", self.name, ": ", MAX_BUFFERED / 2,
      " exposures wait to be stored; new ones are not counted until the home takes writes again\n")
  end
  return variant, false
end

--- The variant of a unit: variant, counted. Units outside the target, of a
-- stopped experiment, or whose target check raised get the control (or the
-- winner) and are not counted; a raising target is counted and logged.
function Experiment:assign(unit, req, store, instance)
  store = store or st()
  local sh = cluster.of(store)
  if sh then sh:before_read(store) end
  -- One reading of the commit id for the status and a bandit's counters.
  local version = store:version()
  local status, final = self:status(store, version)
  if status == "stopped" then return final, false end
  if unit == nil or unit == json.null then return self:control(), false end
  unit = tostring(unit)
  if #unit > MAX_UNIT_BYTES then return self:control(), false end
  if self.target then
    local ok, inside = pcall(self.target, req, instance)
    if not ok then
      self.target_errors = self.target_errors + 1
      self.pending_faults = (self.pending_faults or 0) + 1
      io.stderr:write("tycho: experiment ", self.name, ": target raised: ", tostring(inside), "\n")
      return self:control(), false
    end
    if not inside then return self:control(), false end
  end
  local variant
  if self.kind == "ab" then
    local variants = self.variants
    variant = variants[1 + base.hash.bucket(self.salt_state, unit, #unit, self.bounds, #variants)]
  else
    -- Bandits keep a unit where it first landed: this worker's unflushed
    -- assignments first, then the home, then (a unit new to this home) the cluster.
    local name = self.pending[unit]
    if not name then
      local rp, rn = reader(store)(self.unit_prefix .. keys.escape_string(unit) .. keys.STRING_END)
      name = rp and unit_record(ffi.string(rp, rn)).v
    end
    if not name and sh then name = self:stick(sh, unit, store, version) end
    variant = name and self:variant(name) or self:choose(store, version)
    self.pending[unit] = variant.name
  end
  -- Flat pairs (unit, variant name): no table per request. Two statements:
  -- the multiple assignment aborts LuaJIT's trace ("register coalescing too
  -- complex") and leaves every assignment to the interpreter.
  local list = self.exposures or {}
  self.exposures = list
  local n = #list
  if n >= MAX_BUFFERED then return self:overflow(variant) end
  list[n + 1] = unit
  list[n + 2] = variant.name
  return variant, true
end

-- What a committed flush_in wrote leaves the buffers: exposures (and the
-- bandit's record of unflushed assignments) and fault counts.
function Experiment:written(list, faults)
  if list and self.exposures == list then
    self.exposures = {}
    self.pending = {}
    self.overflowing = nil
  end
  if faults then
    self.pending_faults = (self.pending_faults or 0) - faults
    if self.pending_faults <= 0 then self.pending_faults = nil end
  end
  self.counters_version = nil
end

-- Writes buffered exposures: a new unit is recorded under its variant; a
-- unit seen before stays where it is (another worker may have won a race).
-- The buffers are emptied once tx commits: a transaction that fails or is
-- repeated (a full map) writes them again.
function Experiment:flush_in(tx)
  -- Once per transaction: a second call would count the same exposures again.
  -- (Marked on the transaction, which the mark cannot outlive.)
  local flushed = tx.flushed_experiments or {}
  tx.flushed_experiments = flushed
  if flushed[self] then return end
  flushed[self] = true
  local sh = cluster.of(tx.store)
  if sh then return self:flush_shared(tx, sh) end
  local list, faults = self.exposures, self.pending_faults
  tx:on_commit(function() self:written(list, faults) end)
  if list and #list > 0 then
    -- New units are put in one C call: unit_key(name, unit) is the packed
    -- prefix, the escaped unit, and the string end.
    local prefix = self.unit_prefix
    local units, records = {}, {}
    for i = 1, #list - 1, 2 do
      units[#units + 1], records[#records + 1] = keys.escape_string(list[i]), list[i + 1]
    end
    local added = tx:put_new_many("experiments", prefix, keys.STRING_END, units, records)
    local delta = {}
    for i = 1, #list - 1, 2 do
      local vname = list[i + 1]
      local d = delta[vname] or { units = 0, exposures = 0 }
      delta[vname] = d
      if added[(i - 1) / 2] == 1 then
        d.units = d.units + 1
      else
        -- Seen before: its exposure counts where it was first recorded.
        vname = unit_record(tx:get("experiments", prefix .. units[(i + 1) / 2] .. keys.STRING_END)).v
        delta[vname] = delta[vname] or { units = 0, exposures = 0 }
      end
      delta[vname].exposures = delta[vname].exposures + 1
    end
    for vname, d in pairs(delta) do
      local c = tx:get_json("experiments", counter_key(self.name, vname)) or { units = 0, exposures = 0, sum = 0, sumsq = 0 }
      c.units, c.exposures = c.units + d.units, c.exposures + d.exposures
      put_counters(tx, self.name, vname, c)
    end
  end
  if faults then
    local f = tx:get_json("experiments", fault_key(self.name)) or {}
    f.target_errors = (f.target_errors or 0) + faults
    tx:put_json("experiments", fault_key(self.name), f)
  end
end

-- With a cluster: the buffers go to the cluster (once: emptied as soon as
-- it took them, so a repeated transaction cannot send them again), and what
-- it answered, the units' variants and the totals, is written as the home's
-- copy, in tx and in every flush after until one commits. When the cluster
-- does not answer, everything stays buffered for the next flush, as while
-- the home refuses writes.
function Experiment:flush_shared(tx, sh)
  self:push(sh)
  local c = self.copy
  if not c then return end
  tx:on_commit(function() if self.copy == c then self.copy = nil end end)
  local prefix, escaped = self.unit_prefix, {}
  for i, unit in ipairs(c.units) do escaped[i] = keys.escape_string(unit) end
  local added = tx:put_new_many("experiments", prefix, keys.STRING_END, escaped, c.variants)
  for i, v in ipairs(c.variants) do
    local key = prefix .. escaped[i] .. keys.STRING_END
    -- A unit this home gave its own choice (the cluster away) takes the cluster's.
    if added[i - 1] ~= 1 and unit_record(tx:get("experiments", key)).v ~= v then tx:put("experiments", key, v) end
  end
  cluster.write_totals(tx, self, c.counters, c.faults)
end

local function less(n, by)
  n = (n or 0) - (by or 0)
  return n > 0 and n or nil
end

-- Sends the buffers to the cluster and keeps its answer in self.copy. A
-- push whose answer was lost may have been counted: it goes again alone,
-- the same exposures and faults under the same token, which the cluster
-- answers from what it kept without counting again; what was buffered
-- since waits for the next flush.
function Experiment:push(sh)
  local list, faults = self.exposures or {}, {}
  faults.target_errors, faults.cluster_fallbacks = self.pending_faults, self.fallbacks
  if #list == 0 and not next(faults) then return end
  local doubt = self.doubt or { n = #list, token = sh:token(),
                                faults = { target_errors = faults.target_errors, cluster_fallbacks = faults.cluster_fallbacks } }
  local sent = doubt.n < #list and cluster.slice(list, 1, doubt.n) or list
  local res, err = sh:push(self, sent, doubt.faults, doubt.token)
  sh:say("flush", not res and ("experiment " .. self.name .. ": " .. err .. "; kept for the next flush") or nil)
  if not res then
    self.doubt = doubt
    return
  end
  self.doubt = nil
  local c = self.copy or { units = {}, variants = {} }
  for i = 1, #sent - 1, 2 do
    c.units[#c.units + 1] = sent[i]
    c.variants[#c.variants + 1] = res.variants[(i + 1) / 2]
  end
  c.counters, c.faults = res.counters, res.faults
  self.copy = c
  if sent == list then
    self.exposures, self.pending, self.overflowing, self.pending_faults, self.fallbacks = {}, {}, nil, nil, nil
  else
    self.exposures = cluster.slice(list, doubt.n + 1, #list)
    self.pending_faults = less(self.pending_faults, doubt.faults.target_errors)
    self.fallbacks = less(self.fallbacks, doubt.faults.cluster_fallbacks)
  end
end

--- Whether exposures, fault counts or (with a cluster) its answer wait to be written.
function Experiment:has_work()
  return (self.exposures ~= nil and #self.exposures > 0) or self.pending_faults ~= nil or self.fallbacks ~= nil
    or self.copy ~= nil
end

--- Writes every experiment's buffered exposures in one transaction.
function M.flush(list, store)
  local any = false
  for _, e in pairs(list) do any = any or e:has_work() end
  if not any then return end
  store = store or st()
  local ok, err = pcall(store.update, store, function(tx)
    for _, e in pairs(list) do e:flush_in(tx) end
  end)
  if not ok then io.stderr:write("tycho: experiments: ", tostring(err), "\n") end
end

M.mean_of = mean_of

return M
