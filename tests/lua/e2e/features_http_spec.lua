-- Feast's feature-server routes on a real `tycho serve`.
local testing = require "tycho.testing"
local json = require "tycho.json"

describe("feature server over HTTP", function()
  local home, srv
  setup(function()
    home = testing.tmpdir()
    local script = testing.write(home .. "/define.lua", [[
      local fs = assert(require("tycho").features.open())
      fs:entity { name = "driver", join_key = "driver_id" }
      assert(fs:feature_view { name = "driver_stats", entity = "driver",
        schema = { trips = { type = "int", min = 0 }, rating = "float" } })]])
    local code, _, err = testing.run({ "--home", home, "run", script })
    assert(code == 0, err)
    srv = testing.serve("tests/lua/fixtures/app.lua", {}, { env = { "TYCHO_HOME=" .. home } })
  end)
  teardown(function()
    if srv then srv:stop() end
    testing.rmrf(home)
  end)

  it("pushes rows and reads them back", function()
    local now = os.time()
    local status, _, _, doc = testing.request(srv.port, "POST", "/push", { body = {
      push_source_name = "driver_stats", to = "online_and_offline",
      df = { driver_id = { 1001, 1002, 1003 }, event_time = { now, now, now }, trips = { 5, -1, 7 },
             rating = { 4.5, 4.9, json.null } } } })
    assert.equal(200, status)
    assert.same({ 2, 1 }, { doc.landed, doc.rejected })
    assert.matches("below min", doc.issues[1].reason)
    status, _, _, doc = testing.request(srv.port, "POST", "/get-online-features", { body = {
      features = { "driver_stats:trips", "driver_stats:rating" }, entities = { driver_id = { 1001, 1002, 1003 } } } })
    assert.equal(200, status)
    assert.same({ "driver_id", "trips", "rating" }, doc.metadata.feature_names)
    assert.same({ 5, json.null, 7 }, doc.results[2].values)
    assert.same({ "PRESENT", "NOT_FOUND", "PRESENT" }, doc.results[2].statuses)
    assert.same({ "PRESENT", "NOT_FOUND", "NULL_VALUE" }, doc.results[3].statuses)
  end)

  it("answers no entity keys with empty lists, [] as Feast writes them", function()
    local status, _, body = testing.request(srv.port, "POST", "/get-online-features",
      { body = '{"features":["driver_stats:trips"],"entities":{"driver_id":[]}}' })
    assert.equal(200, status)
    local doc = json.decode(body)
    assert.same({ "driver_id", "trips" }, doc.metadata.feature_names)
    assert.equal(2, #doc.results)
    assert.is_nil(body:find("{}", 1, true))
    assert.equal(6, select(2, body:gsub("%[%]", "")))
  end)

  it("serves each view's data quality and exports freshness and missing ratios (issue 23.4)", function()
    local status, _, _, doc = testing.request(srv.port, "GET", "/v1/features/driver_stats")
    assert.equal(200, status)
    assert.equal("driver_stats", doc.name)
    assert.is_true(doc.quality.rows >= 2)
    assert.equal(404, (testing.request(srv.port, "GET", "/v1/features/nope")))
    status, _, _, doc = testing.request(srv.port, "GET", "/v1/features")
    assert.equal(200, status)
    assert.equal("driver_stats", doc.views[1].name)
    local _, _, text = testing.request(srv.port, "GET", "/metrics")
    assert.matches('tycho_feature_freshness_seconds{view="driver_stats"} %d', text)
    assert.matches('tycho_feature_missing_ratio{view="driver_stats",feature="rating"} 0.5', text, 1, true)
  end)

  it("answers unknown views and malformed requests with JSON errors", function()
    local status, _, _, doc = testing.request(srv.port, "POST", "/push",
      { body = { push_source_name = "nope", df = { driver_id = { 1 } } } })
    assert.equal(404, status)
    assert.matches("unknown feature view", doc.error.message)
    status, _, _, doc = testing.request(srv.port, "POST", "/get-online-features", { body = { features = "x" } })
    assert.equal(400, status)
    assert.equal("bad_request", doc.error.code)
    -- A feature the view does not have is as absent as a view.
    status, _, _, doc = testing.request(srv.port, "POST", "/get-online-features",
      { body = { features = { "driver_stats:nope" }, entities = { driver_id = { 1 } } } })
    assert.equal(404, status)
    assert.equal("not_found", doc.error.code)
    status, _, _, doc = testing.request(srv.port, "POST", "/get-online-features",
      { body = { features = { "no_colon" }, entities = { driver_id = { 1 } } } })
    assert.equal(400, status)
    assert.equal("invalid", doc.error.code)
  end)

  it("refuses a 10 MB push with 413 and keeps serving", function()
    local big = '{"push_source_name":"driver_stats","df":{"driver_id":[' .. string.rep("1,", 5 * 1024 * 1024) .. '1]}}'
    local status = testing.request(srv.port, "POST", "/push", { body = big, timeout = 10000 })
    assert.equal(413, status)
    assert.equal(200, (testing.request(srv.port, "GET", "/v2/health/ready")))
  end)
end)
