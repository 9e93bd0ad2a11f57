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
-- declared winner, else the control) from the next request on. Returns
-- the stored record, or nil, message, "invalid" for a winner that is no
-- variant.
function Experiment:stop(winner, store)
  store = store or st()
  winner = winner or self.winner
  if winner ~= nil and not self:variant(winner) then
    return errors.fail("invalid", "no variant '" .. tostring(winner) .. "'")
  end
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

M.credit = credit
M.numeric = numeric

return M
