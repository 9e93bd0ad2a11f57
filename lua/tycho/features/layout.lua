--- tycho.features, the feature row layout in the store (DESIGN.md, "Data home"), defined here once for Lua:
-- offline key (view id u32, entity s, event time i64 µs) -> encoded row (rowcodec);
-- online key (view id u32, entity s) -> event time (8 bytes) .. encoded row.
-- core/store/tz_asof.c reads the same layout in C.
local ffi = require "ffi"
local keys = require "tycho.util.keys"
local errors = require "tycho.util.errors"

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

-- The online store of a store (home) that has another backend than its
-- LMDB online db (a Redis Cluster: features/online_redis.lua), set by
-- tycho.features.open; weak, so a closed store takes its entry along.
local backends = setmetatable({}, { __mode = "k" })

-- Writes to the online store unless a newer event time is there already.
local function online_put(tx, v, entity, t, encoded)
  local backend = backends[tx.store]
  if backend then return backend:put(v, entity, t, encoded) end
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
  local backend = backends[tx.store]
  local on
  if backend then on = backend:get(v, entity) else on = tx:get("online", online_key(v, entity)) end
  if on then
    local on_t = unpack_time(on)
    if on_t <= t and (not best_t or on_t > best_t) then best = on:sub(9) end
  end
  return best
end

--- Writes rows = { {entity, t, encoded}, ... } of view v to the online
-- store as online_put does each (one pipelined batch on a cluster).
-- Returns how many were written.
local function online_put_many(tx, v, rows)
  local backend, written = backends[tx.store], 0
  if backend then
    local out, e, code = backend:put_many(v, rows)
    if not out then errors.raise(code or errors.unavailable, e) end
    for i = 1, #rows do if out[i] then written = written + 1 end end
    return written
  end
  for _, r in ipairs(rows) do
    if online_put(tx, v, r[1], r[2], r[3]) then written = written + 1 end
  end
  return written
end

--- Makes backend (nil: the LMDB online db) the online store of store's
-- writes through online_put and reads through row_at.
function M.set_online_backend(store, backend) backends[store] = backend end

--- The online backend of a store, or nil for its LMDB online db.
function M.online_backend(store) return backends[store] end

M.offline_key = offline_key
M.row_at = row_at
M.online_key = online_key
M.pack_time = pack_time
M.unpack_time = unpack_time
M.unpack_time_ptr = unpack_time_ptr
M.online_put = online_put
M.online_put_many = online_put_many

return M
