--- Experiments, events: outcomes reported per unit, and stopping.
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"
local timeutil = require "tycho.util.timeutil"
local shared = require "tycho.experiments.records"
local Experiment = shared.Experiment
local st = shared.st
local unit_record = shared.unit_record
local def_key = shared.def_key
local status_key = shared.status_key
local unit_key = shared.unit_key
local fault_key = shared.fault_key
local new_moves = shared.new_moves
local apply_event = shared.apply_event
local write_moves = shared.write_moves
local cluster = require "tycho.experiments.cluster"

local M = {}

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

-- An event's unit (a string) and value, or nil, nil and why it is refused.
local function check_event(e, ev)
  if type(ev) ~= "table" or ev.unit == nil then return nil, nil, "needs a unit" end
  if ev.metric ~= nil and ev.metric ~= e.metric then
    return nil, nil, "unknown metric '" .. tostring(ev.metric) .. "' (this experiment measures " .. e.metric .. ")"
  end
  local value = numeric(ev.value)
  if not value then return nil, nil, "value must be a number or boolean, got " .. json.encode(ev.value) end
  return tostring(ev.unit), value
end

local function unknown_unit(unit) return "unknown unit '" .. unit .. "' (never exposed to this experiment)" end

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
  local sh = cluster.of(store)
  if sh then return self:record_events_shared(events, store, sh) end
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
    local unit, value, why = check_event(self, ev)
    if unit then
      local urec = unit_record(tx:get("experiments", unit_key(self.name, unit)))
      if not urec then why = unknown_unit(unit)
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

--- record_events with a cluster: this worker's exposures first (their
-- units must be on the cluster), then the events, in one script call; nil,
-- message, "unavailable" when the cluster does not answer.
function Experiment:record_events_shared(events, store, sh)
  store:update(function(tx) self:flush_in(tx) end)
  local triples, index, rejected = {}, {}, {}
  for i, ev in ipairs(events) do
    local unit, value, why = check_event(self, ev)
    if unit then
      triples[#triples + 1], triples[#triples + 2], triples[#triples + 3] = unit, "", value
      index[#index + 1] = i
    else
      rejected[#rejected + 1] = { index = i, reason = why }
    end
  end
  local applied, err, code = sh:record(self, triples, { rejected = #rejected })
  if not applied then return nil, err, code end
  local accepted = 0
  for j, ok in ipairs(applied) do
    if ok == 1 then accepted = accepted + 1
    else rejected[#rejected + 1] = { index = index[j], reason = unknown_unit(triples[3 * j - 2]) } end
  end
  table.sort(rejected, function(a, b) return a.index < b.index end)
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

-- With a cluster, a credit is queued and sent once tx commits (the cluster
-- checks that the unit holds the prediction's variant); credits it does
-- not take wait for the next commit or serving's poll.
local function credit_shared(tx, sh, e, entry, outcome)
  local value = entry.variant ~= nil and reward_of(e, entry.output, outcome)
  if not value or not sh:credit(e, tostring(entry.unit), entry.variant, value) then return false end
  if not tx.credits_queued then
    tx.credits_queued = true
    tx:on_commit(function()
      local ok, err = sh:push_credits()
      sh:say("credit", not ok and (err .. "; feedback credits kept for the next try") or nil)
    end)
  end
  return true
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
  local sh = cluster.of(tx.store)
  if sh then return credit_shared(tx, sh, e, entry, outcome) end
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
-- declared winner, else the control) from the next request on (with a
-- cluster, on every home). Returns the stored record, or nil, message,
-- "invalid" for a winner that is no variant, "unavailable" when the
-- cluster did not take it.
function Experiment:stop(winner, store)
  store = store or st()
  winner = winner or self.winner
  if winner ~= nil and not self:variant(winner) then
    return errors.fail("invalid", "no variant '" .. tostring(winner) .. "'")
  end
  local target = winner or self:control().name
  local sh = cluster.of(store)
  if sh then return sh:stop(store, self, target) end
  return store:update(function(tx)
    local rec = tx:get_json("experiments", def_key(self.name)) or self:record()
    if rec.status ~= "stopped" then rec.stopped_at = timeutil.now() end
    rec.status, rec.winner = "stopped", target
    tx:put_json("experiments", def_key(self.name), rec)
    tx:put("experiments", status_key(self.name), "stopped:" .. target)
    return rec
  end)
end

M.credit = credit
M.numeric = numeric

return M
