-- The push stream (issue 25, item 2) on a real loopback Redis Cluster:
-- node A (`tycho serve`) accepts pushes, writes them online and appends
-- them to the view's stream, answering once a replica holds the entry;
-- node B (`tycho serve --offline-store`, a home of its own) lands them in
-- its offline store exactly once, reclaims what a consumer killed before
-- XACK left, and a redelivered entry changes nothing.
local tycho = require "tycho"
local testing = require "tycho.testing"
local cluster = require "tycho.testing_redis"
local json = require "tycho.util.json"
local uv = require "luv"

-- As online_redis_spec: pending without redis-server, failing instead under
-- TYCHO_SERVICE_TESTS=1 (.ci/test).
local describe_cluster = (cluster.available() or os.getenv("TYCHO_SERVICE_TESTS") == "1") and describe or pending

describe_cluster("the push stream on a Redis Cluster", function()
  local c, url, dir, node_a, node_b
  local fs = {}  -- this process's feature store on each home (a, b, c, v)
  local N = 60    -- single-row pushes timed, with the stream and without
  local homes = {}

  -- A home on the cluster: the catalog is the cluster's (defined on a, in
  -- setup), which every home opened after copies.
  local function open(name)
    homes[name] = testing.tmpdir()
    fs[name] = assert(tycho.features.open { home = homes[name], cluster = url })
  end

  local function serve(home, extra)
    return testing.serve(dir .. "/app.lua", extra, { env = { "TYCHO_HOME=" .. home, "TYCHO_CLUSTER=" .. url } })
  end

  local function call(key, ...)
    local cl = fs.a.stream.cl
    return cl:call(cl:slot(key), ...)
  end

  local function push(body)
    local start = uv.hrtime()
    local status, _, _, doc = testing.request(node_a.port, "POST", "/push", { body = body, timeout = 5000 })
    return status, doc, tonumber(uv.hrtime() - start) / 1e6
  end

  local function offline_rows(name, view)
    local out = {}
    local ex = fs[name]:export(view)
    for i = 1, ex:nrows() do
      local r = ex:row(i)
      out[r.user_id] = r
    end
    return out, ex:nrows()
  end

  local function pending(view, group)
    local key = fs.a.stream:key(view)
    local r = call(key, "XPENDING", key, group or "offline")
    return r[1], r[4]
  end

  -- The port of the replica of the master that holds view's stream.
  local function replica_of_stream(view)
    local master = c:master_of_slot(fs.a.stream.cl:slot(fs.a.stream:key(view)))
    return tonumber(c:cli(master, "INFO replication"):match("slave0:ip=[^,]+,port=(%d+)")), master
  end

  setup(function()
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    c = assert(cluster.start { masters = 3, replicas = 1 })
    url = c.url .. "?wait_ms=300&claim_idle_ms=1000"
    dir = testing.tmpdir()
    testing.write(dir .. "/app.lua", 'return require("tycho").app()\n')
    open("a")
    assert(fs.a:entity { name = "user", join_key = "user_id" })
    assert(fs.a:feature_view { name = "clicks", entity = "user", schema = { n = "int", score = "float" } })
    assert(fs.a:feature_view { name = "k", entity = "user", schema = { hits = "int" } })
    for _, name in ipairs { "b", "c", "v" } do open(name) end
    -- Group "hold" never reads: while it exists nothing is trimmed, so
    -- entries can be delivered again to group "again" (home c).
    for _, g in ipairs { "hold", "again" } do assert(fs.c.stream:ensure_group("clicks", g)) end
    node_a = serve(homes.a)
    node_b = serve(homes.b, { "--offline-store" })
  end)

  teardown(function()
    for _, n in ipairs { node_a, node_b } do if n then n:stop() end end
    if c then c:stop() end
    for _, h in pairs(homes) do testing.rmrf(h) end
    if dir then testing.rmrf(dir) end
  end)

  it("answers a push once a replica holds its entry, and refuses a bad row alone", function()
    local status, doc = push { push_source_name = "clicks", to = "online_and_offline",
                               df = { user_id = { "u1", "u2", "u3" }, event_time = { 1000, 2000, 3000 },
                                      n = { 1, "x", 3 }, score = { 0.5, 0.25, 1 / 3 } } }
    assert.equal(200, status, json.encode(doc))
    assert.same({ 2, 1, 2 }, { doc.landed, doc.rejected, doc.issues[1].row })
    assert.matches("feature 'n'", doc.issues[1].reason, 1, true)
    -- Its replica has the entry as the answer arrives (read on the replica itself).
    local key = fs.a.stream:key("clicks")
    local replica = replica_of_stream("clicks")
    local p = io.popen(string.format("printf 'READONLY\\nXLEN %s\\n' | redis-cli -p %d", key, replica))
    local xlen = p:read("*a")
    p:close()
    assert.matches("^OK\n1\n", xlen)
    -- Latency of a push over HTTP (a connection each): online and the
    -- stream's XADD and WAIT, against online only.
    local took = { stream = {}, online = {} }
    for i = 1, N do
      for kind, to in pairs { stream = "online_and_offline", online = "online" } do
        local st, d, ms = push { push_source_name = "clicks", to = to,
                                 df = { user_id = { "p" .. i }, event_time = { 5000 + i }, n = { i }, score = { i / 7 } } }
        assert.equal(200, st, json.encode(d))
        took[kind][i] = ms
      end
    end
    for _, kind in ipairs { "stream", "online" } do
      table.sort(took[kind])
      print(string.format("\n  POST /push (%s): median %.2f ms, p95 %.2f ms", kind == "stream"
        and "online and stream, answered after WAIT 1" or "online only", took[kind][N / 2], took[kind][N - 2]))
    end
  end)

  it("lands every accepted row in the offline home exactly once", function()
    local want = 2 + N
    assert.truthy(testing.run_until(function() return select(2, offline_rows("b", "clicks")) >= want end, 10000),
      "B's offline store has " .. select(2, offline_rows("b", "clicks")) .. " rows: " .. node_b.proc.stderr())
    assert.truthy(testing.run_until(function() return pending("clicks") == 0 end, 5000))
    local rows, n = offline_rows("b", "clicks")
    assert.equal(want, n)
    assert.is_nil(rows.u2)  -- the refused row went nowhere but A's quarantine
    -- Exactly the values A wrote online (a float's every bit).
    local online = fs.a:online({ "clicks:score", "clicks:n" }, { user_id = { "u1", "u3", "p7" } })
    for i, id in ipairs { "u1", "u3", "p7" } do
      assert.equal(online.results[2].values[i], rows[id].score)
      assert.equal(online.results[3].values[i], rows[id].n)
    end
    assert.equal(2 + N, fs.b:quality("clicks").rows)
  end)

  it("applies a redelivered entry as unchanged", function()
    local start = uv.hrtime()
    local first = assert(fs.c:drain_stream("clicks", { group = "again" }))
    local secs = tonumber(uv.hrtime() - start) / 1e9
    assert.same({ N + 1, 0, N + 2, N + 2, 0, 0 }, { first.entries, first.claimed, first.rows_read, first.landed,
                                           first.unchanged, first.rejected })
    print(string.format("\n  drain of %d entries (%d rows) into an empty home: %.1f ms", first.entries,
      first.rows_read, secs * 1e3))
    -- Every entry delivered again (the group rewound), drained by the CLI: nothing changes.
    local key = fs.c.stream:key("clicks")
    assert.equal("OK", call(key, "XGROUP", "SETID", key, "again", "0"))
    local code, out, err = testing.run({ "features", "drain", "clicks", "--group", "again", "--json" },
      { env = { "TYCHO_HOME=" .. homes.c, "TYCHO_CLUSTER=" .. url } })
    assert.equal(0, code, err)
    local again = json.decode(out)
    assert.same({ N + 1, N + 2, 0, N + 2 }, { again.entries, again.rows_read, again.landed, again.unchanged })
    assert.equal(N + 2, fs.c:quality("clicks").rows)
    -- Once "hold" is gone, what every group acknowledged leaves the stream.
    assert.equal(1, call(key, "XGROUP", "DESTROY", key, "hold"))
    assert(fs.c.stream:trim("clicks"))
    assert.truthy(testing.run_until(function() return call(key, "XLEN", key) == 0 end, 5000))
  end)

  it("reclaims the entries of a consumer killed before XACK, and lands them once", function()
    -- B's node stands still (SIGSTOP) while the victim reads k's entry first.
    local b_pids = testing.children(node_b.proc.pid)
    b_pids[#b_pids + 1] = node_b.proc.pid
    b_pids = table.concat(b_pids, " ")
    os.execute("kill -STOP " .. b_pids)
    finally(function() os.execute("kill -CONT " .. b_pids) end)
    local status, doc = push { push_source_name = "k", to = "offline", df = { user_id = { "w" }, event_time = { 7 },
                                                                            hits = { 70 } } }
    assert.equal(200, status, json.encode(doc))
    testing.write(dir .. "/victim.lua", [[
      local fs = assert(require("tycho").features.open())
      assert(fs.stream:ensure_group("k", "offline"))
      local got = assert(fs.stream:read("k", "offline", "victim", 10))
      io.write("read ", #got, "\n")
      io.stdout:flush()
      require("luv").sleep(60000)
    ]])
    local victim = testing.spawn({ "run", dir .. "/victim.lua" },
      { env = { "TYCHO_HOME=" .. homes.v, "TYCHO_CLUSTER=" .. url } })
    assert.truthy(testing.run_until(function() return victim.stdout():find("read 1", 1, true) end, 10000),
      victim.stderr())
    victim:kill("sigkill")
    victim:wait(5000)
    local n, owners = pending("k")
    assert.same({ 1, "victim" }, { n, owners[1][1] })
    -- B, running again, claims the entry once it has been idle 1 s, lands it, acknowledges it.
    os.execute("kill -CONT " .. b_pids)
    assert.truthy(testing.run_until(function() return pending("k") == 0 end, 10000), node_b.proc.stderr())
    local rows, count = offline_rows("b", "k")
    assert.same({ 1, 70 }, { count, rows.w.hits })
    assert.equal(1, fs.b:quality("k").rows)
  end)

  it("answers 503 when no replica confirms within wait_ms, and the push sent again lands once", function()
    local replica = replica_of_stream("clicks")
    local body = { push_source_name = "clicks", to = "online_and_offline",
                   df = { user_id = { "late" }, event_time = { 9000 }, n = { 9 }, score = { 0.75 } } }
    os.execute("kill -STOP " .. c.pids[replica])
    local ok, status, doc, ms = pcall(push, body)
    os.execute("kill -CONT " .. c.pids[replica])
    assert(ok, status)
    assert.equal(503, status, json.encode(doc))
    assert.matches("no replica confirmed", doc.error.message, 1, true)
    print(string.format("\n  push refused after %.0f ms (wait_ms 300)", ms))
    -- The online write stands.
    local _, _, _, got = testing.request(node_a.port, "POST", "/get-online-features",
      { body = { features = { "clicks:n" }, entities = { user_id = { "late" } } } })
    assert.equal(9, got.results[2].values[1])
    -- Sent again once the replica is back: 200, and B holds the row once.
    assert.truthy(testing.run_until(function() return (push(body)) == 200 end, 5000))
    assert.truthy(testing.run_until(function() return offline_rows("b", "clicks").late ~= nil end, 10000))
    assert.truthy(testing.run_until(function() return pending("clicks") == 0 end, 5000))
    assert.equal(2 + N + 1, select(2, offline_rows("b", "clicks")))
  end)
end)
