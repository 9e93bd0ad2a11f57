--- A throwaway Redis Cluster on loopback, for specs and development: N
-- masters and N × replicas replicas of Debian's redis-server in a temporary
-- directory, each on a free port, stopped by PID.
--
--   local cluster = require "tycho.testing_redis"
--   local c = assert(cluster.start { masters = 3, replicas = 1 })
--   -- c.url = "redis://127.0.0.1:p1,127.0.0.1:p2,..."
--   c:kill(c:master_of_slot(0))     -- kill -9 one node
--   c:stop()                        -- every node it started, and its directory
--
-- Waits have deadlines and poll; nothing sleeps a fixed time.
local uv = require "luv"
local errors = require "tycho.util.errors"

local M = {}
local Cluster = {}
Cluster.__index = Cluster

-- Output of a shell command and whether it exited 0.
local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"tycho-rc=$?\"")
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)tycho%-rc=(%d+)%s*$")
  return body or out, rc == "0"
end

local function run(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end

--- True when redis-server and redis-cli are installed.
function M.available()
  local out = sh("command -v redis-server && command -v redis-cli")
  return out:find("redis%-server") ~= nil and out:find("redis%-cli") ~= nil
end

local function port_free(p)
  local t = uv.new_tcp()
  local ok = t:bind("127.0.0.1", p)
  -- bind is lazy on some systems: listening makes a taken port fail here.
  if ok then ok = t:listen(1, function() end) end
  t:close()
  uv.run("nowait")
  return ok == 0 or ok == true
end

-- n ports p whose cluster bus port p + 10000 is free too.
local function free_ports(n)
  local out, p = {}, 20000 + math.random(0, 15000)
  while #out < n do
    if port_free(p) and port_free(p + 10000) then out[#out + 1] = p end
    p = p + 1
  end
  return out
end

--- Polls fn() until it returns a true value or timeout_s passes; returns
-- its value, or nil and how long it waited.
function M.wait(fn, timeout_s, what)
  local deadline = uv.hrtime() + timeout_s * 1e9
  local delay = 10
  repeat
    local v = fn()
    if v then return v end
    uv.sleep(delay)
    delay = math.min(delay * 2, 200)
  until uv.hrtime() > deadline
  return errors.fail("unavailable", (what or "condition") .. " not reached within " .. timeout_s .. " s")
end

--- Runs redis-cli against the node on port with args (a string, shell-quoted
-- by the caller); returns its output.
function Cluster.cli(_, port, args)
  return (sh(string.format("redis-cli -h 127.0.0.1 -p %d %s", port, args)))
end

local function cluster_ok(c, port)
  return c:cli(port, "CLUSTER INFO"):find("cluster_state:ok", 1, true) ~= nil
end

--- Starts the cluster: opts.masters (3), opts.replicas per master (1),
-- opts.node_timeout (ms, 2000), opts.timeout (s to wait for it, 30).
-- Returns it (url, ports, pids, dir) once every node says cluster_state:ok,
-- every replica is in sync and every master's replicas acknowledge a WAIT,
-- or nil and why (having stopped what it started).
function M.start(opts)
  opts = opts or {}
  if not M.available() then
    return errors.fail("unavailable", "redis-server / redis-cli not installed (apt-get install redis-server)")
  end
  local masters, replicas = opts.masters or 3, opts.replicas or 1
  local n = masters * (1 + replicas)
  local dir = sh("mktemp -d /tmp/tycho-redis-XXXXXX"):gsub("%s+$", "")
  local c = setmetatable({ dir = dir, ports = free_ports(n), pids = {}, killed = {} }, Cluster)
  local addrs = {}
  for i, p in ipairs(c.ports) do
    local nd = dir .. "/" .. p
    os.execute("mkdir -p " .. nd)
    local out, ok = sh(string.format(
      "cd %s && redis-server --port %d --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf "
      .. "--cluster-node-timeout %d --appendonly no --save '' --daemonize yes --pidfile %s/redis.pid "
      .. "--logfile %s/redis.log --dir %s", nd, p, opts.node_timeout or 2000, nd, nd, nd))
    if not ok then
      c:stop()
      return errors.fail("unavailable", "redis-server on port " .. p .. ": " .. out)
    end
    c.pids[p] = false
    addrs[i] = "127.0.0.1:" .. p
  end
  local timeout = opts.timeout or 30
  for _, p in ipairs(c.ports) do
    local ok, werr = M.wait(function()
      local f = io.open(dir .. "/" .. p .. "/redis.pid")
      if f then
        c.pids[p] = tonumber(f:read("*a"))
        f:close()
      end
      return c.pids[p] and c:cli(p, "PING"):find("PONG", 1, true)
    end, timeout, "redis-server on port " .. p)
    if not ok then
      c:stop()
      return errors.fail("unavailable", werr)
    end
  end
  local out, ok = sh("redis-cli --cluster create " .. table.concat(addrs, " ") .. " --cluster-replicas " .. replicas
                     .. " --cluster-yes")
  if not ok or not out:find("All 16384 slots covered", 1, true) then
    c:stop()
    return errors.fail("unavailable", "redis-cli --cluster create: " .. out)
  end
  local ready, werr = M.wait(function()
    for _, p in ipairs(c.ports) do
      if not cluster_ok(c, p) then return false end
      local info = c:cli(p, "INFO replication")
      if info:find("role:slave", 1, true) and not info:find("master_link_status:up", 1, true) then return false end
      -- A master's replicas acknowledge writes (WAIT 1 answers at once):
      -- the specs' first shared change waits for just that.
      if replicas > 0 and info:find("role:master", 1, true)
        and (tonumber(c:cli(p, "WAIT " .. replicas .. " 1000"):match("%d+")) or 0) < replicas then
        return false
      end
    end
    return true
  end, timeout, "cluster_state:ok on every node, replicas acknowledging")
  if not ready then
    c:stop()
    return errors.fail("unavailable", werr)
  end
  c.url = "redis://" .. table.concat(addrs, ",")
  return c
end

--- The port of the master serving slot, as the cluster sees it now (asked of
-- a live node).
function Cluster:master_of_slot(slot)
  for _, p in ipairs(self.ports) do
    if not self.killed[p] then
      local out = self:cli(p, "CLUSTER SLOTS")
      -- redis-cli prints each range as start, end, then the master's host, port, id.
      local lines = {}
      for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      for i = 1, #lines - 3 do
        local lo, hi = tonumber(lines[i]), tonumber(lines[i + 1])
        if lo and hi and lines[i + 2]:match("^%d+%.%d+%.%d+%.%d+$") and slot >= lo and slot <= hi then
          return tonumber(lines[i + 3])
        end
      end
      return nil
    end
  end
end

--- The ports of the masters now.
function Cluster:masters()
  local out = {}
  for _, p in ipairs(self.ports) do
    if not self.killed[p] and self:cli(p, "ROLE"):match("^master") then out[#out + 1] = p end
  end
  return out
end

--- kill -9 the node on port (by its PID).
function Cluster:kill(port)
  local pid = self.pids[port]
  if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
  self.killed[port] = true
end

--- True when every live node says cluster_state:ok.
function Cluster:healthy()
  for _, p in ipairs(self.ports) do
    if not self.killed[p] and not cluster_ok(self, p) then return false end
  end
  return true
end

--- Stops every node it started (kill -9 by PID, then waits for each to be
-- gone) and removes its directory.
function Cluster:stop()
  for _, pid in pairs(self.pids) do
    if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
  end
  for _, pid in pairs(self.pids) do
    if pid then M.wait(function() return not run("kill -0 " .. pid .. " 2>/dev/null") end, 5) end
  end
  self.pids = {}
  if self.dir and self.dir:match("^/tmp/tycho%-redis%-") then os.execute("rm -rf '" .. self.dir .. "'") end
end

return M
