--- The cluster's prediction log and feedback streams (monitor/log_stream.lua)
-- applied to the home that keeps the offline store (serve/consume.lua):
-- every node's predictions land in its `predictions` table and rollups as
-- if logged here, and feedback sent to any node joins them here.
--
--   local a = log_apply.new(fs, { retain = 7 * 86400 })   -- fs: features.open with a cluster
--   local report = assert(a:pass(100))   -- { entries, predictions, feedback }
--   log_apply.counts(tx)                 -- { joined, unmatched, duplicate } or nil
--
-- Consumer group "offline" on each stream: entries left by a dead consumer
-- are claimed first (XAUTOCLAIM, once idle claim_idle_ms), then new ones
-- read; each batch is applied in one transaction and acknowledged after
-- it, so a consumer killed in between leaves them to be applied again.
-- That is harmless: a prediction is stored with put_new under its log key
-- (time, prediction id: unique), and only one that was not there counts in
-- the rollups; an outcome is stored once per prediction id (feedback_in).
--
-- Feedback whose prediction has not landed yet (its node flushes later,
-- or is backing off from the cluster) waits until GRACE_S after the
-- prediction's time (in its id), then counts as unmatched. Key layout, db
-- `log_stream`: "p" .. prediction id -> waiting feedback (string.buffer
-- { outcome }); "n/joined", "n/unmatched",
-- "n/duplicate" -> counts since the home first applied feedback (decimal):
-- every item a node accepted is one of the three once applied.
local buffer = require "string.buffer"
local feedback = require "tycho.monitor.feedback"
local keys = require "tycho.util.keys"
local log_stream = require "tycho.monitor.log_stream"
local rollup = require "tycho.monitor.rollup"
local serve_log = require "tycho.serve.log"
local timeutil = require "tycho.util.timeutil"

local M = {}

M.DB, M.GROUP = "log_stream", "offline"
local GRACE_S = 60
local COUNTS = { "joined", "unmatched", "duplicate" }

local Applier = {}
Applier.__index = Applier

--- The applier of fs's home (fs.online_backend: the cluster). opts.retain:
-- the log's retention in seconds (7 days), which pruning applies here.
function M.new(fs, opts)
  local s = log_stream.stream(fs.online_backend)
  return setmetatable({ store = fs.store, s = s, me = s.consumer, groups = {},
                        retain = opts and opts.retain or 7 * 86400 }, Applier)
end

--- The feedback counts of the home (tx: a transaction), or nil when it
-- never applied the feedback stream.
function M.counts(tx)
  local out
  for _, k in ipairs(COUNTS) do
    local v = tx:get(M.DB, "n/" .. k)
    if v then
      out = out or { joined = 0, unmatched = 0, duplicate = 0 }
      out[k] = tonumber(v)
    end
  end
  return out
end

local function add_counts(tx, c)
  for _, k in ipairs(COUNTS) do
    if c[k] > 0 then tx:put(M.DB, "n/" .. k, string.format("%d", tonumber(tx:get(M.DB, "n/" .. k) or 0) + c[k])) end
  end
end

