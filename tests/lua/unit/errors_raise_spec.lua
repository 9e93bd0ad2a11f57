-- errors.raise and errors.caught: an expected failure raised through a
-- store transaction (a Redis write the cluster could not acknowledge) comes
-- back out as nil, message, code; a bug is raised again as it was.
local errors = require "tycho.util.errors"
local testing = require "tycho.testing"

describe("errors.raise", function()
  it("returns through pcall and errors.caught as nil, message, code", function()
    local ok, e = pcall(function() errors.raise("unavailable", "no master answered") end)
    assert.is_false(ok)
    assert.equal("no master answered", tostring(e))
    assert.same({ nil, "no master answered", "unavailable" }, { errors.caught(e) })
  end)

  it("raises any other error again, and refuses an unknown code", function()
    local _, e = pcall(error, "a bug", 0)
    assert.has_error(function() errors.caught(e) end, "a bug")
    assert.has_error(function() errors.raise("nope", "x") end, "errors.raise: unknown code 'nope'")
  end)

  it("rolls back the transaction it leaves", function()
    local home = testing.tmpdir()
    local st = assert(require("tycho.core.store").open(home))
    local ok, e = pcall(st.update, st, function(tx)
      tx:put("meta", "k", "v")
      errors.raise("unavailable", "cluster gone")
    end)
    assert.same({ false, "unavailable" }, { ok, select(3, errors.caught(e)) })
    assert.is_nil(st:view(function(tx) return tx:get("meta", "k") end))
    st:close()
    testing.rmrf(home)
  end)
end)
