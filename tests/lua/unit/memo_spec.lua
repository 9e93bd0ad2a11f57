local memo = require "tycho.util.memo"

describe("memo.joined", function()
  it("joins as .. does, numbers included, and remembers each join", function()
    local join = memo.joined("\0")
    assert.equal("POST /x\0" .. "200", join("POST /x", 200))
    assert.equal("a\0b", join("a", "b"))
    assert.equal(join("a", "b"), join("a", "b"))
    assert.equal("a\0c", join("a", "c"))
  end)

  it("forgets everything once it holds max joins, and still joins right", function()
    local join = memo.joined("-", 3)
    for i = 1, 10 do assert.equal("k-" .. i, join("k", i)) end
    for i = 1, 10 do assert.equal("k-" .. i, join("k", i)) end
  end)
end)