-- The entries of a predictions stream entry: { raw bytes, decoded } each,
-- read one after the other from the flush's bytes.
local reader = buffer.new()
local function split(bytes)
  local out = {}
  if type(bytes) ~= "string" then return out end
  reader:set(bytes)
  local pos = 1
  while #reader > 0 do
    local before = #reader
    local ok, e = pcall(reader.decode, reader)
    if not ok then break end
    local len = before - #reader
    out[#out + 1] = { bytes:sub(pos, pos + len - 1), e }
    pos = pos + len
  end
  reader:reset()
  return out
end

-- Stores the predictions of entries that this home lacks, with their
-- rollups, and prunes past the retention as the log's flush does.
-- Returns how many it stored.
local function apply_predictions(self, tx, entries)
  local acc, added = rollup.new(), 0
  for _, en in ipairs(entries) do
    for _, pair in ipairs(split(en.rows)) do
      local e = pair[2]
      if type(e) == "table" and type(e.id) == "string" and type(e.at) == "number"
         and tx:put_new("predictions", keys.pack_i64_s(e.at, e.id), pair[1]) then
        rollup.add(acc, e)
        added = added + 1
      end
    end
  end
  rollup.write(tx, acc)
  local before = timeutil.now() - self.retain * 1e6
  serve_log.prune(tx, before, 1000)
  rollup.prune(tx, acc, math.floor(before / 1e6), 1000)
  return added
end

-- Joins items ({ prediction_id, outcome, waiting }) whose prediction is
-- here; keeps the others waiting until GRACE_S after the prediction's time
-- (waiting: already kept), then counts them unmatched. Adds to c; retain:
-- the log's, in seconds.
local function join(tx, items, now, c, retain)
  local ready = {}
  for _, it in ipairs(items) do
    local key, at = feedback.log_key(it.prediction_id)
    local pkey = "p" .. tostring(it.prediction_id)
    if key and tx:get("predictions", key) then
      ready[#ready + 1] = it
      if it.waiting then tx:delete(M.DB, pkey) end
    elseif not key or now - at > GRACE_S * 1e6 then
      c.unmatched = c.unmatched + 1
      if it.waiting then tx:delete(M.DB, pkey) end
    elseif not it.waiting and not tx:put_new(M.DB, pkey, buffer.encode({ it.outcome })) then
      c.duplicate = c.duplicate + 1  -- the same id sent twice before its prediction landed
    end
  end
  if #ready == 0 then return end
  local r = feedback.feedback_in(tx, ready, { experiments = {}, retain = retain })
  c.joined, c.duplicate = c.joined + r.accepted, c.duplicate + r.duplicate
  c.unmatched = c.unmatched + r.rejected + r.pending
end

-- The items of feedback entries.
local function feedback_items(entries)
  local items = {}
  for _, en in ipairs(entries) do
    local ok, list = pcall(buffer.decode, en.rows or "")
    for _, it in ipairs(ok and type(list) == "table" and list or {}) do
      if type(it) == "table" then items[#items + 1] = { prediction_id = it[1], outcome = it[2] } end
    end
  end
  return items
end

-- The feedback still waiting for its prediction.
local function waiting(tx)
  local items = {}
  for k, v in tx:scan(M.DB, { prefix = "p" }) do
    local ok, rec = pcall(buffer.decode, v)
    if ok and type(rec) == "table" then
      items[#items + 1] = { prediction_id = k:sub(2), outcome = rec[1], waiting = true }
    end
  end
  return items
end

local function apply_feedback(self, tx, entries)
  local c, now = { joined = 0, unmatched = 0, duplicate = 0 }, timeutil.now()
  join(tx, feedback_items(entries), now, c, self.retain)
  add_counts(tx, c)
  return #entries
end

-- The next entries of stream name: those a dead consumer left while there
-- are some (state.claiming), then new ones.
function Applier:next_entries(name, state, count)
  if state.claiming then
    local got, e, code = self.s:claim(name, M.GROUP, self.me, count)
    if not got or #got > 0 then return got, e, code end
    state.claiming = false
  end
  return self.s:read(name, M.GROUP, self.me, count)
end

-- Applies up to max entries of stream name with apply(self, tx, entries)
-- -> count, acknowledging each batch after its commit. Returns the entries
-- and the sum of counts, or nil, message, code.
function Applier:drain(name, apply, max)
  if not self.groups[name] then
    local ok, e, code = self.s:ensure_group(name, M.GROUP)
    if not ok then return nil, e, code end
    self.groups[name] = true
  end
  local n, applied, state = 0, 0, { claiming = true }
  while n < max do
    local entries, e, code = self:next_entries(name, state, math.min(100, max - n))
    if not entries then
      self.groups[name] = nil  -- the stream may be gone: make the group again
      return nil, e, code
    end
    if #entries == 0 then break end
    applied = applied + self.store:update(function(tx) return apply(self, tx, entries) end)
    local ids = {}
    for i, en in ipairs(entries) do ids[i] = en.id end
    local acked, aerr, acode = self.s:ack(name, M.GROUP, ids)
    if not acked then return nil, aerr, acode end
    n = n + #entries
  end
  if n > 0 then self.s:trim(name) end
  return n, applied
end

-- Joins the waiting feedback whose prediction landed since, and counts
-- what waited past GRACE_S as unmatched.
function Applier:join_waiting()
  if not self.store:view(function(tx) return tx:scan(M.DB, { prefix = "p", limit = 1 })() ~= nil end) then return end
  self.store:update(function(tx)
    local c, now = { joined = 0, unmatched = 0, duplicate = 0 }, timeutil.now()
    join(tx, waiting(tx), now, c, self.retain)
    add_counts(tx, c)
  end)
end

--- One pass: up to max entries of each stream, predictions first (the
-- feedback that follows may join them), then the waiting feedback.
-- Returns { entries, predictions (stored), feedback (entries) }, or nil,
-- message, code.
function Applier:pass(max)
  local n, stored, code = self:drain(log_stream.PREDICTIONS, apply_predictions, max)
  if not n then return nil, stored, code end
  local nf, ferr, fcode = self:drain(log_stream.FEEDBACK, apply_feedback, max)
  if not nf then return nil, ferr, fcode end
  self:join_waiting()
  return { entries = n + nf, predictions = stored, feedback = nf }
end

return M
