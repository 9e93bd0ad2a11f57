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
end)
