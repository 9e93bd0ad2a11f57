--- Binary rows of the feature store: a u16 schema version, a null bitmap,
-- then the present values in schema order (float: 8-byte double, int:
-- 8-byte signed, bool: 1 byte, string: u32 length + bytes; little-endian).
-- A row names its version, so rows written before a schema change still
-- decode with the features they had.
local ffi = require "ffi"
local bit = require "bit"

local M = {}

local cap = 4096
local buf = ffi.new("uint8_t[?]", cap)
local num = ffi.new("union { double d; int64_t i; uint8_t b[8]; uint32_t u; }")

local function ensure(n)
  if n <= cap then return end
  while cap < n do cap = cap * 2 end
  local nb = ffi.new("uint8_t[?]", cap)
  buf = nb
end

--- Encodes values (a table by feature name) for version `version` whose
-- features are { {name=, type=}, ... }. Values must already have their
-- types (validation happens before).
function M.encode(version, features, values)
  local n = #features
  local nbytes = math.floor((n + 7) / 8)
  local size = 2 + nbytes
  for _, f in ipairs(features) do
    local v = values[f.name]
    if v ~= nil then
      if f.type == "string" then size = size + 4 + #v
      elseif f.type == "bool" then size = size + 1
      else size = size + 8 end
    end
  end
  ensure(size)
  buf[0], buf[1] = bit.band(version, 0xff), bit.rshift(version, 8)
  ffi.fill(buf + 2, nbytes, 0)
  local pos = 2 + nbytes
  for j, f in ipairs(features) do
    local v = values[f.name]
    if v ~= nil then
      local k = j - 1
      buf[2 + bit.rshift(k, 3)] = bit.bor(buf[2 + bit.rshift(k, 3)], bit.lshift(1, bit.band(k, 7)))
      local t = f.type
      if t == "float" then
        num.d = v
        ffi.copy(buf + pos, num.b, 8)
        pos = pos + 8
      elseif t == "int" then
        num.i = v
        ffi.copy(buf + pos, num.b, 8)
        pos = pos + 8
      elseif t == "bool" then
        buf[pos] = v and 1 or 0
        pos = pos + 1
      else
        num.u = #v
        ffi.copy(buf + pos, num.b, 4)
        ffi.copy(buf + pos + 4, v, #v)
        pos = pos + 4 + #v
      end
    end
  end
  return ffi.string(buf, pos)
end

--- The schema version of an encoded row.
function M.version(s)
  local b1, b2 = s:byte(1, 2)
  return b1 + b2 * 256
end

--- Decodes into `into` (a table, filled by feature name; absent = null).
-- versions maps a version number to its feature list.
function M.decode(s, versions, into)
  return M.decode_ptr(ffi.cast("const uint8_t*", s), versions, into)
end

--- Like decode, from a pointer to the row's bytes (e.g. into the store's map).
function M.decode_ptr(p, versions, into)
  local version = p[0] + p[1] * 256
  local features = versions[version]
  if not features then error("row written by unknown schema version " .. version, 2) end
  local n = #features
  local pos = 2 + math.floor((n + 7) / 8)
  local out = into or {}
  for j = 1, n do
    local f = features[j]
    local k = j - 1
    if bit.band(p[2 + bit.rshift(k, 3)], bit.lshift(1, bit.band(k, 7))) ~= 0 then
      local t = f.type
      if t == "float" then
        ffi.copy(num.b, p + pos, 8)
        out[f.name] = num.d
        pos = pos + 8
      elseif t == "int" then
        ffi.copy(num.b, p + pos, 8)
        out[f.name] = tonumber(num.i)
        pos = pos + 8
      elseif t == "bool" then
        out[f.name] = p[pos] ~= 0
        pos = pos + 1
      else
        ffi.copy(num.b, p + pos, 4)
        local len = num.u
        out[f.name] = ffi.string(p + pos + 4, len)
        pos = pos + 4 + len
      end
    else
      out[f.name] = nil
    end
  end
  return out, version
end

return M
