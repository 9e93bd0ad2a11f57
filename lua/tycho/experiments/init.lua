--- Experiments: A/B tests and bandits on live traffic.
--
--   app:experiment { name = "spam-v2", unit = "email_id", kind = "ab",
--     variants = { { name = "control", model = "spam@production", weight = 0.5 },
--                  { name = "v2",      model = "spam@staging",    weight = 0.5 } },
--     metric = "correct", reward = "correct" }
--
-- The first variant is the control. kind: "ab" (a hash of salt and unit:
-- sticky across workers and restarts, nothing stored to decide), or a bandit
-- — "thompson" (Beta posteriors for binary metrics, normal for continuous),
-- "ucb1", "epsilon_greedy" — that decides from the per-variant outcome
-- counters in the home and keeps a unit on the variant it first got.
--
-- Layout in the home's `experiments` database (keys by tycho.keys):
--   "d" name              definition, status, winner (JSON)
--   "s" name              status word read on every assignment: "running",
--                         or "stopped" with the variant every unit now gets
--   "v" name variant      counters: units, exposures, sum, sumsq (JSON)
--   "u" name unit         the unit's variant: its name alone until the unit
--                         has an event, then {v, s, n} (JSON): variant,
--                         metric sum, event count
--   "c" name              fault counters: target errors, rejected events
--   "p" prediction id     feedback waiting for its prediction to be logged
-- A unit's value is the sum of its events (binary metrics: 1 once any event
-- is positive); units without events count as 0, as in GrowthBook.
--
-- Writes from the request path (exposures) are buffered and written in one
-- transaction every 200 ms; events and feedback are written at once.
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"
local keys = require "tycho.util.keys"
local stats = require "tycho.experiments.stats"
local timeutil = require "tycho.util.timeutil"
local kernels = require "tycho.core.kernels"
local ffi = require "ffi"

local M = {}

local Experiment = {}
Experiment.__index = Experiment

local KINDS = { ab = true, thompson = true, ucb1 = true, epsilon_greedy = true }
local REWARDS = { correct = true, outcome = true, neg_abs_error = true }

-- The home's store, kept: store.open() resolves the home's real path on
-- every call (a syscall, ~5 us), too slow for the per-request status read.
local home_store
local function st()
  if not (home_store and home_store.handle) then home_store = assert(require("tycho.core.store").open()) end
  return home_store
end

-- The point reader of the store's experiments database (see Store:point_reader).
-- Found in the store's table first: calling point_reader() on every request
-- would stop LuaJIT's trace there (it returns from a function that makes
-- closures, bytecode UCLO, not compiled).
local function reader(store)
  return store.point_readers.experiments or store:point_reader("experiments")
end

-- A unit's record as { v = variant, s = sum, n = events }. A unit without
-- events is stored as its variant's name alone: most units never get one,
-- and every byte of the record is written when the unit is first seen.
local function unit_record(raw)
  if raw == nil then return nil end
  if raw:byte(1) == 123 then return json.decode(raw) end  -- "{"
  return { v = raw, s = 0, n = 0 }
end

local function def_key(name) return keys.pack("s s", "d", name) end
local function status_key(name) return keys.pack("s s", "s", name) end
local function counter_key(name, variant) return keys.pack("s s s", "v", name, variant) end
-- Names and units go into LMDB keys (511 bytes at most): an experiment's
-- name is bounded where it is defined, a unit where it arrives (the serving
-- border refuses a longer one with a clear error, and assign never buffers
-- one), so no stored key can outgrow the limit and fail a whole flush.
M.MAX_NAME_BYTES = 128
M.MAX_UNIT_BYTES = 128
local MAX_UNIT_BYTES = M.MAX_UNIT_BYTES

local function unit_key(name, unit) return keys.pack("s s s", "u", name, unit) end
M.unit_key = unit_key
local function fault_key(name) return keys.pack("s s", "c", name) end
local function pending_key(id) return keys.pack("s s", "p", id) end

