-- Faults on a cluster of Tycho nodes (issue 25, the first proof): a
-- loopback Redis Cluster of 3 masters and 3 replicas (cluster-node-timeout
-- 2000), three `tycho serve` nodes on homes of their own (reads wait for
-- no node, writes at most 100 ms), nginx in front (tests/cluster/nginx.conf.in),
-- and client lanes through nginx sending predictions with an entity key
-- (a plain model and a strict one), online reads and pushes. Under that
-- load one node is killed -9, a new version is promoted on a fourth home,
-- then a Redis master is killed -9 and its replica takes over. No request
-- fails outside the failover window nor takes past the client's timeout;
-- inside it reads answer at once with the features marked UNAVAILABLE, and
-- a strict model or a push answers 503 with Retry-After; every node serves
-- the new version within a second; every acknowledged push is in the
-- store afterwards. Then, with the whole cluster gone, a node says so on
-- /v2/health/ready and still answers at once.
local tycho = require "tycho"
local testing = require "tycho.testing"
local cluster = require "tycho.testing_redis"
local redis = require "tycho.core.redis"
local json = require "tycho.util.json"
local uv = require "luv"
local fixture = dofile("tests/lua/fixtures/cluster_nodes.lua")

local NGINX = fixture.find_nginx()
-- As the other service specs: pending without nginx or redis-server,
-- failing instead under TYCHO_SERVICE_TESTS=1 (.ci/test).
local describe_faults = ((NGINX and cluster.available()) or os.getenv("TYCHO_SERVICE_TESTS") == "1")
  and describe or pending

local N, USERS, LANES = 3, 60, 4
local TIMEOUT_MS = 3000     -- the clients': a request taking longer is a failure
local GRACE_S = 1.0         -- after the cluster is whole again, for the nodes to see it
local NODE_OPTIONS = "?retry_ms=100"

local function elapsed_s(start) return tonumber(uv.hrtime() - start) / 1e9 end
local post_bytes = fixture.post_bytes

-- The lanes' requests, in turn: n counts a lane's requests.
local KINDS = { "predict", "read", "push", "strict" }
local function request_of(kind, lane, n)
  local user = "u" .. (n % USERS + 1)
  if kind == "predict" or kind == "strict" then
    local model = kind == "predict" and "tiny" or "tiny_strict"
    return post_bytes("/v1/models/" .. model .. ":predict", { instances = { { user_id = user, x = 2 } } })
  elseif kind == "read" then
    local users = { user, "u" .. ((n + 20) % USERS + 1), "u" .. ((n + 40) % USERS + 1) }
    return post_bytes("/get-online-features", { features = { "user_stats:clicks" }, entities = { user_id = users } })
  end
  local key = string.format("p%d-%d", lane, n)
  return post_bytes("/push", { push_source_name = "user_stats",
    df = { user_id = { key }, event_time = { os.time() }, clicks = { n } } }), key
end

-- What an answer says: the served version, and whether features were
-- unavailable (an UNAVAILABLE cell, unavailable_features, or a 503).
local function read_answer(r, headers, body)
  local doc = r.status and body and json.decode(body)
  if type(doc) ~= "table" then return end
  r.version = doc.model_version
  if r.kind == "read" and r.status == 200 then
    for _, s in ipairs(doc.results[2].statuses) do
      if s == "UNAVAILABLE" then r.unavailable = true elseif s ~= "PRESENT" then r.odd = s end
    end
  elseif r.kind == "predict" and r.status == 200 then
    r.unavailable = doc.unavailable_features ~= nil
    r.odd = doc.missing_features and not r.unavailable and "missing_features" or nil
  end
  if r.status == 503 then r.unavailable, r.retry_after = true, headers["retry-after"] end
end

