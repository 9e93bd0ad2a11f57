-- Starts a loopback Redis Cluster for bench/cluster/run with
-- tycho.testing_redis (3 masters, 1 replica each) and writes what the
-- script needs to stop it into a shell file, then exits; the redis-server
-- processes are daemons and outlive this script.
--   tycho run bench/cluster/redis.lua OUT_FILE [MASTERS] [REPLICAS]
local cluster = require "tycho.testing_redis"

local out = arg[1] or error("usage: tycho run bench/cluster/redis.lua OUT_FILE [MASTERS] [REPLICAS]")
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
local c = assert(cluster.start { masters = tonumber(arg[2]) or 3, replicas = tonumber(arg[3]) or 1 })
local pids = {}
for _, p in ipairs(c.ports) do pids[#pids + 1] = tostring(c.pids[p]) end
local f = assert(io.open(out, "w"))
f:write(string.format("REDIS_URL='%s'\nREDIS_PIDS='%s'\nREDIS_DIR='%s'\nREDIS_PORTS='%s'\n", c.url,
  table.concat(pids, " "), c.dir, table.concat(c.ports, " ")))
f:close()
print("redis cluster " .. c.url)