-- A unit's point in [0, 1) under a salt (tz_hash_unit_interval), the one
-- A/B assignment buckets by weight (tz_hash_bucket). FNV-1a is incremental:
-- the state after salt .. "\0" (salt_state, kept per experiment) continued
-- over the unit equals the hash of the concatenation, so the request path
-- hashes only the unit.
local function salt_state(salt) return kernels.tz_hash_fnv1a64(0xcbf29ce484222325ULL, salt .. "\0", #salt + 1) end
function M.unit_hash(salt, unit) return kernels.tz_hash_unit_interval(salt_state(salt), unit, #unit) end

-- ---- definition ----------------------------------------------------------------------

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
  if type(name) ~= "string" or not name:match("^[%w_%.%-]+$") or #name > M.MAX_NAME_BYTES then
    bad("name must be 1 to " .. M.MAX_NAME_BYTES .. " letters, digits, '_', '.' or '-', got " .. tostring(name))
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
-- time (a restart never restarts or resumes a stopped experiment).
function Experiment:save(store)
  store = store or st()
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
        tx:put_json("experiments", counter_key(self.name, v.name), { units = 0, exposures = 0, sum = 0, sumsq = 0 })
      end
    end
    return rec
  end)
end

--- An experiment rebuilt from its stored record (for the CLI and for
-- experiments not declared by the running app); tx: an open transaction.
function M.load(name, store, tx)
  local rec
  if tx then rec = tx:get_json("experiments", def_key(name))
  else rec = (store or st()):view(function(t) return t:get_json("experiments", def_key(name)) end) end
  if not rec then return nil, "no experiment '" .. tostring(name) .. "'" end
  local def = {}
  for k, v in pairs(rec) do def[k] = v end
  def.reward = REWARDS[rec.reward] and rec.reward or "outcome"
  def.winner = nil
  local e = M.define(def)
  e.stored = rec
  return e
end

function M.list(store)
  store = store or st()
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

-- ---- assignment --------------------------------------------------------------------


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

local function rand(self) return kernels.tz_sample_uniform(rng(self)) end

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
    local pick = self.metric_type == "binary" and kernels.tz_sample_best_beta or kernels.tz_sample_best_normal
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
  version = version or store:version()
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
    variant = variants[1 + kernels.tz_hash_bucket(self.salt_state, unit, #unit, self.bounds, #variants)]
  else
    -- Bandits keep a unit where it first landed: this worker's unflushed
    -- assignments first, then the home.
    local name = self.pending[unit]
    if not name then
      local rp, rn = reader(store)(self.unit_prefix .. keys.escape_string(unit) .. keys.STRING_END)
      name = rp and unit_record(ffi.string(rp, rn)).v
    end
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

-- Applies a value to a unit: the unit's sum moves, and its variant's
-- counters by the change in the unit's value.
-- What a request's outcomes change is gathered in `moves`: the counters'
-- changes (moves.counters: counter key -> {sum, sumsq}), written once per
-- request by write_moves (a batch of outcomes moves the same two or three
-- counters many times), and each experiment's status, read once.
local function new_moves() return { counters = {}, running = {} } end

-- A unit's record with events, as JSON: built here rather than by cjson,
-- whose calls end LuaJIT's traces (json.lua), so that a loop over many
-- outcomes stays compiled. Sums are written with 17 digits: they add up.
local function unit_json(e, urec)
  local v = e.names_json[urec.v] or json.encode(urec.v)
  return '{"v":' .. v .. ',"s":' .. string.format("%.17g", urec.s) .. ',"n":' .. urec.n .. '}'
end

local function apply_event(tx, e, urec, value, moves)
  local before = e.metric_type == "binary" and (urec.s > 0 and 1 or 0) or urec.s
  urec.s, urec.n = urec.s + value, urec.n + 1
  local after = e.metric_type == "binary" and (urec.s > 0 and 1 or 0) or urec.s
  tx:put("experiments", unit_key(e.name, urec.unit), unit_json(e, urec))
  if after ~= before then
    local ck = counter_key(e.name, urec.v)
    local m = moves.counters[ck] or { sum = 0, sumsq = 0 }
    moves.counters[ck] = m
    m.sum, m.sumsq = m.sum + after - before, m.sumsq + after * after - before * before
  end
end

local function write_moves(tx, moves)
  for ck, m in pairs(moves.counters) do
    local c = tx:get_json("experiments", ck) or { units = 0, exposures = 0, sum = 0, sumsq = 0 }
    c.sum, c.sumsq = c.sum + m.sum, c.sumsq + m.sumsq
    tx:put_json("experiments", ck, c)
  end
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
      local ck = counter_key(self.name, vname)
      local c = tx:get_json("experiments", ck) or { units = 0, exposures = 0, sum = 0, sumsq = 0 }
      c.units, c.exposures = c.units + d.units, c.exposures + d.exposures
      tx:put_json("experiments", ck, c)
    end
  end
  if faults then
    local f = tx:get_json("experiments", fault_key(self.name)) or {}
    f.target_errors = (f.target_errors or 0) + faults
    tx:put_json("experiments", fault_key(self.name), f)
  end
end

--- Whether exposures or fault counts wait to be written.
function Experiment:has_work()
  return (self.exposures ~= nil and #self.exposures > 0) or self.pending_faults ~= nil
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

-- ---- events --------------------------------------------------------------------------

local function numeric(v)
  if type(v) == "boolean" then return v and 1 or 0 end
  if type(v) == "number" and v == v and v > -math.huge and v < math.huge then return v end
  return nil
end

local function count_rejected(tx, name, n)
  if n == 0 then return end
  local f = tx:get_json("experiments", fault_key(name)) or {}
  f.rejected_events = (f.rejected_events or 0) + n
  tx:put_json("experiments", fault_key(name), f)
end

--- Records per-unit outcomes: events = { {unit, metric, value}, ... }.
-- Returns { accepted, rejected = { {index, reason} } }, or nil, message,
-- "conflict" when the whole request is refused (stopped experiment). Events
-- for units never exposed, for another metric or with a non-numeric value
-- are rejected one by one and the rest land.
function Experiment:record_events(events, store)
  store = store or st()
  if self:status(store) == "stopped" then
    return errors.fail("conflict", "experiment " .. self.name .. " is stopped; its results are final")
  end
  return store:update(function(tx)
    self:flush_in(tx)
    return self:record_events_in(tx, events)
  end)
end

--- record_events inside the caller's transaction, after this worker's
-- exposures were written (serving puts it in the prediction log's flush).
function Experiment:record_events_in(tx, events)
  local accepted, rejected, moves = 0, {}, new_moves()
  for i, ev in ipairs(events) do
    local why
    local value = type(ev) == "table" and numeric(ev.value)
    if type(ev) ~= "table" or ev.unit == nil then why = "needs a unit"
    elseif ev.metric ~= nil and ev.metric ~= self.metric then
      why = "unknown metric '" .. tostring(ev.metric) .. "' (this experiment measures " .. self.metric .. ")"
    elseif not value then why = "value must be a number or boolean, got " .. json.encode(ev.value)
    else
      local unit = tostring(ev.unit)
      local urec = unit_record(tx:get("experiments", unit_key(self.name, unit)))
      if not urec then why = "unknown unit '" .. unit .. "' (never exposed to this experiment)"
      else
        urec.unit = unit
        apply_event(tx, self, urec, value, moves)
        accepted = accepted + 1
      end
    end
    if why then rejected[#rejected + 1] = { index = i, reason = why } end
  end
  write_moves(tx, moves)
  count_rejected(tx, self.name, #rejected)
  return { accepted = accepted, rejected = rejected }
end

-- The reward of a logged prediction given its outcome.
local function reward_of(e, output, outcome)
  if type(e.reward) == "function" then return numeric(e.reward(output, outcome)) end
  if e.reward == "correct" then
    local p = type(output) == "table" and output.prediction
    return tostring(p) == tostring(outcome) and 1 or 0
  end
  local y = numeric(outcome) or tonumber(outcome)
  if e.reward == "neg_abs_error" then
    local p = type(output) == "table" and tonumber(output.prediction)
    return y and p and -math.abs(p - y) or nil
  end
  return y
end

-- Credits an experiment with the outcome of a logged prediction that was
-- made under it (entry: the prediction log record), in the caller's txn;
-- the counters move in `moves` (see apply_event).
local function credit(tx, e, entry, outcome, moves)
  if not e then return false end
  local running = moves.running[e.name]
  if running == nil then
    running = tx:get("experiments", status_key(e.name)) == "running"
    moves.running[e.name] = running
  end
  if not running then return false end
  local urec = unit_record(tx:get("experiments", unit_key(e.name, entry.unit)))
  if not urec or urec.v ~= entry.variant then return false end
  local value = reward_of(e, entry.output, outcome)
  if not value then return false end
  urec.unit = entry.unit
  apply_event(tx, e, urec, value, moves)
  return true
end

-- ---- stop -----------------------------------------------------------------------------

--- Stops the experiment now: every unit gets the winner (default: the
-- declared winner, else the control) from the next request on.
function Experiment:stop(winner, store)
  store = store or st()
  winner = winner or self.winner
  if winner ~= nil and not self:variant(winner) then return nil, "no variant '" .. tostring(winner) .. "'" end
  local target = winner or self:control().name
  return store:update(function(tx)
    local rec = tx:get_json("experiments", def_key(self.name)) or self:record()
    if rec.status ~= "stopped" then rec.stopped_at = timeutil.now() end
    rec.status, rec.winner = "stopped", target
    tx:put_json("experiments", def_key(self.name), rec)
    tx:put("experiments", status_key(self.name), "stopped:" .. target)
    return rec
  end)
end

-- ---- results --------------------------------------------------------------------------

local function variance(c)
  if c.units < 2 then return 0 end
  return math.max(0, (c.sumsq - c.units * mean_of(c) ^ 2) / (c.units - 1))
end

local function num_or_null(x) return (x == x and x ~= math.huge and x ~= -math.huge) and x or json.null end

--- Results per variant, as GET /v1/experiments/{name} answers them.
function Experiment:results(store)
  store = store or st()
  local c = self:read_counters(store, true)
  local rec, faults = store:view(function(tx)
    return tx:get_json("experiments", def_key(self.name)), tx:get_json("experiments", fault_key(self.name))
  end)
  rec = rec or self:record()
  local ctl = c[self:control().name]
  local cm, cv = mean_of(ctl), variance(ctl)
  local out = {}
  local observed, weights = {}, {}
  for i, v in ipairs(self.variants) do
    local k = c[v.name]
    local m, var = mean_of(k), variance(k)
    local lo, hi = stats.mean_ci(m, var, math.max(k.units, 1))
    local r = { name = v.name, model = v.model, weight = v.weight, units = k.units, exposures = k.exposures,
                mean = m, ci = { num_or_null(lo), num_or_null(hi) } }
    if i == 1 then
      r.control = true
    elseif k.units > 0 and ctl.units > 0 then
      r.lift = num_or_null(cm ~= 0 and (m - cm) / math.abs(cm) or (m == cm and 0 or 0 / 0))
      local test, prob, loss
      if self.metric_type == "binary" then
        test = stats.two_proportion(ctl.sum, ctl.units, k.sum, k.units)
        prob, loss = stats.beat_beta(1 + ctl.sum, 1 + ctl.units - ctl.sum, 1 + k.sum, 1 + k.units - k.sum)
      else
        test = (ctl.units > 1 and k.units > 1) and stats.welch(cm, cv, ctl.units, m, var, k.units) or { p_value = 0 / 0 }
        prob, loss = stats.beat_normal(cm, math.sqrt(cv / ctl.units), m, math.sqrt(var / k.units))
      end
      r.p_value, r.prob_beat_control, r.expected_loss = num_or_null(test.p_value), num_or_null(prob), num_or_null(loss)
    end
    out[i] = r
    observed[i], weights[i] = k.units, v.weight
  end
  local srm = json.null
  local total = 0
  for _, n in ipairs(observed) do total = total + n end
  if self.kind == "ab" and total > 0 then srm = num_or_null(stats.srm(observed, weights).p_value) end
  local pending = store:view(function(tx)
    local n = 0
    for _ in tx:scan("experiments", { prefix = keys.pack("s", "p") }) do n = n + 1 end
    return n
  end)
  return { name = self.name, kind = self.kind, unit = self.unit, metric = self.metric, metric_type = self.metric_type,
           pending_feedback = pending,
           status = rec.status or "running", winner = rec.winner or json.null,
           started_at = rec.started_at and timeutil.format(rec.started_at) or json.null,
           stopped_at = rec.stopped_at and timeutil.format(rec.stopped_at) or json.null,
           srm_p_value = srm, target_errors = (faults and faults.target_errors) or 0,
           rejected_events = (faults and faults.rejected_events) or 0, variants = out }
end

local fmt = require("tycho.util.pretty").number

--- Results as a readable table (the CLI and the REPL print this).
function M.format_results(r)
  local lines = {
    string.format("experiment %s (%s, unit %s, metric %s [%s]): %s%s", r.name, r.kind, r.unit, r.metric,
      r.metric_type, r.status, r.status == "stopped" and (", every unit gets " .. tostring(r.winner)) or ""),
    string.format("sample-ratio mismatch p = %s; target errors %d; rejected events %d", fmt(r.srm_p_value),
      r.target_errors, r.rejected_events),
    "",
    string.format("%-14s %8s %9s %10s %21s %9s %10s %10s %10s", "VARIANT", "UNITS", "EXPOSED", "MEAN", "95% CI",
      "LIFT", "P-VALUE", "P(BEAT)", "EXP.LOSS"),
  }
  for _, v in ipairs(r.variants) do
    lines[#lines + 1] = string.format("%-14s %8d %9d %10s %21s %9s %10s %10s %10s",
      v.name .. (v.control and "*" or ""), v.units, v.exposures, fmt(v.mean),
      "[" .. fmt(v.ci[1]) .. ", " .. fmt(v.ci[2]) .. "]", v.lift and fmt(v.lift * 100, "%+.2f%%") or "-",
      fmt(v.p_value, "%.3g"), fmt(v.prob_beat_control, "%.3f"), fmt(v.expected_loss, "%.3g"))
  end
  lines[#lines + 1] = "(* control)"
  return table.concat(lines, "\n")
end

--- Prints an experiment's results (for the REPL): tycho.experiments.show "spam-v2".
function M.show(name)
  local e, err = M.load(name)
  if not e then return nil, err end
  print(M.format_results(e:results()))
end

-- ---- feedback ----------------------------------------------------------------------

local byte = string.byte

-- The time (µs) of a prediction id "%016x-%x-%x" (time, pid, counter), or
-- nil when id is not one. Byte by byte rather than by a pattern: a pattern
-- or tonumber(s, 16) would end LuaJIT's trace on every outcome.
local function id_time(id)
  local n = #id
  if n < 20 or n > 64 or byte(id, 17) ~= 45 then return nil end
  local t, dashes = 0, 0
  for k = 1, n do
    local c = byte(id, k)
    local d = (c >= 48 and c <= 57 and c - 48) or (c >= 97 and c <= 102 and c - 87) or (c >= 65 and c <= 70 and c - 55)
    if d then
      if k <= 16 then t = t * 16 + d end
    elseif c ~= 45 or k < 17 or byte(id, k - 1) == 45 or k == n then return nil
    else dashes = dashes + 1 end
  end
  if dashes ~= 2 then return nil end
  return t
end

-- The prediction log key of an id ("%016x-pid-n": the time leads).
local function log_key(id)
  local at = type(id) == "string" and id_time(id)
  if not at then return nil end
  return keys.pack("i64 s", at, id), at
end
M.log_key = log_key

-- Why an outcome cannot be stored, or nil: a number, string or boolean.
local function bad_outcome(outcome)
  local t = type(outcome)
  if t == "number" then return outcome ~= outcome or outcome == math.huge or outcome == -math.huge end
  return t ~= "string" and t ~= "boolean"
end

-- The outcomes database's record of an outcome. Built here, not by cjson,
-- to keep feedback_in's loop compiled (see unit_json); a string outcome
-- still goes through cjson for its escapes.
local function outcome_json(outcome, stamp)
  local v = type(outcome) == "string" and json.encode(outcome) or tostring(outcome)
  return '{"outcome":' .. v .. ',"at":' .. stamp .. '}'
end

local function apply_feedback(tx, entry, outcome, experiments, moves)
  if entry.experiment then
    local e = experiments[entry.experiment]
    if not e then
      local ok, loaded = pcall(M.load, entry.experiment, nil, tx)
      if ok then e = loaded end
      experiments[entry.experiment] = e or false
    end
    if e then credit(tx, e, entry, outcome, moves) end
  end
end

-- One feedback item: stores its outcome (once per id: MDB_NOOVERWRITE is
-- the duplicate check) and returns its result and, when its prediction is
-- logged, the raw log entry. Pending and rejected ones as feedback_in says.
local function record_outcome(tx, it, now, stamp, retain_us, grace_us)
  local id = type(it) == "table" and it.prediction_id or nil
  local r = { prediction_id = id == nil and json.null or id, status = "rejected" }
  local key, at = log_key(id)
  local outcome = type(it) == "table" and it.outcome
  if not key then r.code, r.reason = errors.invalid, "malformed prediction_id"
  elseif bad_outcome(outcome) then
    r.code, r.reason = errors.invalid, "outcome must be a number, string or boolean"
  elseif at < now - retain_us then
    r.code, r.reason = errors.gone, "prediction id expired (older than the log's retention)"
  elseif at > now + 60e6 then r.code, r.reason = errors.not_found, "unknown prediction id (from the future)"
  else
    local record = outcome_json(outcome, stamp)
    if not tx:put_new("outcomes", id, record) then
      r.status = "duplicate"
      return r
    end
    local raw = tx:get("predictions", key)
    if raw then
      r.status = "accepted"
      return r, raw
    elseif at > now - grace_us then
      tx:put("experiments", pending_key(id), record)
      r.status = "pending"
    else
      tx:delete("outcomes", id)
      r.code, r.reason = errors.not_found, "unknown prediction id"
    end
  end
  return r
end

--- Records outcomes for prediction ids inside the caller's write
-- transaction (serving puts it in the prediction log's group commit):
-- items = { {prediction_id, outcome} }. Each id counts once (a repeat is
-- reported as a duplicate). An id whose prediction is not in the log yet
-- (another worker's unflushed batch) is kept pending and joined by
-- M.reconcile within `grace` seconds; an id older than the log's retention
-- is expired. Returns per-item results.
function M.feedback_in(tx, items, opts)
  opts = opts or {}
  local experiments = opts.experiments or {}
  local retain_us, grace_us = (opts.retain or 7 * 86400) * 1e6, (opts.grace or 10) * 1e6
  local now = timeutil.now()
  local stamp = string.format("%d", now)
  local results, counts = {}, { accepted = 0, duplicate = 0, pending = 0, rejected = 0 }
  local raws, outcomes = {}, {}
  for i = 1, #items do
    local r, raw = record_outcome(tx, items[i], now, stamp, retain_us, grace_us)
    results[i] = r
    counts[r.status] = counts[r.status] + 1
    -- Only a prediction made under an experiment has anything to credit:
    -- an entry without the field (most, where no experiment runs) is not
    -- decoded. (One whose inputs hold such a key is, harmlessly.)
    if raw and raw:find('"experiment":', 1, true) then
      raws[#raws + 1] = raw
      outcomes[#raws] = items[i].outcome
    end
  end
  -- The joined entries are decoded in a loop of their own: cjson ends a
  -- trace, and the loops above and below stay compiled without it.
  local entries = {}
  for k = 1, #raws do entries[k] = json.decode(raws[k]) end
  local moves = new_moves()
  for k = 1, #entries do apply_feedback(tx, entries[k], outcomes[k], experiments, moves) end
  write_moves(tx, moves)
  counts.results = results
  return counts
end

--- Whether any feedback waits for its prediction (a read transaction).
function M.has_pending(store)
  return store:view(function(tx) return tx:scan("experiments", { prefix = keys.pack("s", "p"), limit = 1 })() ~= nil end)
end

--- Joins pending feedback whose prediction has been logged since; drops
-- (and counts) what is still unknown after `grace` seconds. In a write txn.
function M.reconcile(tx, experiments, grace)
  local prefix = keys.pack("s", "p")
  local items = {}
  for k, v in tx:scan("experiments", { prefix = prefix }) do items[#items + 1] = { k, v } end
  if #items == 0 then return 0 end
  local now, joined, moves = timeutil.now(), 0, new_moves()
  for _, kv in ipairs(items) do
    local _, id = keys.unpack("s s", kv[1])
    local p = json.decode(kv[2])
    local key = log_key(id)
    local raw = key and tx:get("predictions", key)
    if raw then
      apply_feedback(tx, json.decode(raw), p.outcome, experiments, moves)
      tx:delete("experiments", kv[1])
      joined = joined + 1
    elseif now - p.at > (grace or 10) * 1e6 then
      tx:delete("experiments", kv[1])
      tx:delete("outcomes", id)
      io.stderr:write("tycho: feedback for ", id, " dropped: no such prediction was logged\n")
    end
  end
  write_moves(tx, moves)
  return joined
end

M.Experiment = Experiment
return M
