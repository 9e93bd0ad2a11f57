--- Feedback: outcomes joined to logged predictions by id (monitoring's
-- online metrics read them), crediting the experiment a prediction was made under.
local json = require "tycho.util.json"
local log_entry = require "tycho.monitor.entry"
local errors = require "tycho.util.errors"
local keys = require "tycho.util.keys"
local timeutil = require "tycho.util.timeutil"
local shared = require "tycho.experiments.records"
local pending_key = shared.pending_key
local new_moves = shared.new_moves
local write_moves = shared.write_moves
local definition = require "tycho.experiments.define"
local events = require "tycho.experiments.events"
local credit = events.credit

local M = {}

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
      local ok, loaded = pcall(definition.load, entry.experiment, nil, tx)
      if ok then e = loaded end
      experiments[entry.experiment] = e or false
    end
    if e then credit(tx, e, entry, outcome, moves) end
  end
end

-- Why feedback item `it` cannot be taken as it is (code, reason), or nil:
-- it, its log key and the prediction's time (µs) otherwise.
local function problem(it, now, retain_us)
  local key, at = log_key(type(it) == "table" and it.prediction_id or nil)
  if not key then return errors.invalid, "malformed prediction_id" end
  if bad_outcome(it.outcome) then return errors.invalid, "outcome must be a number, string or boolean" end
  if at < now - retain_us then return errors.gone, "prediction id expired (older than the log's retention)" end
  if at > now + 60e6 then return errors.not_found, "unknown prediction id (from the future)" end
  return nil, key, at
end

--- The result of feedback item it ({prediction_id, outcome}) checked
-- without its prediction (a node that sends it to the cluster's feedback
-- stream, monitor/log_stream.lua): { prediction_id, status = "accepted" },
-- or status "rejected" with code and reason as feedback_in gives them.
-- retain: the log's retention (seconds, 7 days); check as feedback_in's,
-- asked with model nil.
function M.check_item(it, retain, check)
  local id = type(it) == "table" and it.prediction_id or nil
  local r = { prediction_id = id == nil and json.null or id, status = "rejected" }
  local code, reason = problem(it, timeutil.now(), (retain or 7 * 86400) * 1e6)
  if code then r.code, r.reason = code, reason
  else
    local why = check and check(nil, nil, it.outcome)
    if why then r.code, r.reason = errors.invalid, why else r.status = "accepted" end
  end
  return r
end

-- One feedback item: stores its outcome (once per id: MDB_NOOVERWRITE is
-- the duplicate check) and returns its result and, when its prediction is
-- logged, the raw log entry. Pending and rejected ones as feedback_in says.
local function record_outcome(tx, it, now, stamp, retain_us, grace_us, check)
  local id = type(it) == "table" and it.prediction_id or nil
  local r = { prediction_id = id == nil and json.null or id, status = "rejected" }
  local code, key, at = problem(it, now, retain_us)
  local outcome = type(it) == "table" and it.outcome
  if code then r.code, r.reason = code, key
  else
    local raw = tx:get("predictions", key)
    if check then
      -- A prediction not logged yet (another worker's batch) is checked
      -- against every model that could have made it, and again when joined.
      local entry = raw and log_entry.decode(raw) or {}
      local why = check(entry.model, entry.version, outcome)
      if why then
        r.code, r.reason = errors.invalid, why
        return r
      end
    end
    local record = outcome_json(outcome, stamp)
    if not tx:put_new("outcomes", id, record) then
      r.status = "duplicate"
      return r
    end
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
-- is expired. opts.check(model, version, outcome) -> why not, or nil:
-- whether the outcome fits the model that made the prediction (its task
-- and classes; model nil: any model that could have); a misfit is
-- rejected, never counted. Returns per-item results.
function M.feedback_in(tx, items, opts)
  opts = opts or {}
  local experiments = opts.experiments or {}
  local retain_us, grace_us = (opts.retain or 7 * 86400) * 1e6, (opts.grace or 10) * 1e6
  local now = timeutil.now()
  local stamp = string.format("%d", now)
  local results, counts = {}, { accepted = 0, duplicate = 0, pending = 0, rejected = 0 }
  local raws, outcomes = {}, {}
  for i = 1, #items do
    local r, raw = record_outcome(tx, items[i], now, stamp, retain_us, grace_us, opts.check)
    results[i] = r
    counts[r.status] = counts[r.status] + 1
    -- Only a prediction made under an experiment has anything to credit:
    -- an entry without the field (most, where no experiment runs) is not
    -- decoded. (One whose inputs or strings hold the word is, harmlessly.)
    if raw and raw:find("experiment", 1, true) then
      raws[#raws + 1] = raw
      outcomes[#raws] = items[i].outcome
    end
  end
  -- The joined entries are decoded in a loop of their own: decoding ends a
  -- trace, and the loops above and below stay compiled without it.
  local entries = {}
  for k = 1, #raws do entries[k] = log_entry.decode(raws[k]) end
  local moves = new_moves()
  for k = 1, #raws do
    if entries[k] then apply_feedback(tx, entries[k], outcomes[k], experiments, moves) end
  end
  write_moves(tx, moves)
  counts.results = results
  return counts
end

--- Whether any feedback waits for its prediction (a read transaction).
function M.has_pending(store)
  return store:view(function(tx) return tx:scan("experiments", { prefix = keys.pack("s", "p"), limit = 1 })() ~= nil end)
end

--- Joins pending feedback whose prediction has been logged since; drops
-- (and counts) what is still unknown after `grace` seconds, and what does
-- not fit the model that made the prediction (check, as for feedback_in).
-- In a write txn.
function M.reconcile(tx, experiments, grace, check)
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
    local entry = raw and log_entry.decode(raw)
    local misfit = entry and check and check(entry.model, entry.version, p.outcome)
    if misfit then
      tx:delete("experiments", kv[1])
      tx:delete("outcomes", id)
      io.stderr:write("tycho: feedback for ", id, " dropped: ", misfit, "\n")
    elseif entry then
      apply_feedback(tx, entry, p.outcome, experiments, moves)
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


return M
