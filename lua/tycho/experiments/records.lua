--- Experiments, what their parts share: the Experiment class, the layout of
-- the `experiments` database (keys, unit records), the home's store, and
-- how outcomes move a unit's value and its variant's counters.
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local timeutil = require "tycho.util.timeutil"
local base = require "tycho.core.base"

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

--- The key of unit's record in experiment name's part of the `experiments`
-- database: the variant the unit was assigned and its outcome sum and count.
local function unit_key(name, unit) return keys.pack("s s s", "u", name, unit) end
M.unit_key = unit_key
local function fault_key(name) return keys.pack("s s", "c", name) end
local function pending_key(id) return keys.pack("s s", "p", id) end
--- The key of a variant's counters as they stood at the end of the hour
-- that starts at `hour` (Unix seconds, UTC): the results' history
-- (timeline.lua), one record per variant and hour with traffic.
local function history_key(name, variant, hour) return keys.pack("s s s i64", "h", name, variant, hour) end
M.HOUR = 3600

-- Writes a variant's counters and, as this hour's snapshot, their history:
-- one more put per variant and write, so that the results over time read a
-- snapshot per point they draw, never the units.
local function put_counters(tx, name, variant, c)
  local body = json.encode(c)
  tx:put("experiments", counter_key(name, variant), body)
  local hour = math.floor(timeutil.now() / (M.HOUR * 1e6)) * M.HOUR
  tx:put("experiments", history_key(name, variant, hour), body)
end

-- FNV-1a is incremental: the state after salt .. "\0" (salt_state, kept per
-- experiment) continued over the unit equals the hash of the concatenation,
-- so the request path hashes only the unit.
local function salt_state(salt) return base.hash.fnv1a64(0xcbf29ce484222325ULL, salt .. "\0", #salt + 1) end
--- A unit's point in [0, 1) under an experiment's salt (tz_hash_unit_interval),
-- the one A/B assignment buckets by weight (tz_hash_bucket): the same salt and
-- unit (a string) always give the same point, in any process.
function M.unit_hash(salt, unit) return base.hash.unit_interval(salt_state(salt), unit, #unit) end

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
    local m = moves.counters[ck] or { sum = 0, sumsq = 0, name = e.name, variant = urec.v }
    moves.counters[ck] = m
    m.sum, m.sumsq = m.sum + after - before, m.sumsq + after * after - before * before
  end
end

local function write_moves(tx, moves)
  for ck, m in pairs(moves.counters) do
    local c = tx:get_json("experiments", ck) or { units = 0, exposures = 0, sum = 0, sumsq = 0 }
    c.sum, c.sumsq = c.sum + m.sum, c.sumsq + m.sumsq
    put_counters(tx, m.name, m.variant, c)
  end
end

M.Experiment = Experiment
M.KINDS = KINDS
M.REWARDS = REWARDS
M.st = st
M.reader = reader
M.unit_record = unit_record
M.def_key = def_key
M.status_key = status_key
M.counter_key = counter_key
M.unit_key = unit_key
M.fault_key = fault_key
M.pending_key = pending_key
M.history_key = history_key
M.put_counters = put_counters
M.salt_state = salt_state
M.new_moves = new_moves
M.unit_json = unit_json
M.apply_event = apply_event
M.write_moves = write_moves

return M