describe_faults("a cluster of tycho nodes under faults", function()
  local c, train_home, nodes

  setup(function()
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    c = assert(cluster.start { masters = 3, replicas = 1, node_timeout = 2000 })
    -- Every user has clicks: outside the failover window no read misses one.
    train_home = testing.tmpdir()
    fixture.train_home(train_home, c.url, USERS)
    local app_path = testing.write(train_home .. "/app.lua", fixture.APP)
    nodes = fixture.start_nodes(N, c.url .. NODE_OPTIONS, { app_path })
  end)

  teardown(function()
    if nodes then nodes:stop() end
    if c then c:stop() end
    if train_home then testing.rmrf(train_home) end
  end)

  -- Client lanes through nginx, each sending its next request when the
  -- last is answered; every answer is a record { kind, t0, t1 (s since
  -- start), status, err, upstream, version, unavailable, retry_after, key }.
  local function load()
    local l = { records = {}, active = 0, stopping = false, start = uv.hrtime() }
    local function lane(id, n)
      if l.stopping then
        l.active = l.active - 1
        return
      end
      local kind = KINDS[n % #KINDS + 1]
      local bytes, key = request_of(kind, id, n)
      local r = { kind = kind, key = key, t0 = elapsed_s(l.start) }
      fixture.send(nodes.nginx_port, bytes, TIMEOUT_MS, function(status, headers, body, err)
        r.t1, r.status, r.err, r.upstream = elapsed_s(l.start), status, err, headers["x-upstream"] or ""
        read_answer(r, headers, body)
        l.records[#l.records + 1] = r
        lane(id, n + 1)
      end)
    end
    for id = 1, LANES do
      l.active = l.active + 1
      lane(id, id)
    end
    function l.run_for(s) testing.run_until(function() return false end, s * 1000) end
    function l.now() return elapsed_s(l.start) end
    function l.stop()
      l.stopping = true
      assert(testing.run_until(function() return l.active == 0 end, TIMEOUT_MS + 2000), l.active .. " lanes hang")
    end
    return l
  end

  -- Promotes tiny(1) as both models on the fourth home, in a child (a
  -- promotion blocks on the cluster, the lanes must not); the child prints
  -- each model's version and the monotonic clock right after its promotion.
  local function promote()
    local script = testing.write(train_home .. "/promote.lua", [[
local reg = assert(require("tycho").registry.open())
local fixture = dofile("tests/lua/fixtures/cluster_nodes.lua")
for _, name in ipairs { "tiny", "tiny_strict" } do
  local v = assert(reg:register(name, fixture.tiny(1)))
  assert(reg:promote(name, v, "production"))
  print(string.format("%s %s %.0f", name, v, require("luv").hrtime()))
end
]])
    return testing.spawn({ "--home", train_home, "--cluster", c.url .. "?retry_ms=10000", "run", script })
  end

  -- A node's /v2/health/ready: its status and the masters it cannot reach.
  local function ready_of(port)
    local status, _, _, doc = testing.request(port, "GET", "/v2/health/ready", { timeout = TIMEOUT_MS })
    local cl = type(doc) == "table" and doc.cluster or {}
    return { status = status, unreachable = table.concat(cl.unreachable or {}, ",") }
  end

  -- The node a record was answered by (the last address nginx tried).
  local function node_of(r) return nodes.by_addr[r.upstream:match("([%d.]+:%d+)$") or ""] end

  -- Seconds from each model's promotion to the first answer of its new
  -- version from each living node.
  local function follow_times(l, promoted, alive)
    local took = {}
    for _, r in ipairs(l.records) do
      local model = r.kind == "predict" and "tiny" or r.kind == "strict" and "tiny_strict" or nil
      local p, node = model and promoted[model], node_of(r)
      if p and node and r.version == p.version then
        local key = model .. "@" .. node
        took[key] = took[key] or (r.t1 - p.t)
      end
    end
    for _, i in ipairs(alive) do
      for model in pairs(promoted) do
        local t = took[model .. "@" .. i]
        assert.truthy(t and t < 1, "node " .. i .. " served " .. model .. " " .. promoted[model].version
          .. " after " .. tostring(t) .. " s")
      end
    end
    return took
  end

  -- A record's failure, or nil: outside the window anything but a clean
  -- 200; inside it, reads and plain predictions still 200 (features
  -- marked), strict predictions and pushes 200 or 503 with Retry-After.
  local function failure(r, window)
    if r.err or not r.status then return tostring(r.err or "no answer") end
    local inside = r.t1 >= window[1] and r.t0 <= window[2]
    if r.odd then return "odd answer: " .. r.odd end
    if not inside then
      if r.status ~= 200 or r.unavailable then return "status " .. r.status .. (r.unavailable and ", unavailable" or "") end
      return nil
    end
    if r.status == 200 then return nil end
    if r.status == 503 and (r.kind == "strict" or r.kind == "push") then
      return r.retry_after == nil and "503 without Retry-After" or nil
    end
    return "status " .. r.status
  end

  -- Every acknowledged push's value, read back from the cluster.
  local function pushes_found(l)
    local keys, want = {}, {}
    for _, r in ipairs(l.records) do
      if r.kind == "push" and r.status == 200 then
        keys[#keys + 1] = r.key
        want[#want + 1] = tonumber(r.key:match("%-(%d+)$"))
      end
    end
    local fs = assert(tycho.features.open { home = train_home, cluster = c.url })
    local res = assert(fs:online({ "user_stats:clicks" }, { user_id = keys }))
    fs.store:close()
    local found = 0
    for i = 1, #keys do
      if res.results[2].statuses[i] == "PRESENT" and res.results[2].values[i] == want[i] then found = found + 1 end
    end
    return #keys, found
  end

  local function summary(l, window)
    local n, slowest, by, first, last = #l.records, 0, {}, math.huge, 0
    for _, r in ipairs(l.records) do
      slowest = math.max(slowest, r.t1 - r.t0)
      if r.unavailable then first, last = math.min(first, r.t1), math.max(last, r.t1) end
      local inside = r.t1 >= window[1] and r.t0 <= window[2]
      local k = r.kind .. (inside and " in window" or "")
      by[k] = by[k] or { n = 0, unavailable = 0, s503 = 0 }
      by[k].n = by[k].n + 1
      if r.unavailable then by[k].unavailable = by[k].unavailable + 1 end
      if r.status == 503 then by[k].s503 = by[k].s503 + 1 end
    end
    local lines = {}
    for _, k in ipairs { "predict", "read", "strict", "push" } do
      local o, w = by[k] or { n = 0 }, by[k .. " in window"] or { n = 0, unavailable = 0, s503 = 0 }
      lines[#lines + 1] = string.format("    %-8s %5d outside the window; in it %4d, %4d with features unavailable"
        .. " (%d of them 503)", k, o.n, w.n, w.unavailable, w.s503)
    end
    lines[#lines + 1] = string.format("    features unavailable from %.2f to %.2f s", first, last)
    return n, slowest, table.concat(lines, "\n")
  end

  it("answers every request through a node kill, a promotion and a master failover", function()
    -- The master to kill (and one of its slots): not the one of the
    -- published models' keys (a node that lost it would catch up on its
    -- follower's backoff instead). Three masters split the slots in thirds.
    local models_master = c:master_of_slot(redis.slot("tycho:{models}:seq"))
    local victim, victim_slot
    for _, slot in ipairs { 0, 8192, 16383 } do
      local p = c:master_of_slot(slot)
      if not victim and p ~= models_master then victim, victim_slot = p, slot end
    end
    local l = load()
    l.run_for(1.0)
    local node_killed_at = l.now()
    nodes:kill(2)
    l.run_for(0.5)
    local child = promote()
    local promoted = {}
    assert(testing.run_until(function()
      for name, v, at in child.stdout():gmatch("(%S+) (%S+) (%d+)\n") do
        promoted[name] = { version = v, t = tonumber(tonumber(at) - l.start) / 1e9 }
      end
      return child.code ~= nil and promoted.tiny_strict
    end, 20000), "promotion: " .. child.stderr())
    assert.equal(0, child.code, child.stderr())
    l.run_for(1.5)
    local master_killed_at = l.now()
    c:kill(victim)
    -- Whole again: a replica serves the victim's slots and every live node
    -- says cluster_state:ok. Asked every 250 ms: the redis-cli runs block
    -- the lanes' loop meanwhile.
    local healthy_at, asked_at, readies = nil, master_killed_at, {}
    assert(testing.run_until(function()
      if healthy_at or l.now() - asked_at < 0.25 then return healthy_at end
      asked_at = l.now()
      readies[#readies + 1] = ready_of(nodes.ports[1])
      local owner = c:master_of_slot(victim_slot)
      if owner and owner ~= victim and c:healthy() then healthy_at = l.now() end
      return healthy_at
    end, 30000), "the cluster did not recover: " .. nodes:stderrs())
    l.run_for(2.0)
    l.stop()

    local window = { master_killed_at, healthy_at + GRACE_S }
    local failed = {}
    for _, r in ipairs(l.records) do
      local why = failure(r, window)
      if why then failed[#failed + 1] = string.format("%.3f-%.3f s %s via %s: %s", r.t0, r.t1, r.kind, r.upstream, why) end
    end
    local took = follow_times(l, promoted, { 1, 3 })
    local acknowledged, found = pushes_found(l)
    local n, slowest, lines = summary(l, window)
    print(string.format("\n  %d requests through nginx (%d lanes) in %.1f s: node 2 killed -9 at %.2f s; %s %s"
      .. " promoted at %.2f s, served by nodes 1 and 3 after %.3f and %.3f s; master :%d killed -9 at %.2f s, "
      .. "cluster whole again at %.2f s (window to %.2f s); %d failed, slowest %.0f ms\n%s\n"
      .. "    pushes acknowledged %d, found afterwards %d", n, LANES, l.now(), node_killed_at, "tiny",
      promoted.tiny.version, promoted.tiny.t, took["tiny@1"], took["tiny@3"], victim, master_killed_at, healthy_at,
      window[2], #failed, slowest * 1000, lines, acknowledged, found))
    assert.same({}, failed)
    assert.truthy(slowest * 1000 < TIMEOUT_MS)
    -- One master down is no reason to take a node out (every node sees the
    -- same): ready all along, naming the master it cannot reach.
    local named = 0
    for _, r in ipairs(readies) do
      assert.equal(200, r.status)
      if r.unreachable == "127.0.0.1:" .. victim then named = named + 1 end
    end
    assert.truthy(named > 0, json.encode(readies))
    assert.truthy(acknowledged > 0)
    assert.equal(acknowledged, found)
  end)

  it("says on ready that a node is cut off from the cluster, and still answers at once", function()
    c:stop()
    local status, doc
    assert.truthy(testing.run_until(function()
      local s, _, _, d = testing.request(nodes.ports[1], "GET", "/v2/health/ready", { timeout = 1000 })
      status, doc = s, d
      return status == 503
    end, 5000), "ready answered " .. tostring(status))
    assert.same({ false, false }, { doc.ready, doc.cluster.reachable })
    assert.truthy(#doc.cluster.error > 0)
    local function timed(path, body)
      local t0 = uv.hrtime()
      local s, headers, _, d = testing.request(nodes.ports[1], "POST", path, { body = body, timeout = TIMEOUT_MS })
      return s, headers or {}, d, tonumber(uv.hrtime() - t0) / 1e6
    end
    local s, _, d, ms = timed("/get-online-features", { features = { "user_stats:clicks" },
                                                        entities = { user_id = { "u1", "u2" } } })
    assert.same({ 200, { "UNAVAILABLE", "UNAVAILABLE" } }, { s, d.results[2].statuses })
    assert.truthy(ms < 200, ms .. " ms")
    s, _, d, ms = timed("/v1/models/tiny:predict", { instances = { { user_id = "u1", x = 2 } } })
    assert.same({ 200, { { "clicks" } }, { { "clicks" } } }, { s, d.unavailable_features, d.missing_features })
    assert.truthy(ms < 200, ms .. " ms")
    local headers
    s, headers, d = timed("/v1/models/tiny_strict:predict", { instances = { { user_id = "u1", x = 2 } } })
    assert.same({ 503, "unavailable", "1" }, { s, d.error.code, headers["retry-after"] })
    s, headers, _, ms = timed("/push", { push_source_name = "user_stats",
                                         df = { user_id = { "late" }, event_time = { os.time() }, clicks = { 1 } } })
    assert.same({ 503, "1" }, { s, headers["retry-after"] })
    assert.truthy(ms < 1500, "a refused push took " .. ms .. " ms")
    print(string.format("\n  cluster gone: ready 503 (%s); a refused push took %.0f ms", doc.cluster.error, ms))
  end)
end)
