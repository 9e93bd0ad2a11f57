--- tycho.features, feature references ("view:feature", "view:*") resolved against the catalog, and
-- the values a read returns: on-demand transforms (sandboxed) and PII tokens.
local ffi = require "ffi"
local sandbox = require "tycho.util.sandbox"
local errors = require "tycho.util.errors"
local catalog = require "tycho.features.catalog"
local load_view = catalog.load_view

local M = {}
local FS = {}


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
local parse_refs_uncached, parse_refs_in_txn

-- The cache keys of frozen lists (M.frozen), made once.
local frozen_keys = setmetatable({}, { __mode = "k" })
local FROZEN = { __newindex = function() error("a frozen list of feature references cannot change", 2) end }

--- A copy of the list refs that reads resolve without joining its
-- references again each time: for a list used for many reads (the feature
-- server's, remembered per request text, never handed out). Its owner
-- never changes it: an added entry raises, and a replaced one would not be
-- seen by the reads (their cache key is the copy's first one).
function M.frozen(refs)
  local copy = { unpack(refs) }
  frozen_keys[copy] = table.concat(copy, "\1")
  return setmetatable(copy, FROZEN)
end

local function parse_refs(fs, refs, tx)
  if type(refs) == "string" then refs = { refs } end
  -- Serving asks for the same refs again and again: reuse the resolution
  -- while the catalog epoch stands still. Without a transaction the epoch
  -- comes from the store's point reader (no transaction of its own per call),
  -- once a cluster's shared catalog has been copied in (catalog_shared.lua).
  local key = frozen_keys[refs] or table.concat(refs, "\1")
  local epoch
  if tx then
    epoch = tx:get("catalog", "meta/epoch") or "0"
  else
    if fs.shared then fs.shared:before_read(fs.store) end
    local p, len = fs.store:point_reader("catalog")("meta/epoch")
    epoch = p and ffi.string(p, len) or "0"
  end
  local hit = fs.refs_cache[key]
  if hit and hit.epoch == epoch then return hit.views, hit.order end
  if not tx then return parse_refs_in_txn(fs, refs) end
  local views, order, code = parse_refs_uncached(fs, refs, tx)
  if views then
    if fs.refs_cached > 1000 then fs.refs_cache, fs.refs_cached = {}, 0 end
    fs.refs_cache[key] = { epoch = epoch, views = views, order = order }
    fs.refs_cached = fs.refs_cached + 1
  end
  return views, order, code
end

-- The closure apart: one in parse_refs would close its locals with UCLO
-- on every return, which LuaJIT does not compile (the cache hit above is
-- the serving path).
function parse_refs_in_txn(fs, refs)
  return fs.store:view(function(t) return parse_refs(fs, refs, t) end)
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

M.parse_refs = parse_refs
M.apply_transforms = apply_transforms
M.export_value = export_value
M.methods = FS

return M
