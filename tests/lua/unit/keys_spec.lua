local keys = require "tycho.keys"

describe("tycho.keys", function()
  it("round-trips every field type", function()
    local k = keys.pack("u8 u16 u32 u64 i64 f64 s b", 7, 65535, 4000000000, 2 ^ 53, -42, -1.5, "a\0b", "xyz")
    assert.same({ 7, 65535, 4000000000, 2 ^ 53, -42, -1.5, "a\0b", "xyz" },
      { keys.unpack("u8 u16 u32 u64 i64 f64 s b", k) })
  end)

  it("is big-endian for unsigned integers", function()
    assert.equal("\0\0\1\2", keys.pack("u32", 258))
  end)

  local function sorted_like_values(code, values)
    local encoded = {}
    for i, v in ipairs(values) do encoded[i] = { k = keys.pack(code, v), v = v } end
    table.sort(encoded, function(a, b) return a.k < b.k end)
    for i, e in ipairs(encoded) do assert.equal(values[i], e.v) end
  end

  it("orders signed integers, doubles and strings as their values", function()
    sorted_like_values("i64", { -2 ^ 40, -1000, -1, 0, 1, 999, 2 ^ 50 })
    sorted_like_values("f64", { -math.huge, -1e300, -2.5, -0.5, 0, 1e-300, 0.5, 3, 1e300, math.huge })
    sorted_like_values("s", { "", "\0", "\0\0", "a", "a\0", "ab", "b", "\255" })
  end)

  it("keeps composite keys ordered by the first field, then the next", function()
    local a = keys.pack("s u64", "ab", 99)
    local b = keys.pack("s u64", "ab", 100)
    local c = keys.pack("s u64", "abc", 1)
    assert.is_true(a < b and b < c)
  end)

  it("carries 64-bit integers beyond 2^53 as cdata", function()
    local big = 18446744073709551615ULL
    assert.equal(big, (keys.unpack("u64", keys.pack("u64", big))))
  end)

  it("rejects misuse with a clear error", function()
    assert.has_error(function() keys.pack("u32", 1.5) end, "keys.pack: u32 needs an integer, got 1.5")
    assert.has_error(function() keys.pack("q", 1) end, "keys: unknown field code 'q'")
    assert.has_error(function() keys.pack("u32 u32", 1) end, "keys.pack: format has 2 fields, got 1 values")
    assert.has_error(function() keys.unpack("u64", "abc") end, "keys.unpack: key too short")
    assert.has_error(function() keys.unpack("s", "abc") end, "keys.unpack: unterminated string field")
  end)
  it("builds an s field from escape_string and STRING_END", function()
    for _, v in ipairs { "", "plain", "a\0b", "\0\0" } do
      assert.equal(keys.pack("s s", "p", v), keys.pack("s", "p") .. keys.escape_string(v) .. keys.STRING_END)
    end
  end)

  it("packs the prediction log's keys (pack_i64_s) as pack('i64 s') does, whatever the time", function()
    local times = { 0, 1, -1, 255, -256, 1796565811917059, -1796565811917059, 9007199254740991, -9007199254740991,
                    2 ^ 60, -2 ^ 60, 123456789012345678LL, -5LL }
    for _ = 1, 2000 do times[#times + 1] = math.floor((math.random() - 0.5) * 2 ^ 53) end
    for _, t in ipairs(times) do
      local id = "id-" .. tostring(t)
      assert.equal(keys.pack("i64 s", t, id), keys.pack_i64_s(t, id))
    end
  end)

  it("puts the same keys into a buffer (put_i64_s), after what it holds", function()
    local buf = require("string.buffer").new()
    for _, t in ipairs { 0, -1, 1796565811917059, -9007199254740991, 2 ^ 60, -5LL } do
      for _, id in ipairs { "000660e87bbe1d40-3fb9-1", "", "a\0b" } do
        buf:reset():put("x")
        keys.put_i64_s(buf, t, id)
        assert.equal("x" .. keys.pack("i64 s", t, id), buf:tostring())
      end
    end
  end)
end)
