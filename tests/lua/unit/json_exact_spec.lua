-- json.encode_exact, the encoder of prediction and feature answers: numbers
-- in their shortest exact form, strings and keys as lua-cjson writes them
-- (remembered between calls, bounded), arrays by lua-cjson's rule.
local json = require "tycho.util.json"
local cjson = require "cjson"

describe("json.encode_exact", function()
  it("writes strings and keys as lua-cjson does, the second time as the first", function()
    local strings = { "", "plain", 'a "quoted" word', "back\\slash", "line\nbreak", "tab\t", "\1control",
                      "caf\195\169", "/slash", string.rep("long ", 40) }
    for _ = 1, 2 do
      for _, s in ipairs(strings) do
        assert.equal(cjson.encode(s), json.encode_exact(s))
        assert.equal("{" .. cjson.encode(s) .. ":1}", json.encode_exact({ [s] = 1 }))
      end
    end
  end)

  it("stays right past the number of strings it remembers", function()
    for i = 1, 10000 do
      local s = "s" .. i .. '"'
      assert.equal(cjson.encode(s), json.encode_exact(s))
    end
    assert.equal('"s1\\""', json.encode_exact('s1"'))
  end)

  it("writes numbers exactly and the rest as JSON", function()
    local v = { values = { 0.1 + 0.2, 1e-5, 7, -0.5 }, ok = true, no = false, none = json.null, list = json.empty_array,
                nested = { { a = "x" } } }
    local back = json.decode(json.encode_exact(v))
    assert.equal(0.1 + 0.2, back.values[1])
    assert.equal(1e-5, back.values[2])
    assert.same({ 7, -0.5 }, { back.values[3], back.values[4] })
    assert.is_true(back.ok)
    assert.is_false(back.no)
    assert.equal(json.null, back.none)
    assert.equal("x", back.nested[1].a)
    assert.matches('"list":%[%]', json.encode_exact(v))
  end)
end)
