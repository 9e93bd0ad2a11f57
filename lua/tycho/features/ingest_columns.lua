--- tycho.features, the columnar fast path of ingestion: a frame (a CSV
-- read with the view's types, a JSONL file, a pushed frame) is validated,
-- encoded and written by one C call (core/store/tz_ingest) with no Lua
-- table per row or value, and its statistics folded in the same pass. It
-- takes the views and sources whose rules C checks exactly (types, required,
-- min, max, allowed values, entity keys, event times); a view with Lua checks
-- or PII tokens, a source whose columns differ in type from the view, or an
-- online store on a Redis Cluster takes the row path in ingest.lua, which
-- gives the same answer.
local ffi = require "ffi"
local store_mod = require "tycho.core.store"
local codec = require "tycho.features.rowcodec"
local quality = require "tycho.features.quality"
local validation = require "tycho.features.validate"
local catalog = require "tycho.features.catalog"
local layout = require "tycho.features.layout"

local M = {}

local TYPES = { float = 0, int = 1, bool = 2, string = 3 }  -- TZ_COL_*
local STR = TYPES.string
local REJECTED, DUPLICATE = 3, 4  -- TZ_INGEST_*
local _ = store_mod  -- the tz_ingest declarations live in the store's face

-- Whether column c (a frame column) can feed feature f, declared `type`.
local function feeds(c, f)
  local want, have = TYPES[f.type], c.c.type
  if want == nil then return false end
  if have ~= want and not (want == TYPES.float and have == TYPES.int) and not (want == TYPES.int and have == TYPES.float) then
    return false
  end
  -- Lua compares booleans and text with min and max differently (or not at all).
  if (want == TYPES.bool or want == STR) and (f.min ~= nil or f.max ~= nil) then return false end
  if want == TYPES.bool and f.values then return false end
  return true
end

-- The allowed values of f for C: sorted numbers, or a byte per string code
-- of column c (1 = allowed); nil, nil when every value is allowed; false
-- when a value cannot be checked in C.
local function allowed_of(f, c, keep)
  if not f.values then return nil end
  local set = catalog.set_of(f.values)
  if f.type == "string" then
    local levels = c:levels()
    local codes = ffi.new("uint8_t[?]", math.max(#levels, 1))
    for code, level in ipairs(levels) do codes[code - 1] = set[level] and 1 or 0 end
    keep[#keep + 1] = codes
    return codes, #levels
  end
  local nums = {}
  for _, x in ipairs(f.values) do
    if type(x) ~= "number" then return false end
    nums[#nums + 1] = x
  end
  table.sort(nums)
  local arr = ffi.new("double[?]", math.max(#nums, 1))
  for i, x in ipairs(nums) do arr[i - 1] = x end
  keep[#keep + 1] = arr
  return arr, #nums
end

-- The batch's feature structs, or nil when the view or source needs the row path.
local function features_of(fs, v, fr, keep)
  if (fs.checks[v.name] and (next(fs.checks[v.name].features or {}) or fs.checks[v.name].row)) then return nil end
  if v.pii and #v.pii > 0 and not v.pii_clear then return nil end
  local n = #v.features
  local structs = ffi.new("tz_ingest_feature[?]", math.max(n, 1))
  keep[#keep + 1] = structs
  for j, f in ipairs(v.features) do
    local name = f.column or f.name
    if not fr:has(name) or v.current[j].name ~= f.name or v.current[j].type ~= f.type then return nil end
    local c = fr:col(name)
    if not feeds(c, f) then return nil end
    local s = structs[j - 1]
    s.col, s.type, s.required = c.c, TYPES[f.type], f.nullable == false and 1 or 0
    s.has_min, s.min = f.min ~= nil and 1 or 0, f.min or 0
    s.has_max, s.max = f.max ~= nil and 1 or 0, f.max or 0
    local allowed, count = allowed_of(f, c, keep)
    if allowed == false then return nil end
    if f.type == "string" then s.allowed_code, s.n_codes = allowed, count or 0
    else s.allowed, s.n_allowed = allowed, count or 0 end
  end
  return structs
end

-- About what one row of v costs the store, offline and online: its key
-- (view, entity, time) and encoded value (version, bitmap, 8 bytes a
-- number, text taken as 32), LMDB's node header, and pages filled to half
-- when rows come out of key order. Only a reservation: a map still too
-- small grows when full, as for any update.
local TEXT = 32
local function bytes_per_row(v)
  local value = 2 + math.ceil(#v.features / 8)
  for _, f in ipairs(v.features) do value = value + (f.type == "string" and 4 + TEXT or 8) end
  return 2 * 2 * (4 + TEXT + 2 + 8 + value + 16)
end

--- Lands frame fr (lines: a function(i) -> the source line of row i) into
-- view v as ingest.lua's land() does, when C can: the report's counts, the
-- rejected rows ({ line, reason, row }) and the good rows' time range; or
-- nil when this source or view takes the row path.
function M.land(fs, v, fr, lines, to, source_name)
  if not fr:has(v.join_key) or not fr:has(v.timestamp) then return nil end
  -- C writes LMDB's online db: an online store elsewhere (a Redis Cluster)
  -- takes the row path, which writes through layout.online_put.
  if to ~= "offline" and layout.online_backend(fs.store) then return nil end
  local entity, time = fr:col(v.join_key), fr:col(v.timestamp)
  if entity.c.type ~= STR or time.c.type == TYPES.bool then return nil end
  local keep = {}
  local structs = features_of(fs, v, fr, keep)
  if not structs then return nil end
  local n = fr:nrows()
  local b = ffi.new("tz_ingest_batch")
  b.view_id, b.version, b.entity, b.time, b.n = v.id, v.version, entity.c, time.c, n
  b.n_features, b.features = #v.features, structs
  b.write_offline, b.write_online = to ~= "online" and 1 or 0, to ~= "offline" and 1 or 0
  b.hll_p = quality.P
  local status, detail, times = ffi.new("uint8_t[?]", n + 1), ffi.new("int64_t[?]", n + 1), ffi.new("int64_t[?]", n + 1)
  b.status, b.detail, b.times = status, detail, times
  fs.store:reserve(n * bytes_per_row(v))
  local replaced = {}
  fs.store:update(function(tx)
    local state = quality.open_batch(tx, v)
    b.entity_hll = state.entity
    quality.fill_batch(state, v, structs)
    -- Stored rows the batch corrected: their old values leave the statistics.
    replaced = {}
    for _, old in ipairs(tx:ingest(b)) do
      local at = old[1]
      replaced[#replaced + 1] = { entity:get(at + 1), tonumber(times[at]), codec.decode(old[2], v.by_version) }
    end
    quality.close_batch(tx, v, state, b, replaced)
    if fs._after_land then fs._after_land(tx) end
  end)
  -- Rejected rows are worded by the row validator, one by one.
  local rejected = {}
  for i = 0, n - 1 do
    local st = status[i]
    if st == REJECTED then
      local row = fr:row(i + 1)
      local ok, reason = validation.validate(fs, v, row)
      if ok then reason = "bad event time: out of range (beyond ±2^53 µs)" end
      rejected[#rejected + 1] = { line = lines(i + 1), reason = reason, row = row, source = source_name }
    elseif st == DUPLICATE then
      rejected[#rejected + 1] = { line = lines(i + 1), source = source_name,
        reason = "duplicate of line " .. lines(tonumber(detail[i]) + 1) .. " (same entity and time)" }
    end
  end
  local report = { view = v.name, rows_read = n, landed = tonumber(b.landed), unchanged = tonumber(b.unchanged),
                   duplicates = tonumber(b.duplicates), online_updates = tonumber(b.online_updates) }
  if n - tonumber(b.rejected) > 0 then report.min_time, report.max_time = tonumber(b.min_time), tonumber(b.max_time) end
  return report, rejected
end

return M
