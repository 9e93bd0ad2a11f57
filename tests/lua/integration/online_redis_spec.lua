-- The online store on a Redis Cluster (features/online_redis.lua) against a
-- real loopback cluster of 3 masters and 3 replicas: the online-store
-- behaviours answer exactly as with the home's LMDB, keys spread over every
-- master, MOVED and ASK are followed, and after kill -9 of a master its
-- replica takes over and reads and writes succeed again. Reads go both
-- ways: blocking, as a script's, and waiting on the loop, as a serving
-- worker's request's (tycho.core.suspend, redis.read).
local tycho = require "tycho"
local testing = require "tycho.testing"
local cluster = require "tycho.testing_redis"
local redis = require "tycho.core.redis"
local suspend = require "tycho.core.suspend"
local features, frame, timeutil = tycho.features, tycho.frame, require "tycho.timeutil"

-- .ci/test installs redis-server and sets TYCHO_SERVICE_TESTS: there a
-- missing server fails the spec instead of leaving it pending.
local describe_cluster = (cluster.available() or os.getenv("TYCHO_SERVICE_TESTS") == "1") and describe or pending

-- fn() as a serving worker's request runs: in a coroutine whose reads of
-- the cluster wait on the loop, turned here until it ends. Its results.
local function as_request(fn)
  local out
  local done, ok, a, b = suspend.run(function() return pcall(fn) end, function(...) out = { ... } end)
  if done then out = { ok, a, b } else assert(testing.run_until(function() return out ~= nil end, 10000)) end
  if not out[1] then error(out[2], 0) end
  return out[2], out[3]
end

