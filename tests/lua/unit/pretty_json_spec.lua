local pretty = require "tycho.pretty"
local json = require "tycho.json"

describe("tycho.pretty", function()
  it("prints nested tables with sorted keys", function()
    assert.equal('{\n  1,\n  2,\n  a = "x",\n  b = {\n    c = true,\n  },\n}',
      pretty.format({ 1, 2, b = { c = true }, a = "x" }))
  end)

  it("marks cycles instead of recursing forever", function()
    local t = { name = "loop" }
    t.self = t
    assert.matches("self = <cycle>", pretty.format(t), 1, true)
  end)

  it("prints a table shared twice (no cycle) in full both times", function()
    local shared = { 1 }
    local out = pretty.format({ a = shared, b = shared })
    assert.is_nil(out:find("<cycle>", 1, true))
  end)

  it("truncates long output and says how much there was", function()
    local big = {}
    for i = 1, 1000 do big[i] = string.rep("y", 20) end
    local out = pretty.format(big)
    assert.matches("%.%.%. %(950 more%)", out)
    local wide = pretty.format({ string.rep("z", 5000) }, { width = 100 })
    assert.matches("output truncated, %d+ characters in all", wide)
  end)

  it("uses __tostring when a value has one", function()
    local v = setmetatable({}, { __tostring = function() return "<frame 3x2>" end })
    assert.equal("<frame 3x2>", pretty.format(v))
  end)
end)

describe("tycho.json", function()
  it("round-trips", function()
    assert.same({ a = { 1, 2, 3 }, b = "x" }, json.decode(json.encode({ a = { 1, 2, 3 }, b = "x" })))
  end)

  it("returns nil and a message for bad input instead of raising", function()
    local v, err, code = json.decode("{bad")
    assert.is_nil(v)
    assert.matches("invalid JSON", err)
    assert.equal("invalid", code)
  end)

  it("refuses NaN, Infinity, hex and out-of-range numbers by name, at any depth", function()
    for _, text in ipairs { '{"hp":NaN}', '{"hp":Infinity}', '[-Infinity]', '{"hp":1e999}', '[1,[2,{"x":-1e400}]]',
                            '{"hp":0x10}', '{"hp":nan}' } do
      local v, err, code = json.decode(text)
      assert.is_nil(v, text)
      assert.matches("not a finite decimal", err, 1, true)
      assert.equal("invalid", code, text)
    end
    assert.same({ hp = 1e308 }, json.decode('{"hp":1e308}'))
  end)

  it("encodes a computed NaN or infinity as null rather than failing the document", function()
    assert.same({ x = json.null, y = json.null, z = 1 }, json.decode(json.encode({ x = 0 / 0, y = -math.huge, z = 1 })))
  end)

  it("never takes a client's string for the empty-array marker", function()
    for _, text in ipairs { '["\\u0000tycho:[]\\u0000"]', '["X\\"\\u0000tycho:[]\\u0000"]',
                            '{"\\"\\u0000tycho:[]\\u0000":1}' } do
      local v = assert(json.decode(text))
      assert.same(v, json.decode(json.encode(v)), text)
      assert.same(v, json.decode(json.encode_canonical(v)), text)
    end
  end)

  it("encodes empty_array as []", function()
    assert.equal('{"items":[]}', json.encode({ items = json.empty_array }))
  end)
end)
