--- Whether a serving worker reaches its Redis Cluster (TYCHO_CLUSTER), for
-- /v2/health/ready (serve/http.lua):
--
--   local c = cluster_health.status()   -- nil without a cluster
--   -- { reachable = true, masters = 3, unreachable = { "127.0.0.1:7001" } }
--   -- { reachable = false, error = "cluster ...: no node of the cluster answers" }
--
-- One PING to every master of the client's slot map, pipelined, waiting
-- for none (a master down answers at once as unreachable), at most once a
-- second per worker: a probe reads the last answer, it costs no round trip
-- of its own.
--
-- Not reachable means no master answers: the node is cut off from the
-- cluster (a partition, a wrong URL, the cluster down), and every read it
-- would serve is UNAVAILABLE. One master down, or failing over, is not:
-- every node then sees the same, and a load balancer that took them all
-- out would refuse the features the other masters still serve; it shows
-- in the answer's unreachable list.
local uv = require "luv"
local online_redis = require "tycho.features.online_redis"
local json = require "tycho.util.json"

local M = {}

local EVERY_NS = 1e9
local checked_at, last

--- Pings every master of the cluster at url now: the status described above.
function M.check(url)
  local be, err = online_redis.connect(url)
  if not be then return { reachable = false, error = err } end
  local cl = be.cl
  local b = cl:batch()
  local slots = cl:master_slots()
  for _, slot in ipairs(slots) do b:add(slot, "PING") end
  cl:exec(b, 0)
  local unreachable = {}
  for i, slot in ipairs(slots) do
    if b:value(i) ~= "PONG" then unreachable[#unreachable + 1] = cl:node_of(slot) or ("slot " .. slot) end
  end
  local status = { reachable = #unreachable < #slots, masters = #slots,
                   unreachable = #unreachable > 0 and unreachable or json.empty_array }
  if not status.reachable then status.error = "no master of the cluster answers" end
  return status
end

--- This worker's cluster status, checked at most once a second; nil when
-- the process has no cluster.
function M.status()
  local url = os.getenv("TYCHO_CLUSTER")
  if not url or url == "" then return nil end
  local now = uv.hrtime()
  if not last or now - checked_at >= EVERY_NS then last, checked_at = M.check(url), now end
  return last
end

return M
