-- A serving worker's reads of the cluster's online store wait without
-- holding the worker (issue 25: the Redis client on the worker's own loop).
-- One `tycho serve` node with one worker on a loopback cluster of 3
-- masters (+ replicas, slow to fail over); one master is stopped
-- (SIGSTOP: a hung node, the worst case, since nothing refuses). A read of
-- a user on that master waits timeout_ms, then answers UNAVAILABLE; while
-- it waits, the same worker answers reads of users on the other masters at
-- once. A client that blocked its worker would answer none of them in that
-- window. A push to the hung master is refused (503) within the read
-- timeout and 250 ms. Once the master runs again, its users read PRESENT.
local testing = require "tycho.testing"
local cluster = require "tycho.testing_redis"
local redis = require "tycho.core.redis"
local json = require "tycho.util.json"
local uv = require "luv"
local fixture = dofile("tests/lua/fixtures/cluster_nodes.lua")

local describe_waiting = ((fixture.find_nginx() and cluster.available()) or os.getenv("TYCHO_SERVICE_TESTS") == "1")
  and describe or pending

local USERS = 60

local function now_ms() return tonumber(uv.hrtime()) / 1e6 end

local function read_bytes(user)
  return fixture.post_bytes("/get-online-features", { features = { "user_stats:clicks" },
                                                       entities = { user_id = { user } } })
end

local function status_of(body)
  local doc = body and json.decode(body)
  return type(doc) == "table" and doc.results and doc.results[2].statuses[1] or tostring(body)
end

describe_waiting("reads of the cluster's online store in a serving worker", function()
  local c, train_home, nodes, stopped

  setup(function()
    -- A master stopped for a few seconds must not fail over meanwhile.
    c = assert(cluster.start { masters = 3, replicas = 1, node_timeout = 15000 })
    train_home = testing.tmpdir()
    fixture.train_home(train_home, c.url, USERS)
    local app_path = testing.write(train_home .. "/app.lua", fixture.APP)
    nodes = fixture.start_nodes(1, c.url, { app_path })
  end)

  teardown(function()
    if stopped then os.execute("kill -CONT " .. stopped) end
    if nodes then nodes:stop() end
    if c then c:stop() end
    if train_home then testing.rmrf(train_home) end
  end)

  it("answers reads on live masters while a read on a hung one waits", function()
    local port = nodes.ports[1]
    -- A user on the master to stop, and users on the others.
    local cl = assert(redis.open(c.url))
    local master_of = {}
    for i = 1, USERS do
      local key = "tycho:{user:u" .. i .. "}"
      master_of["u" .. i] = cl:node_of(cl:slot(key))
    end
    cl:close()
    local hung_user, hung_node, live = "u1", master_of.u1, {}
    for i = 2, USERS do
      if master_of["u" .. i] ~= hung_node then live[#live + 1] = "u" .. i end
    end
    assert.truthy(#live > 10)
    -- Warm: the worker has its connections to every master.
    for _, user in ipairs { hung_user, live[1], live[#live] } do
      local s, _, _, d = testing.request(port, "POST", "/get-online-features",
        { body = { features = { "user_stats:clicks" }, entities = { user_id = { user } } }, timeout = 3000 })
      assert.same({ 200, "PRESENT" }, { s, d and d.results[2].statuses[1] })
    end

    stopped = c.pids[tonumber(hung_node:match(":(%d+)$"))]
    assert.truthy(os.execute("kill -STOP " .. stopped))
    local hung, answers, t0 = nil, {}, now_ms()
    fixture.send(port, read_bytes(hung_user), 5000, function(status, _, body, err, ms)
      hung = { status = status, st = status_of(body), err = err, ms = ms, t1 = now_ms() }
    end)
    local n = 0
    local function lane()
      if hung then return end
      n = n + 1
      fixture.send(port, read_bytes(live[n % #live + 1]), 5000, function(status, _, body, err, ms)
        answers[#answers + 1] = { status = status, st = status_of(body), err = err, ms = ms, t = now_ms() }
        lane()
      end)
    end
    lane()
    assert.truthy(testing.run_until(function() return hung ~= nil end, 8000), "the hung read never answered")
    -- A push to the hung master: its online write blocks (it is made in a
    -- store transaction), but a serving worker gives a failover at most
    -- 250 ms beyond the read timeout, not the client's retry_ms (5 s).
    local p0 = now_ms()
    local ps, pheaders = testing.request(port, "POST", "/push", { timeout = 8000, body = {
      push_source_name = "user_stats", df = { user_id = { hung_user }, event_time = { os.time() }, clicks = { 5 } } } })
    local push_ms = now_ms() - p0
    os.execute("kill -CONT " .. stopped)
    stopped = nil
    assert.same({ 503, "1" }, { ps, pheaders and pheaders["retry-after"] })
    assert.truthy(push_ms < 2500, "a push to a hung master took " .. push_ms .. " ms")

    -- The hung read: UNAVAILABLE once the client's timeout_ms (1000) passed.
    assert.same({ 200, "UNAVAILABLE" }, { hung.status, hung.st })
    assert.truthy(hung.ms >= 900 and hung.ms < 3000, hung.ms .. " ms")
    -- Meanwhile: reads of live masters answered at once, many of them
    -- while the hung read was waiting.
    local during, slow = 0, 0
    for _, a in ipairs(answers) do
      assert.same({ 200, "PRESENT" }, { a.status, a.st }, a.err)
      if a.t > t0 + 300 and a.t < hung.t1 - 100 then during = during + 1 end
      if a.ms > 250 then slow = slow + 1 end
    end
    assert.truthy(during >= 10, during .. " reads answered while the hung one waited")
    assert.truthy(slow <= 1, slow .. " of " .. #answers .. " live reads took over 250 ms")
    print(string.format("\n  a read on a hung master: UNAVAILABLE after %.0f ms; meanwhile %d reads of live masters"
      .. " answered (%d in all); a push to it refused after %.0f ms", hung.ms, during, #answers, push_ms))

    -- The master is back: its users read PRESENT again.
    local st
    assert.truthy(testing.run_until(function()
      local s, _, _, d = testing.request(port, "POST", "/get-online-features",
        { body = { features = { "user_stats:clicks" }, entities = { user_id = { hung_user } } }, timeout = 3000 })
      st = s == 200 and d.results[2].statuses[1] or s
      return st == "PRESENT"
    end, 10000), "after the master came back: " .. tostring(st))
  end)
end)
