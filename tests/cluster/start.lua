-- tests/cluster/start's work (see README.md): a loopback Redis Cluster of 3
-- masters and 3 replicas, three `tycho serve` nodes on homes of their own
-- with --cluster, the model published from a fourth home, and nginx in
-- front; every process detached, its PID written to DIR/pids, so that this
-- script exits and tests/cluster/stop stops them by PID.
--   tycho run tests/cluster/start.lua DIR [NODES]      (from the repository root)
local uv = require "luv"
local internal = require "tycho.internal"
local testing = require "tycho.testing"
local cluster = require "tycho.testing_redis"
local nodes = dofile("tests/lua/fixtures/cluster_nodes.lua")

local dir = arg[1] or error("usage: tycho run tests/cluster/start.lua DIR [NODES]", 0)
local n_nodes = tonumber(arg[2]) or 3
-- Reads answer at once (read_ms 0, the default) and writes wait at most
-- 100 ms for a master failing over, then answer 503: a serving worker is
-- never held longer (the client is synchronous).
local NODE_OPTIONS = "?retry_ms=100"

local pids = assert(io.open(dir .. "/pids", "w"))
pids:setvbuf("line")  -- what started is on disk at once, for stop after a failure

-- Starts a detached process (its own session: it outlives this script)
-- with stdout and stderr into log; records and returns its PID.
local function launch(kind, exe, args, log)
  local fd = assert(uv.fs_open(log, "w", 420))
  local handle, pid = uv.spawn(exe, { args = args, stdio = { nil, fd, fd }, detached = true }, function() end)
  uv.fs_close(fd)
  assert(handle, pid)
  handle:unref()
  pids:write(kind, " ", pid, "\n")
  return pid
end

local function wait_for(what, log, ok)
  if not testing.run_until(ok, 30000) then
    local f = io.open(log)
    error(what .. " did not come up in 30 s" .. (f and (":\n" .. f:read("*a")) or ""), 0)
  end
end

math.randomseed(os.time() + math.floor(os.clock() * 1e6))
local c = assert(cluster.start { masters = 3, replicas = 1 })
for _, p in ipairs(c.ports) do pids:write("redis ", c.pids[p], "\n") end
pids:write("redis_dir ", c.dir, "\n")

-- The model, trained and promoted on a fourth home: published on the cluster.
local train_home = dir .. "/home-train"
assert(uv.fs_mkdir(train_home, 448))
-- Features for a hundred users, u1 .. u100, to predict with.
local version = nodes.train_home(train_home, c.url, 100)

local app = testing.write(dir .. "/app.lua", nodes.APP)
local node_ports = {}
for i = 1, n_nodes do
  local home = dir .. "/home-node" .. i
  assert(uv.fs_mkdir(home, 448))
  nodes.seed_home(home)
  node_ports[i] = testing.free_port()
  launch("node", internal.exe, { "--home", home, "--cluster", c.url .. NODE_OPTIONS, "serve", app,
                                 "--port", tostring(node_ports[i]), "--workers", "1" }, dir .. "/node" .. i .. ".log")
end
for i, port in ipairs(node_ports) do
  wait_for("node " .. i, dir .. "/node" .. i .. ".log", function()
    return testing.request(port, "GET", "/v2/health/ready", { timeout = 500 }) == 200
  end)
end

local nginx = nodes.find_nginx() or error("nginx is not installed (apt-get install nginx-light)", 0)
local nginx_port = testing.free_port()
nodes.nginx_conf(dir .. "/nginx", nginx_port, node_ports)
launch("nginx", nginx, nodes.nginx_args(dir .. "/nginx"), dir .. "/nginx.log")
wait_for("nginx", dir .. "/nginx.log", function()
  return testing.request(nginx_port, "GET", "/v2/health/ready", { timeout = 500 }) == 200
end)
pids:close()

print("redis cluster   " .. c.url)
for i, port in ipairs(node_ports) do
  print(string.format("node %d          http://127.0.0.1:%d   (home %s/home-node%d, log %s/node%d.log)", i, port,
    dir, i, dir, i))
end
print(string.format("nginx           http://127.0.0.1:%d", nginx_port))
print(string.format("model           tiny and tiny_strict %s@production (users u1 .. u100 have clicks)", version))
print("pids            " .. dir .. "/pids")
print(string.format([[

try
  curl -s -XPOST http://127.0.0.1:%d/v1/models/tiny:predict -d '{"instances":[{"user_id":"u3","x":2}]}'
  curl -s -XPOST http://127.0.0.1:%d/get-online-features -d '{"features":["%s:clicks"],"entities":{"%s":["u3"]}}'
stop
  tests/cluster/stop %s]], nginx_port, nginx_port, nodes.VIEW, nodes.JOIN_KEY, dir))
