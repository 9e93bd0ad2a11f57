local serving = require "tycho.serving"
local keys = require "tycho.keys"
local store = require "tycho.store"
local testing = require "tycho.testing"

describe("prediction log retention", function()
  it("prunes entries older than the cut, keeping the newer ones", function()
    local dir = testing.tmpdir()
    local st = assert(store.open(dir))
    st:update(function(tx)
      for t = 1, 10 do tx:put("predictions", keys.pack("i64 s", t * 1e6, "id" .. t), "{}") end
    end)
    local removed = st:update(function(tx) return serving.prune(tx, 4e6) end)
    assert.equal(3, removed)
    assert.equal(7, st:view(function(tx) return tx:count("predictions") end))
    local first = st:view(function(tx) return tx:scan("predictions", { limit = 1 })() end)
    assert.equal(4e6, (keys.unpack("i64 s", first)))
    st:close()
    testing.rmrf(dir)
  end)

  it("prunes a bounded batch per call, with the outcomes of what it prunes", function()
    local dir = testing.tmpdir()
    local st = assert(store.open(dir))
    st:update(function(tx)
      for t = 1, 25 do
        tx:put("predictions", keys.pack("i64 s", t * 1e6, "id" .. t), "{}")
        tx:put("outcomes", "id" .. t, "{}")
      end
    end)
    assert.equal(10, st:update(function(tx) return serving.prune(tx, 21e6, 10) end))
    assert.equal(10, st:update(function(tx) return serving.prune(tx, 21e6, 10) end))
    assert.equal(0, st:update(function(tx) return serving.prune(tx, 21e6, 10) end))
    st:view(function(tx)
      assert.equal(5, tx:count("predictions"))
      assert.equal(5, tx:count("outcomes"))
      assert.is_nil(tx:get("outcomes", "id20"))
      assert.is_not_nil(tx:get("outcomes", "id21"))
    end)
    st:close()
    testing.rmrf(dir)
  end)
end)
