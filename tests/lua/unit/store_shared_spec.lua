-- Regression: LMDB breaks when one process opens an environment twice
-- (MDB_BAD_RSLOT in a parked reader); tycho.store shares one per home.
local store = require "tycho.store"
local testing = require "tycho.testing"

describe("one store per home and process", function()
  it("returns the same store for every open of a home, closing with the last user", function()
    local dir = testing.tmpdir()
    local a = assert(store.open(dir))
    local b = assert(store.open(dir .. "/"))
    assert.equal(a, b)
    a:put("t", "k", "v")
    local read = b:point_reader("t")
    b:update(function(tx) tx:put("t", "k2", "v2") end)
    assert.is_not_nil(read("k2"))
    a:close()
    assert.equal("v", b:get("t", "k"))  -- still open: b's use remains
    b:close()
    assert.has_error(function() b:get("t", "k") end, "store: used after close()")
    local c = assert(store.open(dir))
    assert.equal("v", c:get("t", "k"))
    c:close()
    testing.rmrf(dir)
  end)
end)
