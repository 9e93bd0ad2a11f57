-- The model registry shared on a Redis Cluster (issue 25, item 4;
-- registry/shared.lua) against a real loopback cluster of 3 masters and
-- 1 replica each: a version registered on home A is listed on home B and
-- loads there (its artifact fetched and verified), homes registering the
-- same model at once get distinct versions, a promotion on A and a
-- rollback on B are in both homes' history in one order, with the home
-- that made each, a request made on A is approved on B, a registration's
-- artifact is sent once however many tries its commit takes, and with the
-- cluster gone a registration is refused while reads use the home's copy.
local tycho = require "tycho"
local testing = require "tycho.testing"
local cluster = require "tycho.testing_redis"
local json = require "tycho.util.json"
local fixture = dofile("tests/lua/fixtures/cluster_nodes.lua")

-- As online_redis_spec: pending without redis-server, failing instead under
-- TYCHO_SERVICE_TESTS=1 (.ci/test).
local describe_cluster = (cluster.available() or os.getenv("TYCHO_SERVICE_TESTS") == "1") and describe or pending

describe_cluster("the model registry shared on a Redis Cluster", function()
  local c, url, dir, a, b
  local homes = {}

  local function open(home)
    if not home then
      home = testing.tmpdir()
      homes[#homes + 1] = home
    end
    return assert(tycho.registry.open { home = home, cluster = url }), home
  end

  local home_a
  setup(function()
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    c = assert(cluster.start { masters = 3, replicas = 1 })
    url = c.url .. "?ns=reg:"
    dir = testing.tmpdir()
    a, home_a = open()
    b = open()
  end)

  teardown(function()
    if c then c:stop() end
    for _, h in ipairs(homes) do testing.rmrf(h) end
    if dir then testing.rmrf(dir) end
  end)

  it("lists on B a version registered on A, and loads it there from the cluster", function()
    local v = assert(a:register("tiny", fixture.plain(0), { description = "first" }))
    assert.equal("1.0.0", v)
    assert.same({ "tiny", "1.0.0", 1 }, { b:list()[1].name, b:list()[1].latest, b:list()[1].versions })
    local meta = assert(b:get("tiny", "1.0.0"))
    assert.same({ "first", a:get("tiny", "1.0.0").sha256 }, { meta.description, meta.sha256 })
    assert.equal(1, #b:versions("tiny"))
    -- B's home has the metadata but not the bytes until it loads the version.
    local has = function(reg) return reg.store:view(function(tx) return tx:get("registry", "artifact/tiny/1.0.0") end) end
    assert.is_nil(has(b))
    local p = assert(b:load("tiny", "1.0.0"))
    assert.equal("1.0.0", p.registry_version)
    assert.equal(meta.sha256, p.sha256)
    assert.equal(has(a), has(b))
    -- B's next version follows A's.
    assert.equal("1.0.1", assert(b:register("tiny", fixture.plain(1))))
    assert.equal("1.0.1", a:get("tiny").version)
  end)

  it("gives homes registering the same model at once distinct versions", function()
    local script = testing.write(dir .. "/register.lua", [[
      local tycho = require "tycho"
      local json = require "tycho.util.json"
      local uv = require "luv"
      local fixture = dofile("tests/lua/fixtures/cluster_nodes.lua")
      local go, shift = arg[1], tonumber(arg[2])
      local reg = assert(tycho.registry.open())
      local pipe = fixture.plain(shift)
      io.write("ready\n")
      io.stdout:flush()
      local function started() local f = io.open(go) if f then f:close() end return f ~= nil end
      while not started() do uv.sleep(1) end
      local out = {}
      for i = 1, 6 do out[i] = assert(reg:register("race", pipe)) end
      io.write(json.encode(out), "\n")
    ]])
    local go = dir .. "/go"
    local procs = {}
    for i = 1, 2 do
      local home = testing.tmpdir()
      homes[#homes + 1] = home
      procs[i] = testing.spawn({ "run", script, go, tostring(i) }, { env = { "TYCHO_HOME=" .. home, "TYCHO_CLUSTER=" .. url } })
    end
    assert.truthy(testing.run_until(function()
      return procs[1].stdout():find("ready") and procs[2].stdout():find("ready")
    end, 15000), procs[1].stderr() .. procs[2].stderr())
    testing.write(go, "")
    local seen, n = {}, 0
    for _, p in ipairs(procs) do
      assert.equal(0, p:wait(30000), p.stderr())
      for _, v in ipairs(json.decode(p.stdout():match("(%b[])"))) do
        assert.is_nil(seen[v], "version " .. v .. " given twice")
        seen[v], n = true, n + 1
      end
    end
    assert.equal(12, n)
    local versions = a:versions("race")
    assert.equal(12, #versions)
    assert.same({ "1.0.0", "1.0.11" }, { versions[1].version, versions[12].version })
  end)

  it("keeps one history on every home: a promotion on A, a rollback on B", function()
    assert(a:promote("tiny", "1.0.0", "production"))
    assert(a:promote("tiny", "1.0.1", "production", { why = "better" }))
    assert.equal("1.0.1", b:get("tiny", "production").version)
    assert.equal("1.0.0", b:rollback("tiny", "production"))
    assert.equal("1.0.0", a:get("tiny", "production").version)
    local ha, hb = assert(a:history("tiny")), assert(b:history("tiny"))
    assert.same(ha, hb)
    local got = {}
    for i, h in ipairs(ha) do got[i] = { h.to, h.why, h.home ~= nil } end
    assert.same({ { "1.0.0", "promote", true }, { "1.0.1", "better", true }, { "1.0.0", "rollback", true } }, got)
    assert.are_not.equal(ha[2].home, ha[3].home)
    assert.matches(b.store.path, ha[3].home, 1, true)
  end)

  it("approves on B a request made on A, under a policy set on B", function()
    assert(b:policy("tiny", "staging", { approval = true }))
    assert.same({ approval = true }, a:policy("tiny", "staging"))
    local ok, msg = a:promote("tiny", "1.0.1", "staging")
    assert.is_nil(ok)
    assert.matches("needs an approval", msg, 1, true)
    local req = assert(a:request("tiny", "1.0.1", "staging", { by = "ana", reason = "ready" }))
    assert.equal("pending", b:requests("tiny")[1].status)
    local done = assert(b:approve("tiny", req.id, { by = "lead" }))
    assert.same({ "approved", "lead" }, { done.status, done.decided_by })
    assert.same({ "approved", "1.0.1" }, { a:requests("tiny")[1].status, a:get("tiny", "staging").version })
    local kinds = {}
    for _, h in ipairs(a:history("tiny")) do kinds[#kinds + 1] = h.kind or h.why end
    assert.same({ "promote", "better", "rollback", "policy", "request", "approve" }, kinds)
    local _, _, code = a:approve("tiny", req.id, { by = "lead" })
    assert.equal("conflict", code)
  end)

  it("stores a registration's artifact on the cluster once, however many tries its commit takes", function()
    local shared = require "tycho.registry.shared"
    local publish = require "tycho.registry.publish"
    local sh = assert(shared.of(a.store, url))
    local pipe = fixture.plain(7)
    local key = publish.artifact_key(sh.conn, select(2, pipe:to_bytes()))
    local sets, lost = 0, false
    local call, commit = sh.cl.call, sh.commit
    sh.cl.call = function(cl, slot, cmd, k, ...)
      if cmd == "SET" and k == key then sets = sets + 1 end
      return call(cl, slot, cmd, k, ...)
    end
    sh.commit = function(self, ...)  -- B commits first: A's first commit is refused, and tried again
      if not lost then
        lost = true
        assert(b:register("once", fixture.plain(8)))
      end
      return commit(self, ...)
    end
    local ok, v = pcall(a.register, a, "once", pipe)
    sh.cl.call, sh.commit = nil, nil
    assert.is_true(ok, v)
    assert.equal("1.0.1", v)
    assert.equal(1, sets)
    assert.equal(2, #b:versions("once"))
    assert.equal("1.0.1", assert(b:load("once", "1.0.1")).registry_version)
  end)

  it("refuses registrations when the cluster is gone, and reads the home's copy", function()
    c:stop()
    c = nil
    local v, err, code = a:register("tiny", fixture.plain(3))
    assert.is_nil(v)
    assert.equal("unavailable", code, err)
    local _, _, pcode = b:promote("tiny", "1.0.1", "production")
    assert.equal("unavailable", pcode)
    assert.equal("1.0.1", b:get("tiny").version)
    assert.equal(3, #b:history("tiny") - 3)
    assert.equal("1.0.0", b:get("tiny", "production").version)
    assert.equal("1.0.1", assert(b:load("tiny", "1.0.1")).registry_version)
    -- A home opened afresh reads its copy too.
    local again = assert(tycho.registry.open { home = home_a, cluster = url })
    assert.equal(12, #again:versions("race"))
  end)
end)
