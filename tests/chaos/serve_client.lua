-- Chaos fixture: drives predict + feedback traffic at a `tycho serve` of
-- serve_app.lua while tests/chaos/run.sh kills its processes.
--
--   tycho run tests/chaos/serve_client.lua PORT ACKS STOPFILE
--
-- Loop until STOPFILE exists: predict 4 instances; send feedback (a list of
-- up to 12), each id once, with a random outcome 0..9: for every other batch
-- at once (its predictions are not logged yet: pending feedback), for the
-- others once they are 300 ms old (most are logged by then: accepted). For every item
-- of a feedback request answered 2xx it appends "ack ID OUTCOME STATUS" to
-- ACKS (flushed: an acknowledged outcome is on that list before the next
-- request). Requests that fail or get no answer (a worker killed under them)
-- are counted, not retried. Prints its totals at the end.
local testing = require "tycho.testing"
local json = require "tycho.json"
local timeutil = require "tycho.timeutil"

local port, acks_path, stop_path = tonumber(arg[1]), arg[2], arg[3]
assert(port and acks_path and stop_path, "usage: serve_client.lua PORT ACKS STOPFILE")
local acks = assert(io.open(acks_path, "a"))
local seed = tonumber(tostring(os.time()):sub(-6)) + require("luv").os_getpid()
local function rnd(n)
  seed = seed * 48271 % 2147483647
  return seed % n
end

local function stopped()
  local f = io.open(stop_path)
  if f then f:close() return true end
  return false
end

local queue, head = {}, 1   -- { id, at (µs) }: feedback 300 ms later
local at_once = {}          -- ids: feedback right away
local stats = { predict_ok = 0, predict_fail = 0, feedback_ok = 0, feedback_fail = 0, acked = 0 }
local body = { instances = { { x1 = 0.1, x2 = 0.2 }, { x1 = 0.9, x2 = 0.8 }, { x1 = 0.5, x2 = 0.6 }, { x1 = 0.3, x2 = 0.9 } } }

while not stopped() do
  local status, _, _, doc = testing.request(port, "POST", "/v1/models/chaos:predict", { body = body, timeout = 3000 })
  if status == 200 and type(doc) == "table" and type(doc.prediction_ids) == "table" then
    stats.predict_ok = stats.predict_ok + 1
    -- Every other batch gets its feedback at once, before the prediction
    -- log is flushed (those outcomes are held as pending); the others 300 ms
    -- later, when their predictions are most likely logged.
    local now = timeutil.now()
    for _, id in ipairs(doc.prediction_ids) do
      if stats.predict_ok % 2 == 0 then at_once[#at_once + 1] = id else queue[#queue + 1] = { id, now } end
    end
  else
    stats.predict_fail = stats.predict_fail + 1
  end
  local items, now = {}, timeutil.now()
  for i, id in ipairs(at_once) do items[i] = { prediction_id = id, outcome = rnd(10) } end
  at_once = {}
  while queue[head] and now - queue[head][2] >= 300e3 and #items < 12 do
    items[#items + 1] = { prediction_id = queue[head][1], outcome = rnd(10) }
    queue[head] = nil
    head = head + 1
  end
  if #items > 0 then
    local fstatus, _, _, fdoc = testing.request(port, "POST", "/v1/feedback", { body = items, timeout = 3000 })
    if fstatus and fstatus >= 200 and fstatus < 300 and type(fdoc) == "table" and type(fdoc.results) == "table" then
      stats.feedback_ok = stats.feedback_ok + 1
      local lines = {}
      for i, r in ipairs(fdoc.results) do
        -- The answer lists results in request order; check it anyway.
        assert(r.prediction_id == items[i].prediction_id, "feedback results out of order")
        lines[#lines + 1] = string.format("ack %s %d %s\n", r.prediction_id, items[i].outcome, r.status)
      end
      acks:write(table.concat(lines))
      acks:flush()
      stats.acked = stats.acked + #lines
    else
      stats.feedback_fail = stats.feedback_fail + 1
    end
  end
end
acks:close()
print(json.encode(stats))
