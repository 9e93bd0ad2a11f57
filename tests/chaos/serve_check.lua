-- Chaos fixture: after a `tycho serve` was killed, checks in a fresh process
-- that every feedback acknowledged to serve_client.lua is in the home.
--
--   tycho --home H run tests/chaos/serve_check.lua ACKS
--
-- Outcomes live in the home's `outcomes` database, keyed by prediction id,
-- value {"outcome": V, "at": µs} (experiments.lua, record_outcome); the
-- prediction log in `predictions`, keyed by keys.pack("i64 s", time, id).
--   accepted   the outcome must be stored, with the value sent, and its
--              prediction logged (they were joined in one transaction);
--   pending    (the prediction was not logged yet when the feedback came)
--              the outcome must be stored, unless its prediction was never
--              logged at all: a prediction buffered in a worker killed before
--              its log flush was never promised durable, and its pending
--              feedback is dropped by design after the grace period;
--   duplicate  the id's outcome must be stored (the client never resends).
-- Exit 0 when consistent, 3 when not ("INCONSISTENT: ..." on stdout).
local json = require "tycho.json"
local experiments = require "tycho.experiments"
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")

local problems = {}
local function bad(fmt, ...)
  if #problems < 10 then problems[#problems + 1] = string.format(fmt, ...) end
  problems.n = (problems.n or 0) + 1
end

local st = assert(require("tycho.store").open())
local counts = { accepted = 0, pending = 0, duplicate = 0, rejected = 0, lost_pending = 0 }
local items = {}
for line in io.lines((assert(arg[1], "usage: serve_check.lua ACKS"))) do
  local id, outcome, status = line:match("^ack (%S+) (%d+) (%S+)$")
  if id then items[#items + 1] = { id, tonumber(outcome), status }
  elseif line ~= "" then bad("unreadable ack line %q (a torn write by the client?)", line) end
end

st:view(function(tx)
  for _, it in ipairs(items) do
    local id, outcome, status = it[1], it[2], it[3]
    counts[status] = (counts[status] or 0) + 1
    if status ~= "rejected" then
      local raw = tx:get("outcomes", id)
      local rec = raw and json.decode(raw)
      local logged = tx:get("predictions", (experiments.log_key(id))) ~= nil
      if status == "pending" and not rec and not logged then
        counts.lost_pending = counts.lost_pending + 1
      elseif not rec then
        bad("%s feedback %s (outcome %d) is not in the home%s", status, id, outcome,
          logged and " (its prediction is logged)" or "")
      elseif status ~= "duplicate" and rec.outcome ~= outcome then
        bad("feedback %s: stored outcome %s, sent %d", id, tostring(rec.outcome), outcome)
      elseif status == "accepted" and not logged then
        bad("accepted feedback %s has no logged prediction", id)
      end
    end
  end
end)

-- The home still takes a write.
st:update(function(tx) tx:put("chaos_check", "k", "v") end)
assert(st:view(function(tx) return tx:get("chaos_check", "k") end) == "v")

common.say(string.format(
  "acked %d: accepted %d, pending %d (of which dropped with their unlogged prediction %d), duplicate %d, rejected %d",
  #items, counts.accepted, counts.pending, counts.lost_pending, counts.duplicate, counts.rejected))
if problems.n then
  common.say("INCONSISTENT: ", problems.n, " problem(s): ", table.concat(problems, "; "))
  os.exit(3)
end
common.say("consistent")
