-- Issue 23.5: duplicate features across teams. A copied view is flagged
-- (with both owners), an unrelated one is not, and a new view that
-- redeclares a feature by name and type is warned about.
local tycho = require "tycho"
local testing = require "tycho.testing"

describe("duplicate features", function()
  local home, fs
  setup(function()
    home = testing.tmpdir()
    fs = assert(tycho.features.open({ home = home }))
    fs:entity { name = "user", join_key = "user_id" }
    assert(fs:feature_view { name = "spend", entity = "user", owner = "payments",
                             schema = { total = "float", orders = "int" } })
    assert(fs:feature_view { name = "spend_copy", entity = "user", owner = "growth",
                             schema = { amount = "float", n = "int" } })
    assert(fs:feature_view { name = "clicks", entity = "user", owner = "web", schema = { clicks = "int" } })
    local ids, t, total, orders, amount, n, clicks = {}, {}, {}, {}, {}, {}, {}
    math.randomseed(23)
    for i = 1, 200 do
      ids[i], t[i] = "u" .. i, 1000 + i
      total[i], orders[i] = math.random() * 100, math.random(1, 9)
      amount[i], n[i] = total[i] * 1.07, orders[i]        -- the copy: scaled (r = 1) and identical
      clicks[i] = math.random(0, 50)
    end
    assert(fs:ingest("spend", tycho.frame.new({ user_id = ids, event_time = t, total = total, orders = orders })))
    assert(fs:ingest("spend_copy", tycho.frame.new({ user_id = ids, event_time = t, amount = amount, n = n })))
    assert(fs:ingest("clicks", tycho.frame.new({ user_id = ids, event_time = t, clicks = clicks })))
  end)
  teardown(function()
    fs.store:close()
    testing.rmrf(home)
  end)

  it("flags a copied view and names both owners, but not an unrelated one", function()
    local found = fs:duplicates()
    local pairs_found = {}
    for _, d in ipairs(found) do pairs_found[d.a .. " = " .. d.b] = d end
    local same = assert(pairs_found["spend:orders = spend_copy:n"])
    assert.equal(1, same.identical)
    assert.same({ "payments", "growth" }, same.owners)
    local scaled = assert(pairs_found["spend:total = spend_copy:amount"])
    assert.near(1, scaled.correlation, 1e-9)
    for key in pairs(pairs_found) do assert.is_nil(key:find("clicks", 1, true), key) end
  end)

  it("warns when a new view redeclares a feature by name and type", function()
    local v = assert(fs:feature_view { name = "spend_v2", entity = "user", owner = "finance", schema = { total = "float" } })
    assert.same({ "feature 'total' (float) is also in view spend (owner payments)" }, v.warnings)
  end)

  it("is on the command line", function()
    fs.store:close()
    local code, out = testing.run({ "--home", home, "features", "duplicates", "--json" })
    assert.equal(0, code)
    assert.is_true(#require("tycho.json").decode(out).duplicates >= 2)
    fs = assert(tycho.features.open({ home = home }))
  end)
end)
