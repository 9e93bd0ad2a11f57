--- tycho.features, the feature row layout in the store (DESIGN.md, "Data home"), defined here once for Lua:
-- offline key (view id u32, entity s, event time i64 µs) -> encoded row (rowcodec);
-- online key (view id u32, entity s) -> event time (8 bytes) .. encoded row.
-- core/store/tz_asof.c reads the same layout in C.
local ffi = require "ffi"
local keys = require "tycho.util.keys"

local M = {}

local function offline_key(v, entity, t) return keys.pack("u32 s i64", v.id, entity, t) end
local function online_key(v, entity) return keys.pack("u32 s", v.id, entity) end

local num = ffi.new("union { int64_t i; uint8_t b[8]; }")
local function pack_time(t)
  num.i = t
  return ffi.string(num.b, 8)
end
local function unpack_time(s)
  ffi.copy(num.b, s, 8)
  return tonumber(num.i)
end
local function unpack_time_ptr(p)
  ffi.copy(num.b, p, 8)
  return tonumber(num.i)
end

-- Writes to the online store unless a newer event time is there already.
local function online_put(tx, v, entity, t, encoded)
  local k = online_key(v, entity)
  local old = tx:get("online", k)
  local value = pack_time(t) .. encoded
  if old and (unpack_time(old) > t or old == value) then return false end
  tx:put("online", k, value)
  return true
end

--- The entity's stored row in force at time t: the newer of its latest
-- offline row at or before t and its online row when that is not after t.
-- The encoded row, or nil when the entity has none yet.
local function row_at(tx, v, entity, t)
  local best_t, best
  for k, row in tx:scan("offline", { prefix = online_key(v, entity), to = offline_key(v, entity, t + 1),
                                      reverse = true, limit = 1 }) do
    best_t, best = select(3, keys.unpack("u32 s i64", k)), row
  end
  local on = tx:get("online", online_key(v, entity))
  if on then
    local on_t = unpack_time(on)
    if on_t <= t and (not best_t or on_t > best_t) then best = on:sub(9) end
  end
  return best
end

M.offline_key = offline_key
M.row_at = row_at
M.online_key = online_key
M.pack_time = pack_time
M.unpack_time = unpack_time
M.unpack_time_ptr = unpack_time_ptr
M.online_put = online_put

return M
