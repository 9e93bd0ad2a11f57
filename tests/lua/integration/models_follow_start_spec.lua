-- A serving node that starts during a promotion, on a real loopback Redis
-- Cluster: home A has committed the alias move on the shared registry
-- (registry/shared.lua) and not yet announced it (registry/publish.lua),
-- which is when node B's worker makes its first poll (serve/follow.lua,
-- before it listens). The announcement B reads is the earlier one: it must
-- not move the shared alias back to it, or A announces, and every node
-- serves, the version the promotion replaced.
local tycho = require "tycho"
local testing = require "tycho.testing"
local cluster = require "tycho.testing_redis"
local publish = require "tycho.registry.publish"
local fixture = dofile("tests/lua/fixtures/cluster_nodes.lua")

-- As online_redis_spec: pending without redis-server, failing instead under
-- TYCHO_SERVICE_TESTS=1 (.ci/test).
local describe_cluster = (cluster.available() or os.getenv("TYCHO_SERVICE_TESTS") == "1") and describe or pending

describe_cluster("a serving node started during a promotion", function()
  local c, home_a, home_b, reg, node, port

  -- The version B answers with, or "status N".
  local function answer()
    local status, _, _, doc = testing.request(port, "POST", "/v1/models/tiny:predict",
      { body = { instances = { { x = 3 } } }, timeout = 1000 })
    return status == 200 and doc.model_version or ("status " .. tostring(status))
  end

  setup(function()
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    c = assert(cluster.start { masters = 3, replicas = 1 })
    home_a, home_b = testing.tmpdir(), testing.tmpdir()
    reg = assert(tycho.registry.open { home = home_a, cluster = c.url })
  end)

  teardown(function()
    if node and node.code == nil then
      node:kill("sigterm")
      node:wait(15000)
    end
    if c then c:stop() end
    if reg then reg.store:close() end
    for _, h in ipairs { home_a, home_b } do if h then testing.rmrf(h) end end
  end)

  it("serves the promoted version, and leaves the shared alias where the promotion put it", function()
    local v1 = assert(reg:register("tiny", fixture.plain(0)))
    assert(reg:promote("tiny", v1, "production"))  -- committed and announced
    local v2 = assert(reg:register("tiny", fixture.plain(1)))
    -- A's promotion of v2, held between its commit and its announcement.
    reg.publish = function() return false end
    assert(reg:promote("tiny", v2, "production"))
    reg.publish = nil
    local conn = assert(publish.connect(c.url))
    assert.equal(v1, assert(publish.moves(conn, { { model = "tiny", alias = "production" } }))[1].version)
    -- B starts now: its worker's first poll reads v1's announcement.
    node, port = fixture.spawn_node(home_b, c.url, { "--model", "tiny@production" }, 1)
    fixture.wait_ready(node, port, "B", 15000)
    assert.truthy(testing.run_until(function() return answer():match("^%d") ~= nil end, 5000),
      "B answers " .. answer() .. "; stderr: " .. node.stderr())
    assert.equal(v2, reg:get("tiny", "production").version, "B moved the shared alias back")
    for _, h in ipairs(reg:history("tiny")) do assert.are_not.equal("cluster", h.why) end
    -- A's announcement goes out: where the alias points, which B serves.
    assert(reg:publish("tiny", "production"))
    assert.equal(v2, assert(publish.moves(conn, { { model = "tiny", alias = "production" } }))[1].version)
    assert.truthy(testing.run_until(function() return answer() == v2 end, 5000),
      "B answers " .. answer() .. "; stderr: " .. node.stderr())
  end)
end)