describe_cluster("online store on a Redis Cluster", function()
  local c, n_homes, homes = nil, 0, {}

  setup(function()
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    c = assert(cluster.start { masters = 3, replicas = 1, node_timeout = 2000 })
  end)
  teardown(function()
    if c then c:stop() end
    for _, h in ipairs(homes) do testing.rmrf(h) end
  end)

  -- A feature store on a fresh home: on the cluster (under a key prefix of
  -- its own, so that each starts from an empty catalog and online store) or
  -- on LMDB.
  local function open(on_cluster, extra)
    n_homes = n_homes + 1
    local home = testing.tmpdir()
    homes[#homes + 1] = home
    local url = on_cluster and (c.url .. "?ns=t" .. n_homes .. ":" .. (extra or "")) or false
    local fs = assert(features.open { home = home, cluster = url })
    assert(fs:entity { name = "user", join_key = "user_id" })
    assert(fs:feature_view { name = "o", entity = "user", ttl = "1h", schema = { x = "int", note = "string" } })
    return fs
  end

  -- Runs scenario(fs) on LMDB and on the cluster; both must return the same.
  local function both(scenario)
    local lmdb, red = open(false), open(true)
    assert.is_nil(lmdb.online_backend)
    assert.truthy(red.online_backend)
    local want = scenario(lmdb)
    local got = scenario(red)
    assert.same(want, got)
    return got
  end

  describe("answers as LMDB does", function()
    it("values, statuses (PRESENT, OUTSIDE_MAX_AGE, NULL_VALUE, NOT_FOUND) and event times", function()
      local now = math.floor(timeutil.now() / 1e6)
      local res = both(function(fs)
        assert(fs:push("o", { user_id = { "fresh", "stale", "empty" }, event_time = { now - 10, now - 7200, now },
                              x = { 1, 2, nil }, note = { "n", "m", nil } }))
        return assert(fs:online({ "o:x", "o:note" }, { user_id = { "fresh", "stale", "empty", "ghost" } },
                                { now = now * 1e6 }))
      end)
      assert.same({ "user_id", "o:x", "o:note" }, res.metadata.feature_names)
      assert.same({ "PRESENT", "OUTSIDE_MAX_AGE", "NULL_VALUE", "NOT_FOUND" }, res.results[2].statuses)
      assert.same({ 1, 2 }, { res.results[2].values[1], res.results[2].values[2] })
      assert.equal("n", res.results[3].values[1])
      assert.equal(timeutil.format((now - 10) * 1e6), res.results[2].event_timestamps[1])
    end)

    it("never replaces a newer value with an older one, by any path (push, ingest, materialize)", function()
      both(function(fs)
        local out = {}
        assert(fs:push("o", { user_id = { "u" }, event_time = { 2000 }, x = { 2 } }, "online_and_offline"))
        local r = assert(fs:push("o", { user_id = { "u" }, event_time = { 1000 }, x = { 1 } }, "online_and_offline"))
        out.older_push_online_updates = r.online_updates
        assert(fs:ingest("o", frame.new({ user_id = { "u" }, event_time = { 1500 }, x = { 15 } })))
        out.materialized = fs:materialize("o")
        out.after = fs:online({ "o:x" }, { user_id = { "u" } }, { now = 2000e6 }).results[2].values[1]
        r = assert(fs:push("o", { user_id = { "u" }, event_time = { 2000 }, x = { 2 } }))
        out.same_again = { r.landed, r.unchanged }
        assert(fs:push("o", { user_id = { "u" }, event_time = { 3000 }, x = { 3 } }))
        out.newer = fs:online({ "o:x" }, { user_id = { "u" } }, { now = 3000e6 }).results[2].values[1]
        -- A push that leaves a feature out keeps the entity's value for it.
        assert(fs:push("o", { { user_id = "u", event_time = 2500, note = "old" }, { user_id = "u", event_time = 4000,
                                                                                  note = "kept x" } }))
        local res = fs:online({ "o:x", "o:note" }, { user_id = { "u" } }, { now = 4000e6 })
        out.partial = { res.results[2].values[1], res.results[3].values[1] }
        return out
      end)
    end)

    it("materializes offline history into the online store", function()
      both(function(fs)
        local out = {}
        assert(fs:ingest("o", frame.new({ user_id = { "a", "a", "b" }, event_time = { 10, 20, 30 }, x = { 1, 2, 3 } }),
          { to = "offline" }))
        out[1] = fs:online({ "o:x" }, { user_id = { "a" } }).results[2].statuses[1]
        out[2] = fs:materialize("o", 0, 25)
        out[3] = fs:online({ "o:x" }, { user_id = { "a", "b" } }, { now = 30e6 }).results[2]
        out[4] = fs:materialize("o")
        out[5] = fs:online({ "o:x" }, { user_id = { "b" } }, { now = 30e6 }).results[2]
        return out
      end)
    end)

    it("serves the prepared reader, and views of several entities in one call", function()
      both(function(fs)
        assert(fs:entity { name = "shop", join_key = "shop_id" })
        assert(fs:feature_view { name = "s", entity = "shop", schema = { y = "int" } })
        assert(fs:feature_view { name = "o2", entity = "user", schema = { z = "float" } })
        assert(fs:push("o", { user_id = { "a", "b" }, event_time = { 10, 20 }, x = { 1, 2 }, note = { "n", "m" } }))
        assert(fs:push("o2", { user_id = { "a" }, event_time = { 15 }, z = { 0.5 } }))
        assert(fs:push("s", { shop_id = { "s1", "s2" }, event_time = { 5, 6 }, y = { 7, 8 } }))
        local res = assert(fs:online({ "o:x", "o2:z", "s:y" }, { user_id = { "a", "b", "c" }, shop_id = { "s1", "s2", "s9" } },
                                     { now = 30e6 }))
        local reader = assert(fs:reader({ "o:note", "o:x" }))
        local values, t = reader:get("b")
        return { res, { values[1], values[2], t }, reader:get("nobody") == nil }
      end)
    end)
  end)

  it("expires an entity's hash after its ttl", function()
    local fs = open(true)
    local now = math.floor(timeutil.now() / 1e6)
    assert(fs:push("o", { user_id = { "e" }, event_time = { now }, x = { 1 } }))
    local be = fs.online_backend
    local key = be:key(fs:view("o"), "e")
    local pttl = be.cl:call(be.cl:slot(key), "PTTL", key)
    -- Twice the view's ttl (1 h) past the event: stale values still read
    -- OUTSIDE_MAX_AGE for an hour, as with LMDB, then the entity is gone.
    assert.is_true(pttl > 7000e3 and pttl <= 7200e3, "PTTL " .. tostring(pttl))
    assert(fs:feature_view { name = "forever", entity = "user", schema = { k = "int" } })
    assert(fs:push("forever", { user_id = { "e" }, event_time = { now }, k = { 1 } }))
    assert.equal(-1, be.cl:call(be.cl:slot(key), "PTTL", key), "a view without ttl makes the hash persistent")
  end)

  it("spreads entities over every master, reading each call in one round trip per node", function()
    local fs = open(true)
    local ids, xs, ts = {}, {}, {}
    for i = 1, 600 do ids[i], xs[i], ts[i] = "user-" .. i, i, 1000 + i end
    local r = assert(fs:push("o", { user_id = ids, event_time = ts, x = xs }))
    assert.equal(600, r.landed)
    local masters = c:masters()
    assert.equal(3, #masters)
    for _, p in ipairs(masters) do
      local n = tonumber(c:cli(p, "DBSIZE"):match("%d+"))
      assert.is_true(n > 100, "master " .. p .. " holds " .. tostring(n) .. " keys")
    end
    local res = assert(fs:online({ "o:x" }, { user_id = ids }, { now = 2000e6 }))
    assert.same(xs, res.results[2].values)
    -- Materialize writes in pipelined batches too.
    assert(fs:ingest("o", frame.new({ user_id = ids, event_time = ts, x = xs }), { to = "offline" }))
    assert.equal(0, fs:materialize("o"))
  end)

  it("follows ASK during a slot migration and MOVED after it", function()
    local fs = open(true)
    assert(fs:push("o", { user_id = { "mover" }, event_time = { 100 }, x = { 41 } }))
    local be = fs.online_backend
    local key = be:key(fs:view("o"), "mover")
    local slot = redis.slot(key)
    local src = c:master_of_slot(slot)
    local dst
    for _, p in ipairs(c:masters()) do if p ~= src then dst = p break end end
    local function id(p) return (c:cli(p, "CLUSTER MYID"):gsub("%s+", "")) end
    local src_id, dst_id = id(src), id(dst)
    -- The slot half-migrated: the key already on dst, the slot still src's.
    c:cli(dst, "CLUSTER SETSLOT " .. slot .. " IMPORTING " .. src_id)
    c:cli(src, "CLUSTER SETSLOT " .. slot .. " MIGRATING " .. dst_id)
    local out = c:cli(src, string.format("MIGRATE 127.0.0.1 %d '' 0 5000 KEYS '%s'", dst, key))
    assert.matches("OK", out)
    local before = be.cl:stats()
    local res = assert(fs:online({ "o:x" }, { user_id = { "mover" } }, { now = 200e6 }))
    assert.equal(41, res.results[2].values[1])
    local asked, waited = be.cl:stats().ask, be.cl:stats().waited
    res = assert(as_request(function() return fs:online({ "o:x" }, { user_id = { "mover" } }, { now = 200e6 }) end))
    assert.equal(41, res.results[2].values[1])
    assert.same({ true, waited + 1 }, { be.cl:stats().ask > asked, be.cl:stats().waited }, "a waiting read followed an ASK")
    assert(fs:push("o", { user_id = { "mover" }, event_time = { 150 }, x = { 42 } }))
    assert.is_true(be.cl:stats().ask > before.ask, "an ASK was followed")
    -- The migration finished: every node learns the new owner.
    for _, p in ipairs(c:masters()) do c:cli(p, "CLUSTER SETSLOT " .. slot .. " NODE " .. dst_id) end
    assert(cluster.wait(function() return c:master_of_slot(slot) == dst end, 10, "slot moved"))
    res = assert(as_request(function() return fs:online({ "o:x" }, { user_id = { "mover" } }, { now = 200e6 }) end))
    assert.equal(42, res.results[2].values[1])
    assert.is_true(be.cl:stats().moved > before.moved, "a waiting read followed a MOVED")
    res = assert(fs:online({ "o:x" }, { user_id = { "mover" } }, { now = 200e6 }))
    assert.equal(42, res.results[2].values[1])
    assert.equal("127.0.0.1:" .. dst, be.cl:node_of(slot))
  end)

  it("reads and writes again after kill -9 of a master, once its replica took over", function()
    local fs = open(true, "retry_ms=1500&timeout_ms=500")
    local ids, xs = {}, {}
    for i = 1, 60 do ids[i], xs[i] = "f-" .. i, i end
    assert(fs:push("o", { user_id = ids, event_time = xs, x = xs }))
    local be = fs.online_backend
    local victim = c:master_of_slot(redis.slot(be:key(fs:view("o"), "f-1")))
    c:kill(victim)
    local t0 = require("luv").hrtime()
    -- Until the replica is promoted the victim's entities read UNAVAILABLE
    -- (never a hang: each call ends within retry_ms); then everything reads.
    -- The reads wait on the loop: their client finds the new master itself.
    local waited = be.cl:stats().waited
    local res = assert(cluster.wait(function()
      local r = assert(as_request(function() return fs:online({ "o:x" }, { user_id = ids }, { now = 100e6 }) end))
      for i = 1, #ids do
        if r.results[2].statuses[i] ~= "PRESENT" then
          assert.equal("UNAVAILABLE", r.results[2].statuses[i])
          return false
        end
      end
      return r
    end, 20, "reads after failover"))
    assert.same(xs, res.results[2].values)
    assert.is_true(be.cl:stats().waited > waited)
    local took = (require("luv").hrtime() - t0) / 1e9
    assert.is_true(took < 20, "failover took " .. took .. " s")
    local r = assert(fs:push("o", { user_id = ids, event_time = xs, x = xs }))
    assert.equal(0, r.landed)  -- the same values: unchanged
    r = assert(fs:push("o", { user_id = { "f-1" }, event_time = { 500 }, x = { 500 } }))
    assert.equal(1, r.online_updates)
    assert.equal(500, fs:online({ "o:x" }, { user_id = { "f-1" } }, { now = 600e6 }).results[2].values[1])
    assert.is_true(be.cl:stats().refreshes > 1)
  end)
end)
