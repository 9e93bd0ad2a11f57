--- Order-preserving key codecs: encoded keys sort bytewise (LMDB's order)
-- exactly as their values do, field by field.
--
--   keys.pack("s u64", "user-7", 1700000000)   -- composite key
--   keys.unpack("s u64", k)                    --> "user-7", 1700000000
--
-- Field codes:
--   u8 u16 u32 u64  unsigned big-endian integers
--   i64             signed, sign bit flipped so negatives sort first
--   f64             IEEE double, transformed so every double sorts numerically
--   s               string, order-preserving: NUL escaped, NUL NUL terminated
--   b               bytes with a 4-byte big-endian length prefix (groups by
--                   length first; use for opaque blobs, not sorted text)
-- Integers above 2^53 may be passed as int64/uint64 cdata; unpack returns
-- Lua numbers when exact, else cdata.
local ffi = require "ffi"
local bit = require "bit"

local M = {}

local word = ffi.new("union { double d; uint64_t u; int64_t i; }")
local SIGN = 0x8000000000000000ULL
local ALL = 0xffffffffffffffffULL
local char, byte, concat = string.char, string.byte, table.concat

local function be(u, n)
  local t = {}
  for i = n, 1, -1 do
    t[i] = char(tonumber(bit.band(u, 0xff)))
    u = bit.rshift(u, 8)
  end
  return concat(t)
end

local function read_be(s, pos, n)
  if pos + n - 1 > #s then error("keys.unpack: key too short", 3) end
  local u = 0ULL
  for i = pos, pos + n - 1 do u = bit.bor(bit.lshift(u, 8), byte(s, i)) end
  return u
end

local function number_out(u)
  if u < 9007199254740992ULL then return tonumber(u) end
  return u
end

-- Fast path for Lua numbers (exact integers below 2^53): two 32-bit halves
-- written into a scratch buffer, no 64-bit boxed arithmetic.
local scratch = ffi.new("uint8_t[8]")
local TWO32 = 4294967296

local function be_number(v, n, flip_sign)
  local hi = math.floor(v / TWO32)
  local lo = v - hi * TWO32
  hi = hi % TWO32
  if flip_sign then hi = (hi + 2147483648) % TWO32 end
  for i = n - 1, 0, -1 do
    if i >= n - 4 then
      scratch[i] = bit.band(lo, 0xff)
      lo = bit.rshift(lo, 8)
    else
      scratch[i] = bit.band(hi, 0xff)
      hi = bit.rshift(hi, 8)
    end
  end
  return ffi.string(scratch, n)
end

local function check_int(v, name)
  if type(v) == "number" then
    if v % 1 ~= 0 then error("keys.pack: " .. name .. " needs an integer, got " .. v, 3) end
    return v
  end
  if type(v) == "cdata" then return v end
  error("keys.pack: " .. name .. " needs an integer, got " .. type(v), 3)
end

local function unsigned(n, name)
  return function(v)
    v = check_int(v, name)
    if type(v) == "number" and v >= 0 and v < 9007199254740992 then
      if n == 8 then return be_number(v, 8, false) end
      return be_number(v % 2 ^ (8 * n), 8, false):sub(9 - n)
    end
    return be(ffi.cast("uint64_t", v), n)
  end
end

local encode = {
  u8 = unsigned(1, "u8"),
  u16 = unsigned(2, "u16"),
  u32 = unsigned(4, "u32"),
  u64 = unsigned(8, "u64"),
  i64 = function(v)
    v = check_int(v, "i64")
    if type(v) == "number" and v > -9007199254740992 and v < 9007199254740992 then
      return be_number(v, 8, true)
    end
    word.i = v
    return be(bit.bxor(word.u, SIGN), 8)
  end,
  f64 = function(v)
    if type(v) ~= "number" then error("keys.pack: f64 needs a number", 3) end
    word.d = v
    local u = word.u
    if bit.band(u, SIGN) ~= 0ULL then u = bit.bxor(u, ALL) else u = bit.bxor(u, SIGN) end
    return be(u, 8)
  end,
  s = function(v)
    if type(v) ~= "string" then error("keys.pack: s needs a string", 3) end
    return M.escape_string(v) .. M.STRING_END
  end,
  b = function(v)
    if type(v) ~= "string" then error("keys.pack: b needs a string", 3) end
    return be(ffi.cast("uint64_t", #v), 4) .. v
  end,
}

--- An "s" field is escape_string(v) .. STRING_END: for code that builds
-- many keys in C from a common prefix (Txn:put_new_many).
M.STRING_END = "\0\0"
function M.escape_string(v)
  if not v:find("\0", 1, true) then return v end
  return (v:gsub("%z", "\0\255"))
end

local widths = { u8 = 1, u16 = 2, u32 = 4, u64 = 8 }

local decode = {
  i64 = function(s, pos)
    word.u = bit.bxor(read_be(s, pos, 8), SIGN)
    local i = word.i
    if i > -9007199254740992LL and i < 9007199254740992LL then return tonumber(i), pos + 8 end
    return i, pos + 8
  end,
  f64 = function(s, pos)
    local u = read_be(s, pos, 8)
    if bit.band(u, SIGN) ~= 0ULL then u = bit.bxor(u, SIGN) else u = bit.bxor(u, ALL) end
    word.u = u
    return word.d, pos + 8
  end,
  s = function(s, pos)
    local parts, i = {}, pos
    while true do
      local z = s:find("\0", i, true)
      if not z or z == #s then error("keys.unpack: unterminated string field", 3) end
      parts[#parts + 1] = s:sub(i, z - 1)
      local nxt = byte(s, z + 1)
      if nxt == 0 then return concat(parts), z + 2 end
      if nxt ~= 255 then error("keys.unpack: bad escape in string field", 3) end
      parts[#parts + 1] = "\0"
      i = z + 2
    end
  end,
  b = function(s, pos)
    local n = tonumber(read_be(s, pos, 4))
    if pos + 4 + n - 1 > #s then error("keys.unpack: bytes field runs past the key", 3) end
    return s:sub(pos + 4, pos + 3 + n), pos + 4 + n
  end,
}
for code, n in pairs(widths) do
  decode[code] = function(s, pos) return number_out(read_be(s, pos, n)), pos + n end
end

local formats = {}  -- parsed formats, by format string

local function parse(fmt)
  local codes = formats[fmt]
  if codes then return codes end
  codes = {}
  for code in fmt:gmatch("%S+") do
    if not encode[code] then error("keys: unknown field code '" .. code .. "'", 3) end
    codes[#codes + 1] = code
  end
  formats[fmt] = codes
  return codes
end

--- Encodes the values as one key, field codes in fmt.
--- keys.pack("i64 s", t, s) without parsing a format or taking varargs:
-- for keys made on a hot path (the prediction log's), where both stop
-- LuaJIT's traces.
local scratch_u64 = ffi.cast("uint64_t*", scratch)
function M.pack_i64_s(t, s)
  if type(t) ~= "number" or t % 1 ~= 0 or t <= -9007199254740992 or t >= 9007199254740992 then
    return encode.i64(t) .. encode.s(s)
  end
  -- i64's bytes by one byte swap of the sign-flipped word (no loop per byte)
  word.i = t
  scratch_u64[0] = bit.bswap(bit.bxor(word.u, SIGN))
  return ffi.string(scratch, 8) .. encode.s(s)
end

--- Puts keys.pack("i64 s", t, s) into buf (a string.buffer), with no Lua
-- string made for the key or its parts: the prediction log's keys, one per
-- prediction, where the three strings of pack_i64_s took 8 % of a request.
local u64_ptr = ffi.typeof("uint64_t*")
function M.put_i64_s(buf, t, s)
  if type(t) ~= "number" or t % 1 ~= 0 or t <= -9007199254740992 or t >= 9007199254740992 or
     type(s) ~= "string" then
    buf:put(M.pack_i64_s(t, s))
    return
  end
  word.i = t
  ffi.cast(u64_ptr, buf:reserve(8))[0] = bit.bswap(bit.bxor(word.u, SIGN))
  buf:commit(8)
  buf:put(M.escape_string(s), M.STRING_END)
end

function M.pack(fmt, ...)
  local codes = parse(fmt)
  local n = select("#", ...)
  if n ~= #codes then
    error(string.format("keys.pack: format has %d fields, got %d values", #codes, n), 2)
  end
  if n == 1 then return encode[codes[1]]((...)) end
  local a, b, c = ...
  if n == 2 then return encode[codes[1]](a) .. encode[codes[2]](b) end
  if n == 3 then return encode[codes[1]](a) .. encode[codes[2]](b) .. encode[codes[3]](c) end
  local parts = {}
  for i, code in ipairs(codes) do parts[i] = encode[code]((select(i, ...))) end
  return concat(parts)
end

--- Decodes a key packed with the same format; returns the values.
function M.unpack(fmt, s)
  local codes = parse(fmt)
  local out, pos = {}, 1
  for i, code in ipairs(codes) do out[i], pos = decode[code](s, pos) end
  return unpack(out, 1, #codes)
end

return M
