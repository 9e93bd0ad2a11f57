-- Regression: serving workers survive hosted versions reloading under
-- traffic. A LuaJIT bug in stitched traces (Debian's 2022 snapshot, GC64)
-- crashed a worker here about every other round, until json.lua was kept
-- out of traces. Tycho now builds on OpenResty's maintained LuaJIT 2.1
-- branch (libluajit2-5.1-dev) with json compiled again; this spec passed
-- 10 runs in a row on it (and on the old snapshot) before that was undone.
local testing = require "tycho.testing"

describe("versions reloaded under traffic", function()
  local home, srv
  setup(function()
    home = testing.tmpdir()
    local code, _, err = testing.run({ "--home", home, "run", "recipes/spam-filter/train.lua", "--quick" },
      { timeout = 120000 })
    assert(code == 0, err)
    srv = testing.serve("tests/lua/fixtures/reload_app.lua", { "--workers", "2" }, { env = { "TYCHO_HOME=" .. home } })
  end)
  teardown(function()
    if srv then srv:stop() end
    testing.rmrf(home)
  end)

  it("answers every request while production moves, and no worker dies", function()
    local promote = testing.write(home .. "/promote.lua", [[
      local reg = assert(require("tycho").registry.open())
      for _ = 1, 6 do
        for _, name in ipairs { "spam", "spam_lr" } do
          local v = assert(reg:register(name, assert(reg:load(name, "production"))))
          assert(reg:promote(name, v, "production", { gates = { schema = false } }))
        end
        require("luv").sleep(250)
      end]])
    local mover = testing.spawn({ "--home", home, "run", promote })
    local statuses, n = {}, 0
    local body = { instances = { { email_id = "email-00042" }, { email_id = "email-00043" } } }
    testing.run_until(function()
      n = n + 1
      local status = testing.request(srv.port, "POST", "/v1/models/spam:predict", { body = body, timeout = 5000 })
      statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1
      return mover.code ~= nil
    end, 60000)
    assert.equal(0, mover:wait(10000))
    assert.same({ ["200"] = n }, statuses)
    assert.is_nil(srv.proc.stderr():find("died", 1, true), srv.proc.stderr())
    -- Workers follow the alias within a second.
    assert.is_true(testing.run_until(function()
      local _, _, _, doc = testing.request(srv.port, "GET", "/v1/models/spam")
      return doc and doc.version == "1.0.6"
    end, 5000))
  end)
end)
