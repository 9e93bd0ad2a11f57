--- The prediction log and feedback shared on a Redis Cluster (issue 25):
-- every serving node sends its log's flushes and the feedback it accepts
-- to two streams, which the node that keeps the offline store (`tycho
-- --cluster URL serve --offline-store`) applies to its home
-- (monitor/log_apply.lua, serve/consume.lua): its `tycho monitor`, console
-- and drift see every node's traffic, and feedback joins whichever node
-- made the prediction.
--
--   local sh = log_stream.shipper(url)      -- a serving worker with a cluster
--   sh:ship(batch)                          -- after each flush's commit (serve/log.lua)
--   local id, err = sh:feedback(items)      -- the feedback route: XADD, then WAIT 1
--   local s = log_stream.stream(backend)    -- the consumer's, on features' backend
--
-- Keys (push_stream's machinery, prefix "log"): `<ns>log:{predictions}`
-- and `<ns>log:{feedback}`, one stream each, so a consumer drains each by
-- name; both are bounded with XADD MAXLEN ~ (PREDICTIONS_MAXLEN entries,
-- FEEDBACK_MAXLEN), so a cluster without a consumer keeps the newest only,
-- and trimmed to what the consumer group still needs after each pass.
--
-- A predictions entry is one flush: field `rows` holds the flush's
-- entries as the node stored them in its own log (monitor/entry.lua's
-- string.buffer encodings, back to back, decoded one after the other).
-- A feedback entry is one request's accepted items, string.buffer's
-- encoding of { {prediction_id, outcome}, ... }.
--
-- A flush never waits for the cluster beyond one round trip (XADD and
-- WAIT 1 pipelined, no retry budget: a node that refuses is unavailable at
-- once) and never fails: its entries are in the node's own log first. A
-- flush the cluster did not confirm stays queued, in order, and is sent
-- again after a back-off (1 s, doubling to 10 s) on a timer of its own;
-- meanwhile flushes only queue. Sending again is harmless (an entry is
-- applied once per prediction id). The queue holds at most QUEUE_MAX
-- predictions: past that the oldest flushes are dropped from it (never
-- from the node's log) and counted. /metrics shows the counters.
local buffer = require "string.buffer"
local uv = require "luv"
local push_stream = require "tycho.features.push_stream"
local online_redis = require "tycho.features.online_redis"
local redis = require "tycho.core.redis"

local M = {}

M.PREDICTIONS, M.FEEDBACK, M.PREFIX = "predictions", "feedback", "log"
local PREDICTIONS_MAXLEN, FEEDBACK_MAXLEN = 20000, 200000
local QUEUE_MAX = 100000
local BACKOFF_MIN_MS, BACKOFF_MAX_MS = 1000, 10000

--- The log streams on backend ({ cl, ns, opts }: features/online_redis.lua's,
-- or the shipper's own): push_stream's Stream with the "log" keys. opts:
-- maxlen (PREDICTIONS_MAXLEN) and budget_ms for append.
function M.stream(backend, opts)
  opts = opts or {}
  return push_stream.new(backend, { prefix = M.PREFIX, maxlen = opts.maxlen or PREDICTIONS_MAXLEN,
                                    budget_ms = opts.budget_ms })
end

--- A feedback entry's bytes for items { {prediction_id =, outcome =}, ... }.
function M.encode_feedback(items)
  local list = {}
  for i, it in ipairs(items) do list[i] = { it.prediction_id, it.outcome } end
  return buffer.encode(list)
end

local Shipper = {}
Shipper.__index = Shipper

--- The shipper of a serving worker on the cluster at url; connects on
-- first use.
function M.shipper(url)
  return setmetatable({ url = url, queue = {}, head = 1, queued = 0, backoff = 0, said = nil,
                        counts = { shipped = 0, flushes = 0, failures = 0, dropped = 0 } }, Shipper)
end

-- The stream, on a client of its own: its reads time out just past WAIT's
-- wait_ms, so a cut-off node holds the flush that long at most.
function Shipper:stream()
  if self.s then return self.s end
  local seeds, opts, code = online_redis.parse_url(self.url)
  if not seeds then return nil, opts, code end
  local wait = opts.wait_ms or 500
  local cl, e, ecode = redis.open(seeds, { timeout_ms = wait + 100, retry_ms = wait + 100 })
  if not cl then return nil, e, ecode end
  local backend = { cl = cl, ns = opts.ns, opts = opts }
  self.s = M.stream(backend, { budget_ms = 0 })
  self.fb = M.stream(backend, { budget_ms = 0, maxlen = FEEDBACK_MAXLEN })
  return self.s
end

-- Queues a flush's entries, dropping the oldest past QUEUE_MAX.
function Shipper:enqueue(bytes, n)
  self.queue[#self.queue + 1] = { bytes = bytes, n = n }
  self.queued = self.queued + n
  while self.queued > QUEUE_MAX and self.head < #self.queue do
    local old = self.queue[self.head]
    self.queue[self.head], self.head = nil, self.head + 1
    self.queued, self.counts.dropped = self.queued - old.n, self.counts.dropped + old.n
  end
end

--- Sends batch (serve/log.lua's Batch, committed to the node's log) to
-- the predictions stream, after what is queued; while backing off after
-- a failure it only queues.
function Shipper:ship(batch)
  if batch.n == 0 then return end
  self:enqueue(batch.bytes:tostring(), batch.n)
  if not self.timer then self:send() end
end

-- Sends the queue in order until it is empty or the cluster fails.
function Shipper:send()
  local s, err = self:stream()
  if not s then return self:failed(err) end
  local q = self.queue
  while self.head <= #q do
    local f = q[self.head]
    local id, e = s:append(M.PREDICTIONS, f.bytes)
    if not id then return self:failed(e) end
    q[self.head], self.head = nil, self.head + 1
    self.queued, self.counts.shipped, self.counts.flushes = self.queued - f.n, self.counts.shipped + f.n,
      self.counts.flushes + 1
  end
  self.queue, self.head, self.backoff = {}, 1, 0
  if self.said then io.stderr:write("tycho serve: prediction log stream: the cluster confirms again\n") end
  self.said = nil
end

-- Counts a failure, says why (once until it changes) and sends again after
-- the back-off, on a timer that does not keep the loop alive.
function Shipper:failed(why)
  self.counts.failures = self.counts.failures + 1
  self.backoff = math.min(math.max(self.backoff * 2, BACKOFF_MIN_MS), BACKOFF_MAX_MS)
  why = tostring(why)
  if why ~= self.said then
    io.stderr:write("tycho serve: prediction log stream: ", why, "; ", self.queued,
      " predictions queued, sent again in ", self.backoff, " ms\n")
  end
  self.said = why
  self.timer = uv.new_timer()
  self.timer:start(self.backoff, 0, function()
    self.timer:close()
    self.timer = nil
    self:send()
  end)
  self.timer:unref()
end

--- Appends items (checked: monitor/feedback.lua's check_item) to the
-- feedback stream, once a replica holds them (WAIT 1). The entry id, or
-- nil, message, "unavailable".
function Shipper:feedback(items)
  local s, err, code = self:stream()
  if not s then return nil, err, code end
  return self.fb:append(M.FEEDBACK, M.encode_feedback(items))
end

local function counter(line, name, help, value)
  line("# HELP " .. name .. " " .. help)
  line("# TYPE " .. name .. " counter")
  line(string.format("%s %d", name, value))
end

--- Appends the shipper's counters to /metrics (this worker's).
function Shipper:prometheus(line)
  local c = self.counts
  counter(line, "tycho_prediction_log_stream_predictions_total",
    "Predictions sent to the cluster's prediction log stream and confirmed.", c.shipped)
  counter(line, "tycho_prediction_log_stream_failures_total",
    "Sends to the prediction log stream the cluster did not confirm (the flush stays queued).", c.failures)
  counter(line, "tycho_prediction_log_stream_dropped_total",
    "Predictions dropped from the stream's full queue (kept in this node's own log).", c.dropped)
  line("# HELP tycho_prediction_log_stream_queued Predictions waiting to be sent to the stream.")
  line("# TYPE tycho_prediction_log_stream_queued gauge")
  line(string.format("tycho_prediction_log_stream_queued %d", self.queued))
end

return M
