--- tycho.features, the catalog: entities and feature views (schemas, versions, owners, tags, PII marks,
-- transforms), listed and looked up.
local json = require "tycho.util.json"
local timeutil = require "tycho.util.timeutil"
local errors = require "tycho.util.errors"
local duplicates = require "tycho.features.duplicates"

local M = {}
local FS = {}

local TYPES = { float = "float", double = "float", int = "int", integer = "int", int64 = "int",
                bool = "bool", boolean = "bool", string = "string", str = "string" }

-- Every definition change bumps the catalog epoch, so readers (in this or
-- another process) know when their cached definitions are stale.
local function bump_epoch(tx)
  tx:put("catalog", "meta/epoch", tostring(tonumber(tx:get("catalog", "meta/epoch") or "0") + 1))
end

-- Stores a definition's JSON (raw) under field ("entity/NAME" or
-- "view/NAME") in tx; the caller bumps the epoch. A view's features go
-- into the feature index, and the home's next view id stays past its id:
-- a view the cluster numbered must not share its id with one made here.
local function store_record(tx, field, raw)
  tx:put("catalog", field, raw)
  if field:sub(1, 5) ~= "view/" then return end
  local v = json.decode(raw)
  duplicates.index_features(tx, v)
  if v.id >= tonumber(tx:get("catalog", "meta/next_view_id") or "1") then
    tx:put("catalog", "meta/next_view_id", tostring(v.id + 1))
  end
end

-- Stores the record make(tx) builds (or refuses: nil, message, code) as
-- kind/name: in the home, or with a cluster in its shared catalog
-- (features/catalog_shared.lua), which copies it here. A new view, built
-- without an id, gets the home's next one (or the cluster's).
local function write(fs, kind, name, make)
  if fs.shared then return fs.shared:write(fs.store, kind, name, make) end
  return fs.store:update(function(tx)
    local rec, err, code = make(tx)
    if not rec then return nil, err, code end
    if kind == "view" and not rec.id then rec.id = tonumber(tx:get("catalog", "meta/next_view_id") or "1") end
    store_record(tx, kind .. "/" .. name, json.encode(rec))
    bump_epoch(tx)
    return rec
  end)
end

--- Declares (or updates) an entity: { name, join_key, description }.
-- Returns it, or nil, message, code when a cluster's shared catalog could
-- not take it.
function FS:entity(def)
  if type(def) ~= "table" or type(def.name) ~= "string" then error("entity: needs a name", 2) end
  local e = { name = def.name, join_key = def.join_key or def.name, description = def.description }
  local ok, err, code = write(self, "entity", def.name, function() return e end)
  if not ok then return nil, err, code end
  return e
end

local function normalise_schema(schema)
  if type(schema) ~= "table" then error("feature_view: schema must be a table of feature = type", 4) end
  local names = {}
  for name in pairs(schema) do names[#names + 1] = name end
  table.sort(names)
  local out, checks = {}, {}
  for _, name in ipairs(names) do
    local spec = schema[name]
    if type(spec) == "string" then spec = { type = spec } end
    local t = TYPES[spec.type]
    if not t then error("feature_view: feature '" .. name .. "' has unknown type '" .. tostring(spec.type) .. "'", 4) end
    out[#out + 1] = { name = name, type = t, min = spec.min, max = spec.max, values = spec.values,
                      nullable = spec.nullable, column = spec.column, transform = spec.transform,
                      description = spec.description }
    if spec.check then checks[name] = spec.check end
  end
  return out, checks
end

-- Versions hold the stored shape: PII features are stored as string tokens.
local function stored_features(features, pii)
  local out = {}
  for i, f in ipairs(features) do
    out[i] = { name = f.name, type = (pii[f.name] and not pii.clear) and "string" or f.type }
  end
  return out
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

-- A view's expectations on its data quality, checked: { max_missing =
-- ratio in [0, 1] (per feature), max_lag = duration (event freshness) }.
local function expectations(expect)
  if expect == nil then return nil end
  if type(expect) ~= "table" then error("feature_view: expect must be a table", 3) end
  local out = {}
  for k, val in pairs(expect) do
    if k == "max_missing" then
      if type(val) ~= "number" or val < 0 or val > 1 then error("feature_view: expect.max_missing is a ratio in [0, 1]", 3) end
      out.max_missing = val
    elseif k == "max_lag" then
      local ok, secs = pcall(timeutil.duration, val)
      if not ok or not secs then error("feature_view: expect.max_lag is a duration like \"2h\"", 3) end
      out.max_lag = secs
    else
      error("feature_view: unknown expectation '" .. tostring(k) .. "' (max_missing, max_lag)", 3)
    end
  end
  return out
