--- tycho.features, online reads: the latest values per entity (Feast's response shape) and the
-- prepared reader of the serving path.
local ffi = require "ffi"
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local codec = require "tycho.features.rowcodec"
local timeutil = require "tycho.util.timeutil"
local errors = require "tycho.util.errors"
local layout = require "tycho.features.layout"
local redis = require "tycho.core.redis"
local unpack_time_ptr = layout.unpack_time_ptr
local references = require "tycho.features.refs"
local parse_refs, apply_transforms, export_value = references.parse_refs, references.apply_transforms, references.export_value

local new_table = require "table.new"
local clone = require "table.clone"

local M = {}
local FS = {}

local EPOCH_TEXT = "1970-01-01T00:00:00Z"

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

-- The columns of one view's features in a response, filled entity by
-- entity: each entity's row is decoded once, into a scratch table reused
-- across entities and calls, and its wanted features copied out, so a call
-- allocates its answer's tables and nothing per entity beside them. One
-- scratch table per view and schema version: a decode sets every feature
-- of its version, so nothing of an earlier row can linger in it.
local function scratch_for(v, p)
  local version = p[0] + p[1] * 256
  local by_version = v.scratch
  if not by_version then
    by_version = {}
    v.scratch = by_version
  end
  local row = by_version[version]
  if not row then
    row = {}
    by_version[version] = row
  end
  return row
end

-- A view's columns in an answer are `cols`: for each, its index in
-- results, its feature and whether it is PII shown in clear.
-- Entity i's cells of every column: no value, with status.
local function mark_all(results, cols, i, status)
  for c = 1, #cols do
    local col = results[cols[c].index]
    col.values[i], col.statuses[i], col.event_timestamps[i] = json.null, status, EPOCH_TEXT
  end
end

-- Fills entity i's cells of a view's columns from its online value at
-- ptr (event time then row, valid until the next read), or as NOT_FOUND
-- when ptr is nil: for each entity LMDB's fill_view or the Redis path reads.
local function fill_entity(fs, v, results, cols, i, key, ptr, now, ttl, has_transforms)
  if not ptr then
    mark_all(results, cols, i, "NOT_FOUND")
    return
  end
  -- Valid until the next read: decoded straight away.
  local p8 = ffi.cast("const uint8_t*", ptr)
  local t = unpack_time_ptr(p8)
  local row = codec.decode_ptr(p8 + 8, v.by_version, scratch_for(v, p8 + 8))
  if has_transforms then
    row[v.join_key] = key
    apply_transforms(fs, v, row)
  end
  local stamp, old = format_time(t), ttl > 0 and now - t > ttl
  for c = 1, #cols do
    local spec = cols[c]
    local col, feature = results[spec.index], spec.feature
    local value = row[feature]
    if value ~= nil and spec.pii then value = export_value(fs, v, feature, value) end
    col.event_timestamps[i] = stamp
    if value == nil then
      col.values[i], col.statuses[i] = json.null, "NULL_VALUE"
    else
      col.values[i], col.statuses[i] = value, old and "OUTSIDE_MAX_AGE" or "PRESENT"
    end
  end
  if has_transforms then
    for name in pairs(v.transforms) do row[name] = nil end
    row[v.join_key] = nil
  end
end

-- Each entity's online key (keys.pack("u32 s", view id, key)) is built in
-- this buffer and read from it: two strings an entity, made and collected,
-- were a tenth of a 100-entity call.
local key_buf = require("string.buffer").new(256)
local escape_string, STRING_END = keys.escape_string, keys.STRING_END

-- The online value of entity key (a string) of the view whose key prefix
-- is prefix, through the point reader read: pointer, length, or nil.
local function read_online(read, prefix, key)
  key_buf:reset():put(prefix, escape_string(key), STRING_END)
  return read(key_buf:ref())
end

local function fill_view(fs, v, results, cols, ks, n, read, now)
  local prefix = v.online_prefix
  if not prefix then
    prefix = keys.pack("u32", v.id)
    v.online_prefix = prefix
  end
  local has_transforms = v.transforms and next(v.transforms) ~= nil
  local ttl = (v.ttl or 0) * 1e6
  for i = 1, n do
    local key = ks[i]
    fill_entity(fs, v, results, cols, i, key, read_online(read, prefix, tostring(key)), now, ttl, has_transforms)
  end
end

-- The same on a Redis Cluster (features/online_redis.lua): the views of
-- one entity read together, one HMGET per entity key, all pipelined. A
-- cell whose node gave no answer within the client's budget is
-- UNAVAILABLE (value null), never waited on longer.
local MIN_VALUE = 8 + 2   -- event time, schema version
local function fill_views_redis(fs, backend, results, shape, entity_keys, n, now)
  local groups, order, by_view = {}, {}, shape.by_view
  for _, v in ipairs(shape.views) do
    local g = groups[v.entity]
    if not g then
      g = { views = {} }
      groups[v.entity] = g
      order[#order + 1] = g
    end
    g.views[#g.views + 1] = v
  end
  for _, g in ipairs(order) do
    local views = g.views
    local ks = entity_keys[views[1].join_key]
    local b = backend:read_rows(views, ks, n)
    for j, v in ipairs(views) do
      local cols = by_view[v]
      local has_transforms = v.transforms and next(v.transforms) ~= nil
      local ttl = (v.ttl or 0) * 1e6
      for i = 1, n do
        local it = b:items(i)
        local item = it and it[0].type == redis.ARRAY and it[j] or nil
        if item and item.type == redis.STRING and item.len >= MIN_VALUE then
          fill_entity(fs, v, results, cols, i, ks[i], item.str, now, ttl, has_transforms)
        elseif item and item.type == redis.NIL then
          fill_entity(fs, v, results, cols, i, ks[i], nil, now, ttl, has_transforms)
        else
          mark_all(results, cols, i, "UNAVAILABLE")
        end
      end
    end
    backend.cl:release(b)
  end
end

-- The shape of answers to the resolved refs `order`: their columns grouped
-- by view for filling. Made once per resolution and kept as the answers'
-- metatable (out of what JSON encoders see), which also tells opts.into
-- an answer it can refill.
local shapes = setmetatable({}, { __mode = "k" })
local function shape_of(order)
  local shape = shapes[order]
  if shape then return shape end
  local by_view, views = {}, {}
  for j, o in ipairs(order) do
    local v = o.view
    local cols = by_view[v]
    if not cols then
      cols = {}
      by_view[v] = cols
      views[#views + 1] = v
    end
    cols[#cols + 1] = { index = j + 1, feature = o.feature, pii = v.pii_set[o.feature] and v.pii_clear }
  end
  local join_key = views[1].join_key
  for _, v in ipairs(views) do
    if v.join_key ~= join_key then join_key = nil end
  end
  -- An answer's feature names, the join key's left to each call: copied
  -- whole into each new answer (table.clone, one copy of the array).
  local names = new_table(#order + 1, 0)
  names[1] = ""
  for j, o in ipairs(order) do names[j + 1] = o.ref end
  -- Nothing in it refers to order: LuaJIT's weak keys are no ephemerons,
  -- and a shape that did would keep its key, and itself, for good.
  shape = { width = #order + 1, by_view = by_view, views = views, join_key = join_key, names = names }
  shapes[order] = shape
  return shape
end

-- The first of shape's views whose join key entity_keys lacks, or nil.
-- With one join key for all, no loop: a loop run once per call kept the
-- serving path's trace from reaching the rest of the call.
local function view_without_keys(shape, entity_keys)
  if shape.join_key then return entity_keys[shape.join_key] == nil and shape.views[1] or nil end
  for _, v in ipairs(shape.views) do
    if entity_keys[v.join_key] == nil then return v end
  end
  return nil
end

local function column(n)
  return { values = new_table(n, 0), statuses = new_table(n, 0), event_timestamps = new_table(n, 0) }
end

-- An answer's tables for n entities: the keys' column, then one per ref.
local function answer_of(shape, n)
  local width = shape.width
  local results = new_table(width, 0)
  for j = 1, width do results[j] = column(n) end
  -- Not a tail call: a trace cannot return from a tail-called setmetatable
  -- (LuaJIT's "NYI: return to lower frame"), and this ran interpreted.
  local answer = setmetatable({ metadata = { feature_names = clone(shape.names) }, results = results }, shape)
  return answer
end

--- Latest values of refs ("view:feature" or "view:*") for entity_keys =
-- { join_key = { k1, k2, ... } }, in Feast's response shape, the keys first:
-- { metadata = { feature_names = {join_key, "view:f", ...} },
--   results = { { values = {...}, statuses = {...}, event_timestamps = {...} }, ... } }
-- Statuses: PRESENT, NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE (older than the view's
-- ttl at opts.now, µs, default now; the value is still given); on a Redis
-- Cluster also UNAVAILABLE (the entity's node did not answer in time; value
-- null). nil, message, code on bad input.
-- Reads go through the store's point reader: one snapshot, shared by the
-- reads until the next commit, with no transaction of their own.
-- opts.into: an earlier answer to overwrite when it has the same refs and
-- entity count (a hot loop then allocates nothing per call); else ignored.
-- Its feature names past the join key are the refs' already and are left
-- as they are.
function FS:online(refs, entity_keys, opts)
  local views, order, code = parse_refs(self, refs)
  if not views then return nil, order, code end
  if type(entity_keys) ~= "table" then return errors.fail("invalid", "entities must be a table {join_key = {keys...}}") end
  local now = (opts and opts.now) or timeutil.now()
  local key_name, key_values = next(entity_keys)
  if type(key_values) ~= "table" then return errors.fail("invalid", "entities must map a join key to a list of keys") end
  local shape = shape_of(order)
  local lacking = view_without_keys(shape, entity_keys)
  if lacking then
    return errors.fail("invalid", "no keys for entity '" .. lacking.join_key .. "' (needed by view " .. lacking.name .. ")")
  end
  local n = #key_values
  local into = opts and opts.into
  local res = into and getmetatable(into) == shape and #into.results[1].values == n and into or answer_of(shape, n)
  local results = res.results
  res.metadata.feature_names[1] = key_name
  local kvals, kstat, ktimes = results[1].values, results[1].statuses, results[1].event_timestamps
  for i = 1, n do kvals[i], kstat[i], ktimes[i] = key_values[i], "PRESENT", EPOCH_TEXT end
  local backend = self.online_backend
  if backend then
    fill_views_redis(self, backend, results, shape, entity_keys, n, now)
    return res
  end
  local read = self.store:point_reader("online")
  local by_view = shape.by_view
  for k = 1, #shape.views do
    local v = shape.views[k]
    fill_view(self, v, results, by_view[v], entity_keys[v.join_key], n, read, now)
  end
  return res
end

-- ---- the answer as JSON ------------------------------------------------------

local put_number = require("tycho.core.base").put_json_number
local quote, null = json.quote, json.null
local answer_out = require("string.buffer").new(1024)

-- A ref's bare feature name ("view:f" -> "f"), remembered: bounded.
local bare_names, n_bare = {}, 0
local function bare(ref)
  local name = bare_names[ref]
  if name then return name end
  if n_bare >= 4096 then bare_names, n_bare = {}, 0 end
  name = ref:match("[^:]+$") or ref
  bare_names[ref], n_bare = name, n_bare + 1
  return name
end

local function put_list(out, list)
  out:put("[")
  for i = 1, #list do
    if i > 1 then out:put(",") end
    local v = list[i]
    if type(v) == "number" then
      put_number(out, v)
    elseif type(v) == "string" then
      out:put(quote(v))
    elseif v == null then
      out:put("null")
    else
      out:put(json.encode_exact(v))  -- a transform's boolean or table
    end
  end
  out:put("]")
end

--- fs:online's answer as JSON text, as Feast's feature server writes it:
-- bare feature names unless full_names, lists as [] when empty, numbers
-- in their shortest exact form. Written here rather than by the general
-- encoder (json.encode_exact), which spent two thirds of a one-entity
-- read of /get-online-features walking the answer's tables.
function M.answer_json(res, full_names)
  local out = answer_out
  out:reset()
  out:put('{"metadata":{"feature_names":[')
  local names = res.metadata.feature_names
  for i = 1, #names do
    if i > 1 then out:put(",") end
    out:put(quote(full_names and names[i] or bare(names[i])))
  end
  out:put(']},"results":[')
  local results = res.results
  for j = 1, #results do
    local col = results[j]
    out:put(j > 1 and ',{"values":' or '{"values":')
    put_list(out, col.values)
    out:put(',"statuses":')
    put_list(out, col.statuses)
    out:put(',"event_timestamps":')
    put_list(out, col.event_timestamps)
    out:put("}")
  end
  out:put("]}")
  -- (Not a tail call: a trace cannot return from a tail-called builtin.)
  local text = out:tostring()
  return text
end

--- A prepared reader for the hot path (serving): resolves refs once, then
-- reader:get(key) reads one entity in its own snapshot and returns a table
-- of the refs' values in order (reused between calls: copy what you keep)
-- and the row's event time in µs, or nil when the entity has none. Stale
-- definitions are noticed through the catalog epoch once a second.
-- Statuses and TTL are fs:online's business; on-demand features are computed.
-- On a Redis Cluster each get is one round trip, and an entity whose node
-- does not answer in time reads as nil, "unavailable" (errors.unavailable:
-- its features missing for now, as against an entity that has none).
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
  local backend = self.online_backend
  local point = not backend and self.store:point_reader("online")
  local checked = os.time()
  local reader = {}
  function reader.get(_, entity)
    if os.time() ~= checked then
      checked = os.time()
      local fresh = fs:reader(refs)
      if fresh then reader.get = fresh.get end
    end
    entity = tostring(entity)
    local ptr, why, batch
    if backend then ptr, why, batch = backend:get_ptr(v, entity) else ptr = read_online(point, prefix, entity) end
    if not ptr then return nil, why end
    -- The value is valid until the next read: decode it straight away.
    local p8 = ffi.cast("const uint8_t*", ptr)
    local t = unpack_time_ptr(p8)
    codec.decode_ptr(p8 + 8, v.by_version, row)
    if batch then backend.cl:release(batch) end
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
