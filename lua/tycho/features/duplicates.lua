--- tycho.features, duplicate features across teams: features of different
-- views whose values agree for the same entities (identical, or correlated
-- above a threshold on a sample of the entities both views hold), found
-- from the online store; and a warning when a new view declares a feature
-- another view already has under the same name and type.
local codec = require "tycho.features.rowcodec"
local keys = require "tycho.util.keys"
local json = require "tycho.util.json"

local M = {}
local FS = {}

local NUMERIC = { float = true, int = true, bool = true }

-- Up to `limit` entities' latest rows of a view: { entity = row }.
local function sample_rows(fs, v, limit)
  local rows, n = {}, 0
  fs.store:view(function(tx)
    for k, raw in tx:scan("online", { prefix = keys.pack("u32", v.id) }) do
      local _, entity = keys.unpack("u32 s", k)
      rows[entity] = codec.decode(raw:sub(9), v.by_version)
      n = n + 1
      if n >= limit then break end
    end
  end)
  return rows
end

local function as_number(x)
  if type(x) == "boolean" then return x and 1 or 0 end
  return x
end

-- How two features agree over the entities both rows tables hold:
-- shared count, identical fraction, Pearson correlation (numeric only).
local function agreement(rows_a, fa, rows_b, fb)
  local shared, same = 0, 0
  local sx, sy, sxx, syy, sxy = 0, 0, 0, 0, 0
  local numeric = NUMERIC[fa.type] and NUMERIC[fb.type]
  for entity, ra in pairs(rows_a) do
    local rb = rows_b[entity]
    local x, y = ra[fa.name], rb and rb[fb.name]
    if x ~= nil and y ~= nil then
      shared = shared + 1
      if x == y then same = same + 1 end
      if numeric then
        x, y = as_number(x), as_number(y)
        sx, sy, sxx, syy, sxy = sx + x, sy + y, sxx + x * x, syy + y * y, sxy + x * y
      end
    end
  end
  local r
  if numeric and shared > 1 then
    local vx, vy = sxx - sx * sx / shared, syy - sy * sy / shared
    if vx > 0 and vy > 0 then r = (sxy - sx * sy / shared) / math.sqrt(vx * vy) end
  end
  return shared, shared > 0 and same / shared or 0, r
end

-- The views to compare: every view, or with `only` (a view name) that view
-- and the others of its entity; nil, message, code for an unknown one.
local function views_to_compare(fs, only)
  local target
  if only then
    local err, code
    target, err, code = fs:view(only)
    if not target then return nil, err, code end
  end
  local views = {}
  for _, entry in ipairs(fs:list()) do
    if not target or entry.entity == target.entity then
      local v = fs:view(entry.name)
      if v then views[#views + 1] = v end
    end
  end
  return views
end

--- Features of different views that hold the same information. opts:
-- threshold (|correlation| at least this, 0.99), sample (entities read per
-- view, 5000), min_shared (entities both views must hold, 20), view (only
-- pairs with a feature of this view: it is compared with the views of its
-- entity alone). Returns a list, strongest first, of { a = "view:feature",
-- b = "view:feature", owners = { a's, b's }, shared = entities compared,
-- identical = fraction of equal values, correlation = Pearson's r or nil };
-- or nil, message, "not_found" when opts.view names no view.
function FS:duplicates(opts)
  opts = opts or {}
  local threshold, sample, min_shared = opts.threshold or 0.99, opts.sample or 5000, opts.min_shared or 20
  local views, err, code = views_to_compare(self, opts.view)
  if not views then return nil, err, code end
  local rows = {}
  for _, v in ipairs(views) do rows[v.name] = sample_rows(self, v, sample) end
  local found = {}
  for i = 1, #views do
    for j = i + 1, #views do
      local a, b = views[i], views[j]
      if a.entity == b.entity and (not opts.view or a.name == opts.view or b.name == opts.view) then
        for _, fa in ipairs(a.current) do
          for _, fb in ipairs(b.current) do
            local shared, identical, r = agreement(rows[a.name], fa, rows[b.name], fb)
            if shared >= min_shared and (identical == 1 or (r and math.abs(r) >= threshold)) then
              found[#found + 1] = { a = a.name .. ":" .. fa.name, b = b.name .. ":" .. fb.name,
                                    owners = { a.owner or "-", b.owner or "-" }, shared = shared,
                                    identical = identical, correlation = r }
            end
          end
        end
      end
    end
  end
  table.sort(found, function(x, y)
    if x.identical ~= y.identical then return x.identical > y.identical end
    return math.abs(x.correlation or 0) > math.abs(y.correlation or 0)
  end)
  return found
end

--- The features of definition `def` that other views of the same entity
-- already declare under the same name and type: { "feature (type) is also
-- in view V (owner O)" }. What fs:feature_view warns about.
-- Which views hold a feature of a given entity, name and type: one key per
-- (entity, feature, view), kept with each view's record, so a new view's
-- look for redeclared features reads a few keys instead of every view.
local FEATURE_INDEX = "feature_index/"

local function feature_index_key(entity, feature, view)
  return FEATURE_INDEX .. entity .. "\0" .. feature .. "\0" .. (view or "")
end

--- Writes view record v's features into the feature index (in tx).
function M.index_features(tx, v)
  for _, f in ipairs(v.features or {}) do
    tx:put("catalog", feature_index_key(v.entity, f.name, v.name), f.type)
  end
end

--- The views other than `except` with a feature `name` of entity `entity`:
-- { {view, type} } in view-name order. The index is built from the view
-- records once, in a home made before it existed.
function M.views_with_feature(store, entity, name, except)
  local built = store:view(function(tx) return tx:get("catalog", "meta/feature_index") end)
  if not built then
    store:update(function(tx)
      for _, raw in tx:scan("catalog", { prefix = "view/" }) do M.index_features(tx, json.decode(raw)) end
      tx:put("catalog", "meta/feature_index", "1")
    end)
  end
  local prefix = feature_index_key(entity, name)
  return store:view(function(tx)
    local out = {}
    for k, ftype in tx:scan("catalog", { prefix = prefix }) do
      local view = k:sub(#prefix + 1)
      if view ~= except then out[#out + 1] = { view = view, type = ftype } end
    end
    return out
  end)
end

function M.same_name_elsewhere(fs, def, features)
  local by_view, views = {}, {}
  for _, f in ipairs(features) do
    for _, hit in ipairs(M.views_with_feature(fs.store, def.entity, f.name, def.name)) do
      if hit.type == f.type then
        if not by_view[hit.view] then
          by_view[hit.view] = {}
          views[#views + 1] = hit.view
        end
        table.insert(by_view[hit.view], f)
      end
    end
  end
  table.sort(views)
  local out = {}
  for _, name in ipairs(views) do
    local v = fs:view(name)
    for _, f in ipairs(by_view[name]) do
      out[#out + 1] = string.format("feature '%s' (%s) is also in view %s (owner %s)", f.name, f.type, name,
        v and v.owner or "-")
    end
  end
  return out
end

M.methods = FS

return M
