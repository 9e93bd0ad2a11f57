-- Issue 23.4: a view's expectations raise alerts like the monitor's: the
-- first worker checks them on a timer, runs the action when they stop
-- holding, and /metrics shows the alert firing.
local testing = require "tycho.testing"

describe("an alert on a feature view's expectations", function()
  local home, srv
  setup(function()
    home = testing.tmpdir()
    local script = testing.write(home .. "/define.lua", [[
      local tycho = require "tycho"
      local fs = assert(tycho.features.open())
      fs:entity { name = "driver", join_key = "driver_id" }
      assert(fs:feature_view { name = "drivers", entity = "driver", schema = { trips = "int" },
                               expect = { max_lag = "1h" } })
      local old = os.time() - 2 * 3600
      assert(fs:ingest("drivers", tycho.frame.new({ driver_id = { "d1" }, event_time = { old }, trips = { 3 } })))]])
    local code, _, err = testing.run({ "--home", home, "run", script })
    assert(code == 0, err)
    srv = testing.serve("tests/lua/fixtures/quality_app.lua", {}, { env = { "TYCHO_HOME=" .. home } })
  end)
  teardown(function()
    if srv then srv:stop() end
    testing.rmrf(home)
  end)

  it("fires when the newest event is older than max_lag, once, and shows in /metrics", function()
    assert.truthy(testing.run_until(function() return srv.proc.stderr():find("ALERT drivers: freshness", 1, true) end,
      5000), srv.proc.stderr())
    local _, _, text = testing.request(srv.port, "GET", "/metrics")
    assert.matches('tycho_alert_firing{alert="drivers_quality",view="drivers"} 1', text, 1, true)
    local _, n = srv.proc.stderr():gsub("ALERT drivers", "")
    assert.equal(1, n)  -- again only after it was false in between
  end)
end)
