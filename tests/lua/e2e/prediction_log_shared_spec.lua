-- The prediction log and feedback shared on a Redis Cluster (issue 25,
-- item 4): three `tycho serve --model tiny@production` nodes on homes of
-- their own and one loopback cluster (3 masters, 3 replicas); node 1 also
-- keeps the offline store (--offline-store). Predictions sent to every
-- node land in node 1's log with exact counts; feedback sent to another
-- node than the one that predicted joins there; a consumer killed before
-- XACK and node 1 killed -9 and started again lose nothing and count
-- nothing twice, nor does an entry delivered again; with the cluster gone,
-- predictions still answer 200 and the failure counter moves.
local tycho = require "tycho"
local testing = require "tycho.testing"
local cluster = require "tycho.testing_redis"
local store_mod = require "tycho.core.store"
local monitor = require "tycho.monitor"
local keys = require "tycho.util.keys"
local json = require "tycho.util.json"
local fixture = dofile("tests/lua/fixtures/cluster_nodes.lua")

-- As the other service specs: pending without redis-server, failing
-- instead under TYCHO_SERVICE_TESTS=1 (.ci/test).
local describe_cluster = (cluster.available() or os.getenv("TYCHO_SERVICE_TESTS") == "1") and describe or pending

local PREDICT = "/v1/models/tiny:predict"

