--- The feature store (Feast's vocabulary) on the home's LMDB store.
--
--   local fs = tycho.features.open()
--   fs:entity { name = "user", join_key = "user_id" }
--   fs:feature_view { name = "user_stats", entity = "user", ttl = "30d",
--                     schema = { clicks = "int", spend = { type = "float", min = 0 } } }
--   local report = fs:ingest("user_stats", "stats.csv")     -- validated, quarantined
--   local train = fs:historical(spine, { "user_stats:*" })  -- point-in-time correct
--   fs:online({ "user_stats:spend" }, { user_id = { "u1", "u2" } })
--
-- Layout (DESIGN.md, "Data home"): catalog "entity/NAME", "view/NAME" (JSON);
-- offline key (view id u32, entity s, event time i64 µs) -> encoded row;
-- online key (view id u32, entity s) -> i64 event time µs .. encoded row.
-- A write to the online store never replaces a newer event time.
local ffi = require "ffi"
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local store_mod = require "tycho.core.store"
local frame = require "tycho.core.frame"
local codec = require "tycho.features.rowcodec"
local timeutil = require "tycho.util.timeutil"
local internal = require "tycho.internal"
local base = require "tycho.core.base"
local C = require "tycho.core.kernels"
local sandbox = require "tycho.util.sandbox"
local errors = require "tycho.util.errors"

local M = {}

local TYPES = { float = "float", double = "float", int = "int", integer = "int", int64 = "int",
                bool = "bool", boolean = "bool", string = "string", str = "string" }

local FS = {}
FS.__index = FS

--- Opens the feature store of a home (default: this process's home).
-- opts: home, store (an open tycho.store), quarantine_dir.
function M.open(opts)
  opts = opts or {}
  local st, e = store_mod.from(opts)
  if not st then return nil, e end
  local home = opts.home or st.path or internal.home
  return setmetatable({ store = st, home = home, checks = {}, compiled = {}, view_cache = {},
                        refs_cache = {}, refs_cached = 0,
                        quarantine_dir = opts.quarantine_dir or (home .. "/quarantine") }, FS)
end

-- ---- catalog -------------------------------------------------------------------


-- Every definition change bumps the catalog epoch, so readers (in this or
-- another process) know when their cached definitions are stale.
local function bump_epoch(tx)
  tx:put("catalog", "meta/epoch", tostring(tonumber(tx:get("catalog", "meta/epoch") or "0") + 1))
end

--- Declares (or updates) an entity: { name, join_key, description }.
function FS:entity(def)
  if type(def) ~= "table" or type(def.name) ~= "string" then error("entity: needs a name", 2) end
  local e = { name = def.name, join_key = def.join_key or def.name, description = def.description }
  self.store:update(function(tx)
    tx:put_json("catalog", "entity/" .. def.name, e)
    bump_epoch(tx)
  end)
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

--- Declares a feature view. def: name, entity, schema ({feature = type or
-- {type, min, max, values, nullable = false, check = fn(value, row)}}),
-- timestamp (column, default "event_time"), ttl ("30d"), owner, tags,
-- description, source, pii (list of features; stored as keyed hashes),
-- pii_clear (store them in clear; exports still hash them), transforms
-- ({name = "function(row) ... end"}: on-demand features, Lua source),
-- check (fn(row) -> ok, reason). Redefining with added features makes a new
-- version; removing a feature or changing its type is refused.
-- Returns the stored definition, or nil and the reason.
function FS:feature_view(def)
  if type(def) ~= "table" or type(def.name) ~= "string" or def.name:find(":") then
    error("feature_view: needs a name without ':'", 2)
  end
  local features, checks = normalise_schema(def.schema)
  local transforms = def.transforms or {}
  for name, src in pairs(transforms) do
    if type(src) ~= "string" then error("feature_view: transform '" .. name .. "' must be Lua source text", 2) end
    local fn, cerr = self:_compile(src)
    if not fn then error("feature_view: transform '" .. name .. "': " .. cerr, 2) end
  end
  local result, reason = self.store:update(function(tx)
    local entity = tx:get_json("catalog", "entity/" .. tostring(def.entity))
    if not entity then return nil, "unknown entity '" .. tostring(def.entity) .. "' (declare it with fs:entity)" end
    local old = tx:get_json("catalog", "view/" .. def.name)
    local pii = set_of(def.pii)
    pii.clear = def.pii_clear and true or nil
    local v = {
      name = def.name, entity = def.entity, join_key = entity.join_key, timestamp = def.timestamp or "event_time",
      ttl = timeutil.duration(def.ttl) or 0, owner = def.owner, tags = def.tags or {}, description = def.description,
      source = def.source, pii = def.pii or {}, pii_clear = def.pii_clear or false, transforms = transforms,
      features = features, updated = os.time(),
    }
    if old then
      local by_name = {}
      for _, f in ipairs(old.features) do by_name[f.name] = f end
      local added = {}
      local seen = {}
      for _, f in ipairs(features) do
        seen[f.name] = true
        local was = by_name[f.name]
        if was and was.type ~= f.type then
          return nil, string.format("incompatible change to view '%s': feature '%s' changes type from %s to %s",
            def.name, f.name, was.type, f.type)
        end
        if not was then added[#added + 1] = f end
      end
      for _, f in ipairs(old.features) do
        if not seen[f.name] then
          return nil, string.format("incompatible change to view '%s': feature '%s' would be removed", def.name, f.name)
        end
      end
      -- Old features keep their positions; new ones are appended.
      local ordered = {}
      for _, f in ipairs(old.features) do
        for _, nf in ipairs(features) do if nf.name == f.name then ordered[#ordered + 1] = nf end end
      end
      for _, f in ipairs(added) do ordered[#ordered + 1] = f end
      v.features, v.id, v.versions, v.created = ordered, old.id, old.versions, old.created
      v.version = old.version + (#added > 0 and 1 or 0)
      if #added > 0 then v.versions[#v.versions + 1] = { version = v.version, features = stored_features(ordered, pii) } end
    else
      local next_id = tonumber(tx:get("catalog", "meta/next_view_id") or "1")
      tx:put("catalog", "meta/next_view_id", tostring(next_id + 1))
      v.id, v.version, v.created = next_id, 1, os.time()
      v.versions = { { version = 1, features = stored_features(features, pii) } }
    end
    tx:put_json("catalog", "view/" .. def.name, v)
    bump_epoch(tx)
    return v
  end)
  if not result then return nil, reason end
  self.checks[def.name] = { features = checks, row = def.check }
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
  local v = self.store:view(function(tx) return load_view(self, tx, name) end)
  if not v then return errors.fail("not_found", "unknown feature view '" .. tostring(name) .. "'") end
  return v
end

--- Views, filtered: { owner =, tag =, search = text }. Each entry lists its
-- features; `duplicates` names features defined identically (same source,
-- column and transform) in another view.
function FS:list(filter)
  filter = filter or {}
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

-- ---- values -------------------------------------------------------------------------

local function pii_key(fs)
  if fs._pii_key then return fs._pii_key end
  local key = fs.store:update(function(tx)
    local k = tx:get("catalog", "meta/pii_key")
    if not k then
      local f = assert(io.open("/dev/urandom", "rb"))
      k = f:read(16)
      f:close()
      tx:put("catalog", "meta/pii_key", k)
    end
    return k
  end)
  fs._pii_key = key
  return key
end

--- The keyed hash token of a PII value ("pii:" .. 16 hex digits).
function FS:pii_token(value)
  local s = tostring(value)
  local h = C.tz_hash_siphash(pii_key(self), s, #s)
  return "pii:" .. string.format("%016x", h)
end

local function coerce(f, v)
  if v == nil then return nil end
  local t = f.type
  if t == "float" then
    if type(v) == "string" then v = tonumber(v) end
    if type(v) ~= "number" then return nil, "not a number" end
    return v
  elseif t == "int" then
    if type(v) == "string" then v = tonumber(v) end
    if type(v) ~= "number" or v % 1 ~= 0 then return nil, "not an integer" end
    return v
  elseif t == "bool" then
    if v == "true" then return true elseif v == "false" then return false end
    if type(v) ~= "boolean" then return nil, "not true or false" end
    return v
  end
  if type(v) == "table" then return nil, "not text" end
  return tostring(v)
end

-- Entity keys go into store keys (LMDB: 511 bytes with the view's prefix
-- and the time): a longer one is refused with its row.
local MAX_ENTITY_BYTES = 256

-- Validates one input row; returns entity, time µs, values or nil, reason.
local function validate(fs, v, row)
  if type(row) ~= "table" then return nil, "a row must be an object of columns" end
  local entity = row[v.join_key]
  if entity == nil or entity == "" or entity == json.null then
    return nil, "missing entity key '" .. v.join_key .. "'"
  end
  if type(entity) ~= "string" and type(entity) ~= "number" then
    return nil, "entity key '" .. v.join_key .. "' must be text or a number"
  end
  if #tostring(entity) > MAX_ENTITY_BYTES then
    return nil, "entity key '" .. v.join_key .. "' is longer than " .. MAX_ENTITY_BYTES .. " bytes"
  end
  local t, terr = timeutil.parse(row[v.timestamp])
  if row[v.timestamp] == nil then return nil, "missing event time '" .. v.timestamp .. "'" end
  if not t then return nil, "bad event time: " .. terr end
  local values = {}
  local checks = fs.checks[v.name] or { features = {} }
  for _, f in ipairs(v.features) do
    local raw = row[f.column or f.name]
    local value, why = coerce(f, raw)
    if why then return nil, string.format("feature '%s': %s (%s)", f.name, why, tostring(raw)) end
    if value == nil then
      if f.nullable == false then return nil, "feature '" .. f.name .. "' is required" end
    else
      if f.min and value < f.min then return nil, string.format("feature '%s': %s is below min %s", f.name, value, f.min) end
      if f.max and value > f.max then return nil, string.format("feature '%s': %s is above max %s", f.name, value, f.max) end
      if f.values and not set_of(f.values)[value] then
        return nil, string.format("feature '%s': %s is not one of the allowed values", f.name, tostring(value))
      end
      local check = checks.features[f.name]
      if check then
        local ok, reason = check(value, row)
        if not ok then return nil, string.format("feature '%s': %s", f.name, reason or "failed its check") end
      end
      if v.pii_set[f.name] and not v.pii_clear then value = fs:pii_token(value) end
    end
    values[f.name] = value
  end
  if checks.row then
    local ok, reason = checks.row(row)
    if not ok then return nil, reason or "row failed the view's check" end
  end
  return tostring(entity), t, values
end

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

-- ---- ingestion ----------------------------------------------------------------------

local function rows_of(source, v)
  -- Returns an iterator of (line, row) and a list of reader issues.
  if frame.is_frame(source) then
    return source:rows(), {}, source:nrows()
  end
  if type(source) ~= "string" then error("ingest: source must be a path or a frame", 3) end
  local f = io.open(source, "rb")
  if not f then return nil, "cannot open " .. source end
  local head = f:read(512) or ""
  f:close()
  if source:match("%.jsonl$") or source:match("%.ndjson$") or head:match("^%s*{") then
    local fr, rep = frame.read_jsonl(source)
    if not fr then return nil, rep end
    return fr:rows(), rep.issues, fr:nrows()
  end
  if head:find("\0", 1, true) then return nil, source .. " is not a CSV or JSONL file (binary content)" end
  -- Read key and time as text so their formats are ours to judge; feature
  -- columns with their declared types, so the reader rejects misfits.
  local schema = { [v.join_key] = "string", [v.timestamp] = "string" }
  for _, feat in ipairs(v.features) do schema[feat.column or feat.name] = feat.type end
  local fr, rep = frame.read_csv(source, { schema = schema, line_column = "_tycho_line" })
  if not fr then return nil, rep end
  local lines = fr:col("_tycho_line")
  local it = fr:drop("_tycho_line"):rows()
  return function()
    local i, row = it()
    if not i then return nil end
    return lines:get(i), row
  end, rep.issues, fr:nrows()
end

local function write_quarantine(fs, view, rejected)
  if #rejected == 0 then return nil end
  os.execute("mkdir -p '" .. fs.quarantine_dir:gsub("'", "'\\''") .. "'")
  local path = string.format("%s/%s-%s.jsonl", fs.quarantine_dir, view, os.date("!%Y%m%dT%H%M%S"))
  local n = 0
  while io.open(path) do
    n = n + 1
    path = string.format("%s/%s-%s-%d.jsonl", fs.quarantine_dir, view, os.date("!%Y%m%dT%H%M%S"), n)
  end
  local f = assert(io.open(path, "w"))
  for _, r in ipairs(rejected) do f:write(json.encode(r), "\n") end
  f:close()
  return path
end

-- Validates rows and writes the good ones in one transaction. `to` picks
-- the stores ("online", "offline" or both). Returns the report.
local function land(fs, v, iter, issues, to, source_name)
  local report = { view = v.name, rows_read = 0, landed = 0, rejected = 0, duplicates = 0, unchanged = 0,
                   online_updates = 0, min_time = nil, max_time = nil }
  local rejected, seen, good = {}, {}, {}
  for _, is in ipairs(issues) do
    rejected[#rejected + 1] = { line = is.line, column = is.column, reason = is.message, source = source_name }
    report.rows_read = report.rows_read + 1
  end
  for line, row in iter do
    report.rows_read = report.rows_read + 1
    local entity, t, values = validate(fs, v, row)
    if not entity then
      local copy = row
      if type(row) == "table" then
        copy = {}
        for k, val in pairs(row) do copy[k] = val end
      end
      rejected[#rejected + 1] = { line = line, reason = t, row = copy, source = source_name }
    else
      local k = entity .. "\0" .. t
      if seen[k] then
        report.duplicates = report.duplicates + 1
        rejected[#rejected + 1] = { line = line, reason = "duplicate of line " .. seen[k] .. " (same entity and time)",
                                    source = source_name }
      else
        seen[k] = line
        good[#good + 1] = { entity, t, codec.encode(v.version, v.current, values) }
      end
    end
  end
  local write_offline = to ~= "online"
  local write_online = to ~= "offline"
  fs.store:update(function(tx)
    report.landed, report.unchanged, report.online_updates = 0, 0, 0
    for _, g in ipairs(good) do
      local entity, t, enc = g[1], g[2], g[3]
      if write_offline then
        local k = offline_key(v, entity, t)
        if tx:get("offline", k) == enc then report.unchanged = report.unchanged + 1 end
        tx:put("offline", k, enc)
      end
      if write_online and online_put(tx, v, entity, t, enc) then report.online_updates = report.online_updates + 1 end
      report.landed = report.landed + 1
    end
    if fs._after_land then fs._after_land(tx) end
  end)
  for _, g in ipairs(good) do
    report.min_time = math.min(report.min_time or g[2], g[2])
    report.max_time = math.max(report.max_time or g[2], g[2])
  end
  report.rejected = #rejected
  report.quarantine = write_quarantine(fs, v.name, rejected)
  report.issues = rejected
  if report.min_time then
    report.time_range = { timeutil.format(report.min_time), timeutil.format(report.max_time) }
  end
  return report
end

--- Batch ingestion from a CSV or JSONL path or a frame: every row
-- validated, good rows landed in offline and online stores in one
-- transaction, rejected rows written to a quarantine file with line and
-- reason. Returns the report (rows_read, landed, rejected, duplicates,
-- unchanged (already there: re-ingesting is idempotent), time_range,
-- quarantine) or nil, message when the source cannot be read at all.
function FS:ingest(view, source, opts)
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  local iter, issues = rows_of(source, v)
  if not iter then return nil, issues end
  return land(self, v, iter, issues, opts and opts.to or "online_and_offline",
              type(source) == "string" and source or "frame")
end

--- Push rows (Feast's push): rows is a frame, a list of row tables or a
-- Feast "df" ({column = {values...}}); to = "online" | "offline" |
-- "online_and_offline". Returns the report, or nil, message.
function FS:push(view, rows, to)
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  if to and to ~= "online" and to ~= "offline" and to ~= "online_and_offline" then
    return errors.fail("invalid", "to must be online, offline or online_and_offline")
  end
  local list = rows
  if frame.is_frame(rows) then
    return land(self, v, rows:rows(), {}, to or "online", "push")
  end
  if type(rows) ~= "table" then return errors.fail("invalid", "push needs rows") end
  if #rows == 0 and next(rows) then
    -- Column form: { col = {v1, v2}, ... }; a short column (trailing nils
    -- in Lua) reads as nulls.
    list = {}
    local n = 0
    for col, values in pairs(rows) do
      if type(values) ~= "table" then return errors.fail("invalid", "df column '" .. tostring(col) .. "' must be a list") end
      n = math.max(n, table.maxn(values))
    end
    for col, values in pairs(rows) do
      for i = 1, n do
        list[i] = list[i] or {}
        if values[i] ~= json.null then list[i][col] = values[i] end
      end
    end
  end
  local i = 0
  local function iter()
    i = i + 1
    if list[i] then return i, list[i] end
  end
  return land(self, v, iter, {}, to or "online", "push")
end

-- ---- reads ---------------------------------------------------------------------------

-- A view's definition from the per-process cache, reloaded when the
-- catalog epoch has moved.
local function cached_view(fs, tx, name)
  local epoch = tx:get("catalog", "meta/epoch") or "0"
  local c = fs.view_cache[name]
  if c and c.epoch == epoch then return c.view end
  local v = load_view(fs, tx, name)
  if v then fs.view_cache[name] = { epoch = epoch, view = v } end
  return v
end

-- Resolves refs to { [view] = per-call view (wanted features) } and the
-- ordered list of {view, feature, ref}. Runs inside the caller's read txn.
local parse_refs_uncached

local function parse_refs(fs, refs, tx)
  if not tx then return fs.store:view(function(t) return parse_refs(fs, refs, t) end) end
  if type(refs) == "string" then refs = { refs } end
  -- Serving asks for the same refs again and again: reuse the resolution
  -- while the catalog epoch stands still.
  local key = table.concat(refs, "\1")
  local epoch = tx:get("catalog", "meta/epoch") or "0"
  local hit = fs.refs_cache[key]
  if hit and hit.epoch == epoch then return hit.views, hit.order end
  local views, order, code = parse_refs_uncached(fs, refs, tx)
  if views then
    if fs.refs_cached > 1000 then fs.refs_cache, fs.refs_cached = {}, 0 end
    fs.refs_cache[key] = { epoch = epoch, views = views, order = order }
    fs.refs_cached = fs.refs_cached + 1
  end
  return views, order, code
end

function parse_refs_uncached(fs, refs, tx)
  local views, order = {}, {}
  for _, ref in ipairs(refs) do
    local vname, fname = tostring(ref):match("^([^:]+):(.+)$")
    if not vname then
      return errors.fail("invalid", "feature reference '" .. tostring(ref) .. "' must be view:feature or view:*")
    end
    local v = views[vname]
    if not v then
      local def = cached_view(fs, tx, vname)
      if not def then return errors.fail("not_found", "unknown feature view '" .. vname .. "'") end
      v = setmetatable({ wanted = {} }, { __index = def })
      views[vname] = v
    end
    local names = {}
    if fname == "*" then
      for _, f in ipairs(v.features) do names[#names + 1] = f.name end
      for t in pairs(v.transforms or {}) do names[#names + 1] = t end
    else
      local known = (v.transforms or {})[fname] ~= nil
      for _, f in ipairs(v.features) do if f.name == fname then known = true end end
      if not known then return errors.fail("not_found", "view '" .. vname .. "' has no feature '" .. fname .. "'") end
      names[1] = fname
    end
    for _, n in ipairs(names) do
      v.wanted[#v.wanted + 1] = n
      order[#order + 1] = { view = v, feature = n, ref = vname .. ":" .. n }
    end
  end
  return views, order
end

-- Transform source runs in the sandbox that artifacts' code runs in.
function FS:_compile(src)
  local fn = self.compiled[src]
  if fn then return fn end
  local got, err = sandbox.compile(src, "transform")
  if not got then return nil, err end
  self.compiled[src] = got
  return got
end

-- A transform that fails, runs past its limits or returns anything but a
-- number, string or boolean gives no value (nil), as a missing feature.
local function apply_transforms(fs, v, row)
  for name, src in pairs(v.transforms or {}) do
    local fn = fs:_compile(src)
    local ok, value = false, nil
    if fn then
      ok, value = sandbox.call("transform " .. name, fn, nil, row)
      sandbox.scrub(row)
    end
    local t = type(value)
    row[name] = ok and (t == "number" or t == "string" or t == "boolean") and value or nil
  end
end

local function export_value(fs, v, name, value)
  if value ~= nil and v.pii_set[name] and v.pii_clear then return fs:pii_token(value) end
  return value
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
  local times = {}
  local tc = spine:col(tcol)
  for i = 1, n do
    local t, terr = timeutil.parse(tc:get(i))
    if not t then return nil, "spine row " .. i .. ": " .. terr end
    times[i] = t
  end
  local t64 = ffi.new("int64_t[?]", math.max(n, 1))
  for i = 1, n do t64[i - 1] = times[i] end
  local names = {}
  for _, o in ipairs(order) do names[o.feature] = (names[o.feature] or 0) + 1 end
  local attached, derived = {}, {}
  for vname, v in pairs(views) do
    if not spine:has(v.join_key) then
      return nil, "the spine has no entity column '" .. v.join_key .. "' for view " .. vname
    end
    local ecol = spine:col(v.join_key)
    if ecol.code ~= 1 and ecol.code ~= 3 then
      return nil, "entity column '" .. v.join_key .. "' must hold strings or integers"
    end
    -- Stored features to fetch: the wanted ones, or all when a transform
    -- needs the whole row.
    local wanted, needs_all = {}, false
    for _, name in ipairs(v.wanted) do
      if v.transforms and v.transforms[name] then needs_all = true end
    end
    local stored_type = {}
    for _, f in ipairs(v.current) do stored_type[f.name] = f.type end
    local seen = {}
    for _, f in ipairs(v.current) do
      local want = needs_all
      for _, name in ipairs(v.wanted) do if name == f.name then want = true end end
      if want and not seen[f.name] then seen[f.name] = true wanted[#wanted + 1] = f.name end
    end
    local layouts = ffi.new("tz_asof_layout[?]", #v.versions)
    local keep = {}
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
    local by_name = {}
    for k, name in ipairs(wanted) do
      cols[k - 1] = frame.new_column(name, stored_type[name], n)
      by_name[name] = cols[k - 1]
    end
    local spec = ffi.new("tz_asof_view", { view_id = v.id, ttl_us = (v.ttl or 0) * 1e6, n_versions = #v.versions,
                                           layouts = layouts, n_wanted = #wanted })
    local ok, jerr = self.store:view(function(tx)
      local txn, dbi = tx:raw("offline")
      if not dbi then return true end
      if C.tz_asof_join(txn, dbi, spec, ecol.c, t64, n, cols, base.err) ~= 0 then
        return nil, ffi.string(base.err.msg)
      end
      return true
    end)
    if not ok then
      for k = 1, #wanted do C.tz_column_unref(cols[k - 1]) end
      return nil, jerr
    end
    -- Columns out: renamed on clashes; PII stored in clear is hashed here.
    local fetched = frame.new({}, { n = n }):attach((function()
      local list = {}
      for k = 1, #wanted do list[k] = cols[k - 1] end
      return list
    end)())
    for _, o in ipairs(order) do
      if o.view == v then
        local colname = (names[o.feature] > 1 or spine:has(o.feature)) and (v.name .. "__" .. o.feature) or o.feature
        if v.transforms and v.transforms[o.feature] then
          derived[#derived + 1] = { view = v, feature = o.feature, colname = colname, fetched = fetched }
        else
          attached[#attached + 1] = { view = v, feature = o.feature, colname = colname, fetched = fetched }
        end
      end
    end
    local _ = keep and by_name
  end
  local out = spine
  for _, a in ipairs(attached) do
    local col = a.fetched:col(a.feature)
    if a.view.pii_set[a.feature] and a.view.pii_clear then
      local values = {}
      for i = 1, n do values[i] = export_value(self, a.view, a.feature, col:get(i)) end
      out = out:with_column(a.colname, values, "string")
    elseif a.colname == a.feature then
      out = out:attach({ col.c })
      C.tz_column_ref(col.c)  -- attach took the reference it was given
    else
      out = out:with_column(a.colname, col:to_table(), col.type)
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
  for i = 1, n do
    tmin = math.min(tmin or times[i], times[i])
    tmax = math.max(tmax or times[i], times[i])
  end
  out.provenance = { views = versions, refs = refs, rows = n,
                     time_range = tmin and { timeutil.format(tmin), timeutil.format(tmax) } or nil }
  return out
end

--- Latest values for entities, Feast's response shape:
-- { metadata = { feature_names = {join_key, "view:f", ...} },
--   results = { { values = {...}, statuses = {...}, event_timestamps = {...} }, ... } }
-- entity_keys: { join_key = { k1, k2, ... } }. Statuses: PRESENT,
-- NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE.
local online_in

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
  local views, order = parse_refs(self, refs)
  if not views then return nil, order end
  local only, count = nil, 0
  for _, v in pairs(views) do only, count = v, count + 1 end
  if count ~= 1 then return nil, "a reader reads features of one view" end
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

--- Copies offline history with event times in [from, to] (µs or time
-- text; default everything) to the online store, keeping the newest per
-- entity and never replacing a newer online value. Returns the count written.
function FS:materialize(view, from, to)
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  local lo = from and assert(timeutil.parse(from)) or -math.huge
  local hi = to and assert(timeutil.parse(to)) or math.huge
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
  local written = 0
  self.store:update(function(tx)
    written = 0
    for entity, e in pairs(latest) do
      if online_put(tx, v, entity, e[1], e[2]) then written = written + 1 end
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

-- ---- streaming ---------------------------------------------------------------------

--- Ingests the lines appended to a JSONL file since the last call (the
-- checkpoint is saved in the same transaction as the rows, so a restart
-- neither loses nor doubles lines). Returns the report of this pass.
function FS:follow_once(view, path)
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  local ck = "follow/" .. view .. "/" .. path
  local offset = tonumber(self.store:get("catalog", ck) or "0")
  local f, ferr = io.open(path, "rb")
  if not f then return nil, "cannot open " .. path .. ": " .. ferr end
  local size = f:seek("end")
  if size < offset then offset = 0 end  -- the file was truncated or replaced: start over
  f:seek("set", offset)
  local chunk = f:read(size - offset) or ""
  f:close()
  local complete = chunk:match("^(.*\n)") or ""  -- only whole lines; a partial one waits
  local rows, issues, lineno = {}, {}, 0
  for line in complete:gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    if line:match("%S") then
      local obj, jerr = json.decode(line)
      if type(obj) == "table" then
        for k, x in pairs(obj) do if x == json.null then obj[k] = nil end end
        rows[#rows + 1] = { lineno, obj }
      else
        issues[#issues + 1] = { line = lineno, column = 0, message = jerr or "not a JSON object" }
      end
    end
  end
  local i = 0
  local function iter()
    i = i + 1
    if rows[i] then return rows[i][1], rows[i][2] end
  end
  local new_offset = offset + #complete
  -- The checkpoint is written inside land()'s transaction, with the rows.
  self._after_land = function(tx) tx:put("catalog", ck, tostring(new_offset)) end
  local report = land(self, v, iter, issues, "online_and_offline", path)
  self._after_land = nil
  report.offset = new_offset
  return report
end

--- Tails a JSONL file: ingests appended lines every interval_ms (500) on
-- the event loop. Returns a handle with :stop().
function FS:follow(view, path, opts)
  local uv = require "luv"
  local timer = uv.new_timer()
  local interval = opts and opts.interval_ms or 500
  local on_report = opts and opts.on_report
  timer:start(0, interval, function()
    local report, ferr = self:follow_once(view, path)
    if on_report then on_report(report, ferr) end
  end)
  return { stop = function() if not timer:is_closing() then timer:stop() timer:close() end end }
end

return M