end

-- The redefinition v over the stored view old: old features keep their
-- positions, added ones are appended as a new version; removing a feature
-- or changing its type is refused (conflict).
local function evolve(v, old, pii)
  local by_name, seen, added = {}, {}, {}
  for _, f in ipairs(old.features) do by_name[f.name] = f end
  for _, f in ipairs(v.features) do
    seen[f.name] = true
    local was = by_name[f.name]
    if was and was.type ~= f.type then
      return errors.fail("conflict", string.format(
        "incompatible change to view '%s': feature '%s' changes type from %s to %s", v.name, f.name, was.type, f.type))
    end
    if not was then added[#added + 1] = f end
  end
  for _, f in ipairs(old.features) do
    if not seen[f.name] then
      return errors.fail("conflict",
        string.format("incompatible change to view '%s': feature '%s' would be removed", v.name, f.name))
    end
  end
  local ordered = {}
  for _, f in ipairs(old.features) do
    for _, nf in ipairs(v.features) do if nf.name == f.name then ordered[#ordered + 1] = nf end end
  end
  for _, f in ipairs(added) do ordered[#ordered + 1] = f end
  v.features, v.id, v.versions, v.created = ordered, old.id, old.versions, old.created
  v.version = old.version + (#added > 0 and 1 or 0)
  if #added > 0 then v.versions[#v.versions + 1] = { version = v.version, features = stored_features(ordered, pii) } end
  return v
end

-- The record of view def (features, expect and transforms checked in
-- prep) against tx's catalog: a new one (version 1, no id yet; prep.created
-- says so) or the stored one evolved; nil, message, code when the entity is
-- unknown or the change incompatible.
local function make_view(tx, def, prep)
  local entity = tx:get_json("catalog", "entity/" .. tostring(def.entity))
  if not entity then
    return errors.fail("not_found", "unknown entity '" .. tostring(def.entity) .. "' (declare it with fs:entity)")
  end
  local pii = set_of(def.pii)
  pii.clear = def.pii_clear and true or nil
  local v = {
    name = def.name, entity = def.entity, join_key = entity.join_key, timestamp = def.timestamp or "event_time",
    ttl = timeutil.duration(def.ttl) or 0, owner = def.owner, tags = def.tags or {}, description = def.description,
    source = def.source, pii = def.pii or {}, pii_clear = def.pii_clear or false, transforms = prep.transforms,
    expect = prep.expect,
    features = prep.features, updated = os.time(),
  }
  local old = tx:get_json("catalog", "view/" .. def.name)
  prep.created = old == nil
  if old then return evolve(v, old, pii) end
  v.version, v.created = 1, os.time()
  v.versions = { { version = 1, features = stored_features(prep.features, pii) } }
  return v
end

--- Declares a feature view. def: name, entity, schema ({feature = type or
-- {type, min, max, values, nullable = false, check = fn(value, row)}}),
-- timestamp (column, default "event_time"), ttl ("30d"), owner, tags,
-- description, source, pii (list of features; stored as keyed hashes),
-- pii_clear (store them in clear; exports still hash them), transforms
-- ({name = "function(row) ... end"}: on-demand features, Lua source),
-- check (fn(row) -> ok, reason), expect ({ max_missing = 0.05, max_lag =
-- "2h" }: data-quality expectations, see fs:quality). Redefining with added
-- features makes a new version; removing a feature or changing its type is
-- refused. With a cluster the definition goes to its shared catalog.
-- Returns the stored definition, or nil, the reason and a code (not_found:
-- no such entity; conflict: an incompatible change; unavailable or busy:
-- the cluster's catalog could not take it).
function FS:feature_view(def)
  if type(def) ~= "table" or type(def.name) ~= "string" or def.name:find(":") then
    error("feature_view: needs a name without ':'", 2)
  end
  local features, checks = normalise_schema(def.schema)
  local expect = expectations(def.expect)
  local transforms = def.transforms or {}
  for name, src in pairs(transforms) do
    if type(src) ~= "string" then error("feature_view: transform '" .. name .. "' must be Lua source text", 2) end
    local fn, cerr = self:_compile(src)
    if not fn then error("feature_view: transform '" .. name .. "': " .. cerr, 2) end
  end
  local prep = { features = features, expect = expect, transforms = transforms }
  local result, reason, code = write(self, "view", def.name, function(tx) return make_view(tx, def, prep) end)
  if not result then return nil, reason, code end
  self.checks[def.name] = { features = checks, row = def.check }
  -- A new view that redeclares another team's feature (same entity, name
  -- and type) is told so: it may be a duplicate (fs:duplicates compares values).
  if prep.created then
    result.warnings = duplicates.same_name_elsewhere(self, def, features)
    for _, w in ipairs(result.warnings) do io.stderr:write("feature_view ", def.name, ": ", w, "\n") end
  end
  return result
end

local function load_view(fs, tx, name)
  local v = tx:get_json("catalog", "view/" .. tostring(name))
  if not v then return nil end
  v.by_version = {}
  for _, ver in ipairs(v.versions) do v.by_version[ver.version] = ver.features end
  v.current = v.by_version[v.version]
  v.pii_set = set_of(v.pii)
  local _ = fs
  return v
end

--- A view's definition, or nil, message.
function FS:view(name)
  if self.shared then self.shared:before_read(self.store) end
  local v = self.store:view(function(tx) return load_view(self, tx, name) end)
  if not v then return errors.fail("not_found", "unknown feature view '" .. tostring(name) .. "'") end
  return v
end

--- Views, filtered: { owner =, tag =, search = text }. Each entry lists its
-- features; `duplicates` names features defined identically (same source,
-- column and transform) in another view.
function FS:list(filter)
  filter = filter or {}
  if self.shared then self.shared:before_read(self.store) end
  local views = self.store:view(function(tx)
    local out = {}
    for _, raw in tx:scan("catalog", { prefix = "view/" }) do out[#out + 1] = json.decode(raw) end
    return out
  end)
  local signature = {}
  for _, v in ipairs(views) do
    for _, f in ipairs(v.features) do
      local sig = table.concat({ tostring(v.source or v.name), f.column or f.name, f.transform or "" }, "\0")
      signature[sig] = signature[sig] or {}
      table.insert(signature[sig], v.name .. ":" .. f.name)
    end
  end
  local out = {}
  for _, v in ipairs(views) do
    local text = (v.name .. " " .. (v.description or "") .. " " .. table.concat(v.tags or {}, " ")):lower()
    local keep = (not filter.owner or v.owner == filter.owner)
      and (not filter.tag or set_of(v.tags)[filter.tag])
      and (not filter.search or text:find(filter.search:lower(), 1, true))
    if keep then
      local entry = { name = v.name, entity = v.entity, owner = v.owner, tags = v.tags, version = v.version,
                      description = v.description, features = {}, duplicates = {} }
      for _, f in ipairs(v.features) do
        entry.features[#entry.features + 1] = f.name
        local sig = table.concat({ tostring(v.source or v.name), f.column or f.name, f.transform or "" }, "\0")
        for _, other in ipairs(signature[sig]) do
          if other ~= v.name .. ":" .. f.name then entry.duplicates[#entry.duplicates + 1] = f.name .. " = " .. other end
        end
      end
      out[#out + 1] = entry
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

M.load_view = load_view
M.set_of = set_of
M.store_record = store_record
M.bump_epoch = bump_epoch
M.methods = FS

return M