describe_cluster("the prediction log and feedback shared on a Redis Cluster", function()
  local c, url, home_train, reg, fs_train
  local homes, nodes = {}, {}
  local sent = {}  -- prediction id -> node that answered

  local function serve(i, extra)
    local args = { "--workers", "1" }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    return testing.serve({ "--model", "tiny@production" }, args,
      { env = { "TYCHO_HOME=" .. homes[i], "TYCHO_CLUSTER=" .. url } })
  end

  local function stderrs()
    local out = {}
    for i, n in pairs(nodes) do out[#out + 1] = "node " .. i .. ": " .. n.proc.stderr() end
    return table.concat(out, "\n")
  end

  -- n predictions sent to node i, each its own request; their ids.
  local function predict(i, n)
    local ids = {}
    for k = 1, n do
      local status, _, body, doc = testing.request(nodes[i].port, "POST", PREDICT,
        { body = { instances = { { x = k % 8 } } }, timeout = 3000 })
      assert.equal(200, status, tostring(body) .. "\n" .. stderrs())
      ids[k] = doc.prediction_ids[1]
      sent[ids[k]] = i
    end
    return ids
  end

  -- The offline-store home (node 1's), read from this process.
  local function offline_store() return assert(store_mod.open(homes[1])) end

  local function count_sent()
    local n = 0
    for _ in pairs(sent) do n = n + 1 end
    return n
  end

  -- How many of ids (a list) are in home's log.
  local function logged(home, ids)
    return assert(store_mod.open(home)):view(function(tx)
      local n = 0
      for _, id in ipairs(ids) do
        if tx:get("predictions", keys.pack("i64 s", tonumber(id:sub(1, 16), 16), id)) then n = n + 1 end
      end
      return n
    end)
  end

  -- How many of the ids sent are in node 1's log.
  local function landed()
    local ids = {}
    for id in pairs(sent) do ids[#ids + 1] = id end
    return logged(homes[1], ids)
  end

  local function summary() return monitor.summary("tiny", { window = "1h", store = offline_store() }) end

  local function volume(s)
    local n = 0
    for _, v in ipairs(s.versions) do n = n + v.volume end
    return n
  end

  local function wait_landed(what)
    assert(testing.run_until(function() return landed() == count_sent() end, 20000),
      what .. ": " .. landed() .. " of " .. count_sent() .. " landed\n" .. stderrs())
  end

  local function call(key, ...)
    local cl = fs_train.stream.cl
    return cl:call(cl:slot(key), ...)
  end

  local function metric(i, name)
    local _, _, text = testing.request(nodes[i].port, "GET", "/metrics")
    return tonumber((text or ""):match("\n" .. name .. " (%d+)")) or 0
  end

  setup(function()
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    c = assert(cluster.start { masters = 3, replicas = 1 })
    url = c.url .. "?wait_ms=300&claim_idle_ms=1000"
    home_train = testing.tmpdir()
    fixture.seed_home(home_train)
    reg = assert(tycho.registry.open { home = home_train, cluster = url })
    assert(reg:promote("tiny", assert(reg:register("tiny", fixture.plain(0))), "production"))
    fs_train = assert(tycho.features.open { home = home_train, cluster = url })
    -- Group "hold" never reads: the predictions stream keeps every entry,
    -- so one can be delivered again.
    local key = fs_train.stream.ns .. "log:{predictions}"
    assert.equal("OK", call(key, "XGROUP", "CREATE", key, "hold", "0", "MKSTREAM"))
    for i = 1, 3 do
      homes[i] = testing.tmpdir()
      fixture.seed_home(homes[i])
    end
    nodes[1] = serve(1, { "--offline-store" })
    for i = 2, 3 do nodes[i] = serve(i) end
  end)

  teardown(function()
    for _, n in pairs(nodes) do if n.proc.code == nil then n:stop() end end
    if c then c:stop() end
    if reg then reg.store:close() end
    for _, h in ipairs(homes) do testing.rmrf(h) end
    if home_train then testing.rmrf(home_train) end
  end)

  it("lands every node's predictions in the offline-store home once", function()
    for i = 1, 3 do predict(i, 20) end
    wait_landed("predictions")
    -- The rollups count each once: node 1's own, written by its flush and
    -- applied again from the stream, too.
    assert(testing.run_until(function() return volume(summary()) == 60 end, 5000), "volume " .. volume(summary()))
    for i = 2, 3 do assert.equal(20, metric(i, "tycho_prediction_log_stream_predictions_total")) end
  end)

  it("joins feedback sent to another node than the one that predicted", function()
    local accepted = 0
    local function feed(i, id, outcome)
      local status, _, body, doc = testing.request(nodes[i].port, "POST", "/v1/feedback",
        { body = { prediction_id = id, outcome = outcome }, timeout = 3000 })
      assert.equal(200, status, tostring(body))
      assert.equal("accepted", doc.results[1].status)
      accepted = accepted + 1
    end
    local ids = predict(2, 10)
    for k, id in ipairs(ids) do feed(k % 2 == 0 and 1 or 3, id, k % 2) end
    -- Sent at once after the prediction, before node 2 flushed: it waits
    -- for its prediction on node 1.
    feed(3, predict(2, 1)[1], 1)
    -- A well-formed id of two minutes ago that no node logged: unmatched.
    feed(2, string.format("%016x-1-1", (os.time() - 120) * 1e6), 0)
    local status = testing.request(nodes[2].port, "POST", "/v1/feedback",
      { body = { prediction_id = "nonsense", outcome = 1 } })
    assert.equal(400, status)
    assert(testing.run_until(function()
      local f = summary().feedback
      return f and f.joined + f.unmatched == accepted
    end, 20000), json.encode(summary().feedback or {}) .. "\n" .. stderrs())
    local s = summary()
    assert.same({ joined = 11, unmatched = 1, duplicate = 0 }, s.feedback)
    local outcomes = 0
    for _, v in ipairs(s.versions) do outcomes = outcomes + v.outcomes end
    assert.equal(11, outcomes)
    wait_landed("predictions")
  end)

  it("loses nothing and counts nothing twice when the consumer dies and an entry comes again", function()
    local before = volume(summary())
    local pids = testing.children(nodes[1].proc.pid)
    pids[#pids + 1] = nodes[1].proc.pid
    -- Node 1 stands still while a victim reads what nodes 2 and 3 send, and dies before XACK.
    os.execute("kill -STOP " .. table.concat(pids, " "))
    predict(2, 15)
    predict(3, 15)
    local dir = testing.tmpdir()
    finally(function() testing.rmrf(dir) end)
    testing.write(dir .. "/victim.lua", [[
      local fs = assert(require("tycho").features.open())
      local s = require("tycho.monitor.log_stream").stream(fs.online_backend)
      assert(s:ensure_group("predictions", "offline"))
      local deadline, got = os.time() + 10, 0
      while got < 1 and os.time() < deadline do
        got = got + #assert(s:read("predictions", "offline", "victim", 100))
        require("luv").sleep(20)
      end
      io.write("read ", got, "\n")
      io.stdout:flush()
      require("luv").sleep(60000)
    ]])
    local vhome = testing.tmpdir()
    finally(function() testing.rmrf(vhome) end)
    fixture.seed_home(vhome)
    local victim = testing.spawn({ "run", dir .. "/victim.lua" }, { env = { "TYCHO_HOME=" .. vhome, "TYCHO_CLUSTER=" .. url } })
    assert(testing.run_until(function() return victim.stdout():find("read [1-9]") end, 15000), victim.stderr())
    victim:kill("sigkill")
    victim:wait(5000)
    -- Node 1 killed -9 (stopped, as a machine that dies), then started again on its home.
    os.execute("kill -9 " .. table.concat(pids, " "))
    nodes[1].proc:wait(5000)
    nodes[1] = serve(1, { "--offline-store" })
    wait_landed("after the restart")
    assert(testing.run_until(function() return volume(summary()) == before + 30 end, 5000),
      "volume " .. volume(summary()) .. ", expected " .. (before + 30))
    -- An entry delivered again (a copy of the first, as a retried XADD would make) changes nothing.
    local key = fs_train.stream.ns .. "log:{predictions}"
    local first = call(key, "XRANGE", key, "-", "+", "COUNT", 1)[1]
    local copy = assert(call(key, "XADD", key, "*", first[2][1], first[2][2]))
    assert(testing.run_until(function()
      local g = call(key, "XINFO", "GROUPS", key)
      for _, info in ipairs(g) do
        local t = {}
        for k = 1, #info, 2 do t[info[k]] = info[k + 1] end
        if t.name == "offline" then return t["last-delivered-id"] == copy and t.pending == 0 end
      end
    end, 10000), stderrs())
    assert.equal(before + 30, volume(summary()))
    assert.equal(count_sent(), landed())
  end)

  it("answers predictions while the cluster is gone, and counts the failed sends", function()
    local failures = metric(2, "tycho_prediction_log_stream_failures_total")
    c:stop()
    local ids = predict(2, 5)
    assert(testing.run_until(function() return metric(2, "tycho_prediction_log_stream_failures_total") > failures end,
      10000), stderrs())
    assert.equal(200, (testing.request(nodes[2].port, "POST", PREDICT, { body = { instances = { { x = 1 } } } })))
    assert.truthy(metric(2, "tycho_prediction_log_stream_queued") >= 5)
    -- Node 2's own log has them, as without a cluster.
    assert.equal(5, logged(homes[2], ids))
  end)
end)
