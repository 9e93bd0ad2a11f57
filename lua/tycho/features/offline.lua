--- tycho.features, reads of history: the point-in-time join, materialisation to the online
-- store, export and description.
local ffi = require "ffi"
local keys = require "tycho.util.keys"
local frame = require "tycho.core.frame"
local codec = require "tycho.features.rowcodec"
local timeutil = require "tycho.util.timeutil"
local store_mod = require "tycho.core.store"
local errors = require "tycho.util.errors"
local layout = require "tycho.features.layout"
local online_put_many = layout.online_put_many
local references = require "tycho.features.refs"
local parse_refs, apply_transforms, export_value = references.parse_refs, references.apply_transforms, references.export_value

local M = {}
local FS = {}

-- One view's point-in-time join made ready for core/store/tz_asof: the
-- stored features to fetch (the wanted ones, or all when a transform needs
-- the whole row), each version's layout of them, and empty output columns
-- of n rows. The returned table keeps the C arrays it points to alive.
local function prepare_join(v, ecol, n)
  local wanted, needs_all = {}, false
  for _, name in ipairs(v.wanted) do
    if v.transforms and v.transforms[name] then needs_all = true end
  end
  local stored_type, seen = {}, {}
  for _, f in ipairs(v.current) do stored_type[f.name] = f.type end
  for _, f in ipairs(v.current) do
    local want = needs_all
    for _, name in ipairs(v.wanted) do if name == f.name then want = true end end
    if want and not seen[f.name] then seen[f.name] = true wanted[#wanted + 1] = f.name end
  end
  local layouts, keep = ffi.new("tz_asof_layout[?]", #v.versions), {}
  for vi = 1, #v.versions do
    local feats = v.by_version[vi]
    local types, idx = ffi.new("int[?]", #feats), ffi.new("int[?]", math.max(#wanted, 1))
    for j, f in ipairs(feats) do types[j - 1] = frame.types[f.type] end
    for k, name in ipairs(wanted) do
      idx[k - 1] = -1
      for j, f in ipairs(feats) do if f.name == name then idx[k - 1] = j - 1 end end
    end
    layouts[vi - 1].n_features, layouts[vi - 1].types, layouts[vi - 1].wanted = #feats, types, idx
    keep[#keep + 1], keep[#keep + 1] = types, idx
  end
  local cols = ffi.new("tz_column*[?]", math.max(#wanted, 1))
  for k, name in ipairs(wanted) do cols[k - 1] = frame.new_column(name, stored_type[name], n) end
  local spec = ffi.new("tz_asof_view", { view_id = v.id, ttl_us = (v.ttl or 0) * 1e6, n_versions = #v.versions,
                                         layouts = layouts, n_wanted = #wanted })
  return { view = v, wanted = wanted, layouts = layouts, keep = keep, cols = cols, spec = spec, entity = ecol.c,
           column = ecol }
end

--- Point-in-time join: for every row of `spine` (a frame with each view's
-- entity join key and an event-time column, opts.timestamp or
-- "event_time"), the latest values at or before that time and within the
-- view's TTL. refs: {"view:feature", "view:*", ...}. Returns a frame (spine
-- columns, then features; clashing names become view__feature) carrying a
-- fingerprint, or nil, message.
function FS:historical(spine, refs, opts)
  opts = opts or {}
  if not frame.is_frame(spine) then error("historical: spine must be a frame", 2) end
  local views, order = parse_refs(self, refs)
  if not views then return nil, order end
  local tcol = opts.timestamp or "event_time"
  if not spine:has(tcol) then return nil, "the spine has no event-time column '" .. tcol .. "'" end
  local n = spine:nrows()
  local tc = spine:col(tcol)
  local t64 = ffi.new("int64_t[?]", math.max(n, 1))
  local parsed, bad = store_mod.column_times(tc.c, t64)
  if not parsed then
    local _, terr = timeutil.parse(tc:get(bad))
    return nil, "spine row " .. bad .. ": " .. tostring(terr or "out of range (beyond ±2^53 µs)")
  end
  local names = {}
  for _, o in ipairs(order) do names[o.feature] = (names[o.feature] or 0) + 1 end
  -- Each view's join prepared, then all run at once (one core each), then
  -- their columns attached.
  local joins = {}
  for vname, v in pairs(views) do
    if not spine:has(v.join_key) then
      return nil, "the spine has no entity column '" .. v.join_key .. "' for view " .. vname
    end
    local ecol = spine:col(v.join_key)
    if ecol.code ~= 1 and ecol.code ~= 3 then
      return nil, "entity column '" .. v.join_key .. "' must hold strings or integers"
    end
    joins[#joins + 1] = prepare_join(v, ecol, n)
  end
  local nv = #joins
  local specs, entities = ffi.new("tz_asof_view[?]", math.max(nv, 1)), ffi.new("const tz_column*[?]", math.max(nv, 1))
  local outs = ffi.new("tz_column *const *[?]", math.max(nv, 1))
  for i, j in ipairs(joins) do specs[i - 1], entities[i - 1], outs[i - 1] = j.spec, j.entity, j.cols end
  local ok, jerr = self.store:asof_join_views("offline", nv, specs, entities, t64, n, outs)
  if not ok then
    for _, j in ipairs(joins) do
      for k = 1, #j.wanted do frame.release_column(j.cols[k - 1]) end
    end
    return nil, jerr
  end
  local attached, derived = {}, {}
  for _, j in ipairs(joins) do
    local v = j.view
    -- Columns out: renamed on clashes; PII stored in clear is hashed here.
    local list = {}
    for k = 1, #j.wanted do list[k] = j.cols[k - 1] end
    local fetched = frame.new({}, { n = n }):attach(list)
    for _, o in ipairs(order) do
      if o.view == v then
        local colname = (names[o.feature] > 1 or spine:has(o.feature)) and (v.name .. "__" .. o.feature) or o.feature
        local into = v.transforms and v.transforms[o.feature] and derived or attached
        into[#into + 1] = { view = v, feature = o.feature, colname = colname, fetched = fetched }
      end
    end
  end
  local out = spine
  for _, a in ipairs(attached) do
    local col = a.fetched:col(a.feature)
    if a.view.pii_set[a.feature] and a.view.pii_clear then
      local values = {}
      for i = 1, n do values[i] = export_value(self, a.view, a.feature, col:get(i)) end
      out = out:with_column(a.colname, values, "string")
    else
      -- The fetched column itself, renamed in place on a clash (it is this
      -- join's own, unshared): no copy of its values.
      if a.colname ~= a.feature then frame.rename_column(col.c, a.colname) end
      out = out:attach({ col.c })
      frame.retain_column(col.c)  -- attach took the reference it was given
    end
  end
  for _, d in ipairs(derived) do
    local values = {}
    local feats = d.fetched:names()
    for i = 1, n do
      local any = false
      local ctx = spine:row(i)
      for _, name in ipairs(feats) do
        local value = d.fetched:col(name):get(i)
        if value ~= nil then any = true end
        ctx[name] = value
      end
      if any then
        apply_transforms(self, d.view, ctx)
        values[i] = ctx[d.feature]
      end
    end
    out = out:with_column(d.colname, values)
  end
  local versions = {}
  for vname, v in pairs(views) do versions[vname] = v.version end
  local tmin, tmax
  for i = 0, n - 1 do
    local t = tonumber(t64[i])
    tmin = math.min(tmin or t, t)
    tmax = math.max(tmax or t, t)
  end
  out.provenance = { views = versions, refs = refs, rows = n,
                     time_range = tmin and { timeutil.format(tmin), timeutil.format(tmax) } or nil }
  -- The spine's keys and time are roles, not features (frame/roles.lua).
  local role_keys, seen_key = {}, {}
  for _, v in pairs(views) do
    if spine:has(v.join_key) and not seen_key[v.join_key] then
      seen_key[v.join_key] = true
      role_keys[#role_keys + 1] = v.join_key
    end
  end
  table.sort(role_keys)
  return out:with_roles({ keys = role_keys, time = tcol })
end

--- Copies offline history with event times in [from, to] (µs or time
-- text; default everything) to the online store, keeping the newest per
-- entity and never replacing a newer online value. Returns the count written.
function FS:materialize(view, from, to)
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  local lo, hi = -math.huge, math.huge
  for i, t in ipairs { from or false, to or false } do
    if t then
      local us, terr = timeutil.parse(t)
      if not us then return errors.fail("invalid", (i == 1 and "from: " or "to: ") .. terr) end
      if i == 1 then lo = us else hi = us end
    end
  end
  local latest = {}
  self.store:view(function(tx)
    for k, val in tx:scan("offline", { prefix = keys.pack("u32", v.id) }) do
      local _, entity, t = keys.unpack("u32 s i64", k)
      if t >= lo and t <= hi then
        local cur = latest[entity]
        if not cur or t >= cur[1] then latest[entity] = { t, val } end
      end
    end
  end)
  local rows = {}
  for entity, e in pairs(latest) do rows[#rows + 1] = { entity, e[1], e[2] } end
  local written = 0
  -- In batches: on a cluster, each is one pipelined round trip per node.
  self.store:update(function(tx)
    written = 0
    for i = 1, #rows, 1000 do
      written = written + online_put_many(tx, v, { unpack(rows, i, math.min(i + 999, #rows)) })
    end
  end)
  return written
end

--- Every offline row of a view as a frame (entity key, event time, features;
-- PII as tokens).
function FS:export(view)
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  local rows = {}
  self.store:view(function(tx)
    for k, val in tx:scan("offline", { prefix = keys.pack("u32", v.id) }) do
      local _, entity, t = keys.unpack("u32 s i64", k)
      local r = codec.decode(val, v.by_version)
      for name, value in pairs(r) do r[name] = export_value(self, v, name, value) end
      r[v.join_key], r[v.timestamp] = entity, timeutil.format(t)
      rows[#rows + 1] = r
    end
  end)
  local order = { v.join_key, v.timestamp }
  local types = { [v.join_key] = "string", [v.timestamp] = "string" }
  for _, f in ipairs(v.features) do
    order[#order + 1] = f.name
    types[f.name] = (v.pii_set[f.name]) and "string" or f.type
  end
  return frame.from_rows(rows, { order = order, types = types })
end

--- A view's definition with row counts, freshness and per-feature statistics.
function FS:describe(view)
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  local data = self:export(view)
  local entities = {}
  local newest
  for i = 1, data:nrows() do
    entities[data:col(v.join_key):get(i)] = true
    local t = data:col(v.timestamp):get(i)
    if not newest or t > newest then newest = t end
  end
  local n_entities = 0
  for _ in pairs(entities) do n_entities = n_entities + 1 end
  local stats = {}
  if data:nrows() > 0 then
    local d = data:drop(v.join_key, v.timestamp):describe()
    for i = 1, d:nrows() do stats[#stats + 1] = d:row(i) end
  end
  return { name = v.name, entity = v.entity, join_key = v.join_key, version = v.version, owner = v.owner,
           tags = v.tags, description = v.description, ttl = v.ttl, pii = v.pii, rows = data:nrows(),
           entities = n_entities, freshness = newest, features = v.features, stats = stats,
           transforms = v.transforms }
end

M.methods = FS

return M
