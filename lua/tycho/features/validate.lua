--- tycho.features, validation of incoming rows against a view's schema and checks, and the PII token.
local json = require "tycho.util.json"
local timeutil = require "tycho.util.timeutil"
local base = require "tycho.core.base"
local catalog = require "tycho.features.catalog"
local set_of = catalog.set_of

local M = {}
local FS = {}


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
  local h = base.hash.siphash(pii_key(self), s, #s)
  return "pii:" .. string.format("%016x", h)
end

-- Integers are stored as int64 but travel as doubles: beyond 2^53 a
-- double no longer holds every integer, so the value would not be the one sent.
local INT_LIMIT = 2 ^ 53

-- A number written in decimal ("12", "-3.5", "1e-3"), as a number; nil for
-- anything else (hexadecimal, "inf", "nan", words).
local function decimal(s)
  if not (s:match("^%s*[-+]?%d+%.?%d*%s*$") or s:match("^%s*[-+]?%.%d+%s*$")
          or s:match("^%s*[-+]?%d*%.?%d+[eE][-+]?%d+%s*$") or s:match("^%s*[-+]?%d+%.[eE][-+]?%d+%s*$")) then
    return nil
  end
  return tonumber(s)
end

local function finite(v) return v == v and v ~= math.huge and v ~= -math.huge end

local function coerce(f, v)
  if v == nil or v == json.null then return nil end
  local t = f.type
  if t == "float" then
    if type(v) == "string" then v = decimal(v) end
    if type(v) ~= "number" then return nil, "not a decimal number" end
    if not finite(v) then return nil, "not a finite number" end
    return v
  elseif t == "int" then
    if type(v) == "string" then v = decimal(v) end
    if type(v) ~= "number" or not finite(v) or v % 1 ~= 0 then return nil, "not an integer" end
    if v > INT_LIMIT or v < -INT_LIMIT then return nil, "integer out of range (beyond ±2^53)" end
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
  local raw_t = row[v.timestamp]
  if raw_t == nil or raw_t == json.null then return nil, "missing event time '" .. v.timestamp .. "'" end
  local t, terr = timeutil.parse(raw_t)
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

M.validate = validate
M.methods = FS

return M
