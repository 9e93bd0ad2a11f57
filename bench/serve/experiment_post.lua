-- wrk script for bench/serve/experiment_run. Each request POSTs the
-- one-instance body in $BODY_FILE to the URL's path with a distinct unit id
-- added to the instance ("id": "$RUN_TAG-THREAD-N"), so that under an
-- experiment every request is a new unit and records an exposure.
-- With IDS_FILE (a file of prediction ids, one a line), every
-- FEEDBACK_EVERY-th request (default 1: every one) is instead
--   POST /v1/feedback {"prediction_id": ID, "outcome": 0 or 1}
-- for the next id of this thread's share (thread t of $WRK_THREADS takes
-- lines t, t + WRK_THREADS, ...; ids never repeat until the share runs out).
-- FEEDBACK_BATCH=B (default 1) sends outcomes B at a time at the same rate:
-- every (FEEDBACK_EVERY x B)-th request is one POST of a list of B of them.
-- Prints one line when done (latencies in microseconds, over all requests):
--   RESULT requests duration_us p50 p99 p99.9 non2xx socket_errors predicts feedbacks accepted duplicate pending
local body_file = os.getenv("BODY_FILE") or error("BODY_FILE is not set")
local f = assert(io.open(body_file))
local body = f:read("*a")
f:close()
-- '{"instances":[{' .. the features: the unit id goes first in the instance.
local head, tail = body:match("^(.-%[%s*{)(.*)$")
assert(head, "BODY_FILE is not {\"instances\": [{...}]}")
local tag = os.getenv("RUN_TAG") or "u"
local ids_file = os.getenv("IDS_FILE")
local batch = tonumber(os.getenv("FEEDBACK_BATCH") or "1")
local every = tonumber(os.getenv("FEEDBACK_EVERY") or "1") * batch
local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
-- UNIT_IDS=random: unit ids in random order (hashed user ids), not counting up.
local random_ids = os.getenv("UNIT_IDS") == "random"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end

-- Per thread (tid is set by setup before init runs).
local n, ids, next_id = 0, nil, 1
predicts, feedbacks, accepted, duplicate, pending = 0, 0, 0, 0, 0
function init()
  if not ids_file then return end
  ids = {}
  local i = 0
  for line in io.lines(ids_file) do
    if i % nthreads == tid - 1 and line ~= "" then ids[#ids + 1] = line end
    i = i + 1
  end
  assert(#ids > 0, "no prediction ids for thread " .. tid)
end

function request()
  n = n + 1
  if ids and n % every == 0 then
    local items = {}
    for i = 1, batch do
      items[i] = '{"prediction_id":"' .. ids[next_id] .. '","outcome":' .. ((feedbacks + i) % 2) .. '}'
      next_id = next_id % #ids + 1
    end
    feedbacks = feedbacks + 1
    local outcomes = batch == 1 and items[1] or "[" .. table.concat(items, ",") .. "]"
    return wrk.format(nil, "/v1/feedback", nil, outcomes)
  end
  predicts = predicts + 1
  local unit = tag .. "-" .. tid .. "-" .. n
  if random_ids then unit = string.format("%08x-", (n * 2654435761 + tid * 40503) % 4294967296) .. unit end
  return wrk.format(nil, nil, nil, head .. '"id":"' .. unit .. '",' .. tail)
end

if ids_file then
  -- Feedback answers count accepted, duplicate and pending outcomes.
  function response(status, headers, rbody)
    if status == 200 and rbody:find('"prediction_id"', 1, true) then
      accepted = accepted + tonumber(rbody:match('"accepted":(%d+)') or 0)
      duplicate = duplicate + tonumber(rbody:match('"duplicate":(%d+)') or 0)
      pending = pending + tonumber(rbody:match('"pending":(%d+)') or 0)
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local c = { predicts = 0, feedbacks = 0, accepted = 0, duplicate = 0, pending = 0 }
  for _, t in ipairs(threads) do
    for k in pairs(c) do c[k] = c[k] + (t:get(k) or 0) end
  end
  -- wrk counts responses with status > 399 in errors.status.
  io.write(string.format("RESULT %d %d %.1f %.1f %.1f %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), e.status,
    e.connect + e.read + e.write + e.timeout, c.predicts, c.feedbacks, c.accepted, c.duplicate, c.pending))
end
