--- tycho.features, online reads: the latest values per entity (Feast's response shape) and the
-- prepared reader of the serving path.
local ffi = require "ffi"
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local codec = require "tycho.features.rowcodec"
local timeutil = require "tycho.util.timeutil"
local errors = require "tycho.util.errors"
local layout = require "tycho.features.layout"
local online_key, unpack_time, unpack_time_ptr = layout.online_key, layout.unpack_time, layout.unpack_time_ptr
local references = require "tycho.features.refs"
local parse_refs, apply_transforms, export_value = references.parse_refs, references.apply_transforms, references.export_value

local M = {}
local FS = {}

local online_in

--- Latest values of refs ("view:feature" or "view:*") for entity_keys =
-- { join_key = { k1, k2, ... } }, in Feast's response shape, the keys first:
-- { metadata = { feature_names = {join_key, "view:f", ...} },
--   results = { { values = {...}, statuses = {...}, event_timestamps = {...} }, ... } }
-- Statuses: PRESENT, NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE (older than the view's
-- ttl at opts.now, µs, default now; the value is still given). nil, message, code on bad input.
function FS:online(refs, entity_keys, opts)
  return self.store:view(online_in, self, refs, entity_keys, opts)
end

-- Event times repeat across features and calls: format each once.
local formatted, n_formatted = {}, 0
local function format_time(t)
  local s = formatted[t]
  if s then return s end
  if n_formatted > 100000 then formatted, n_formatted = {}, 0 end
  s = timeutil.format(t)
  formatted[t], n_formatted = s, n_formatted + 1
  return s
end

function online_in(tx, self, refs, entity_keys, opts)
  local views, order, code = parse_refs(self, refs, tx)
  if not views then return nil, order, code end
  if type(entity_keys) ~= "table" then return errors.fail("invalid", "entities must be a table {join_key = {keys...}}") end
  local now = (opts and opts.now) or timeutil.now()
  local key_name, key_values = next(entity_keys)
  if type(key_values) ~= "table" then return errors.fail("invalid", "entities must map a join key to a list of keys") end
  for _, v in pairs(views) do
    if entity_keys[v.join_key] == nil then
      return errors.fail("invalid", "no keys for entity '" .. v.join_key .. "' (needed by view " .. v.name .. ")")
    end
  end
  local names = { key_name }
  local results = { { values = {}, statuses = {}, event_timestamps = {} } }
  local n = #key_values
  for i = 1, n do
    results[1].values[i] = key_values[i]
    results[1].statuses[i] = "PRESENT"
    results[1].event_timestamps[i] = "1970-01-01T00:00:00Z"
  end
  local found = {}
  for vname, v in pairs(views) do
    local ks = entity_keys[v.join_key]
    found[vname] = {}
    for i = 1, #ks do
      local raw = tx:get("online", online_key(v, tostring(ks[i])))
      if raw then
        local t = unpack_time(raw)
        local row = codec.decode(raw:sub(9), v.by_version)
        if v.transforms and next(v.transforms) then
          row[v.join_key] = ks[i]
          apply_transforms(self, v, row)
        end
        found[vname][i] = { t = t, row = row }
      end
    end
  end
  for _, o in ipairs(order) do
    local v = o.view
    names[#names + 1] = o.ref
    local col = { values = {}, statuses = {}, event_timestamps = {} }
    local ttl = (v.ttl or 0) * 1e6
    for i = 1, n do
      local hit = found[v.name][i]
      if not hit then
        col.values[i], col.statuses[i], col.event_timestamps[i] = json.null, "NOT_FOUND", "1970-01-01T00:00:00Z"
      else
        local value = export_value(self, v, o.feature, hit.row[o.feature])
        col.event_timestamps[i] = format_time(hit.t)
        if value == nil then
          col.values[i], col.statuses[i] = json.null, "NULL_VALUE"
        elseif ttl > 0 and now - hit.t > ttl then
          col.values[i], col.statuses[i] = value, "OUTSIDE_MAX_AGE"
        else
          col.values[i], col.statuses[i] = value, "PRESENT"
        end
      end
    end
    results[#results + 1] = col
  end
  return { metadata = { feature_names = names }, results = results }
end

--- A prepared reader for the hot path (serving): resolves refs once, then
-- reader:get(key) reads one entity in its own snapshot and returns a table
-- of the refs' values in order (reused between calls: copy what you keep)
-- and the row's event time in µs, or nil when the entity has none. Stale
-- definitions are noticed through the catalog epoch once a second.
-- Statuses and TTL are fs:online's business; on-demand features are computed.
function FS:reader(refs)
  local views, order, code = parse_refs(self, refs)
  if not views then return nil, order, code end
  local only, count = nil, 0
  for _, v in pairs(views) do only, count = v, count + 1 end
  if count ~= 1 then return errors.fail("invalid", "a reader reads features of one view") end
  local fs, v = self, only
  local prefix = keys.pack("u32", v.id)
  local names = {}
  for i, o in ipairs(order) do names[i] = o.feature end
  local has_transforms = v.transforms and next(v.transforms) ~= nil
  local row, values = {}, {}
  local point = self.store:point_reader("online")
  local checked = os.time()
  local reader = {}
  function reader.get(_, entity)
    if os.time() ~= checked then
      checked = os.time()
      local fresh = fs:reader(refs)
      if fresh then reader.get = fresh.get end
    end
    entity = tostring(entity)
    local ptr = point(prefix .. keys.pack("s", entity))
    if not ptr then return nil end
    -- The value is valid until the next read: decode it straight away.
    local p8 = ffi.cast("const uint8_t*", ptr)
    local t = unpack_time_ptr(p8)
    codec.decode_ptr(p8 + 8, v.by_version, row)
    if has_transforms then
      row[v.join_key] = entity
      apply_transforms(fs, v, row)
    end
    for i = 1, #names do
      local name = names[i]
      values[i] = export_value(fs, v, name, row[name])
    end
    return values, t
  end
  return reader
end

M.methods = FS

return M
