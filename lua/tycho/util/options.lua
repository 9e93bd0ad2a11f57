--- Checked option tables for constructors (models, steps): every name must
-- be known (an unknown one is refused with the closest valid name and the
-- list of valid ones) and every value must have its declared type and
-- range, so a typo never trains a default model without a word. Also the
-- limit and offset of a paged read (M.page).
--
-- A schema maps a canonical name to { type = "int"|"number"|"bool"|
-- "string"|"table"|"function"|"any", min =, max =, above = (exclusive
-- minimum), one_of = {...}, aliases = {...} }.
local errors = require "tycho.util.errors"

local M = {}

local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The candidate closest to name (edit distance at most 2, or 1 for names
-- of four letters or fewer; or one containing the other), or nil.
function M.closest(name, candidates)
  local best, best_d
  local limit = #name <= 4 and 1 or 2
  for _, c in ipairs(candidates) do
    local d = distance(name, c)
    if (c:find(name, 1, true) or name:find(c, 1, true)) and #name >= 3 then d = math.min(d, limit) end
    if d <= limit and (not best_d or d < best_d or (d == best_d and c < best)) then best, best_d = c, d end
  end
  return best
end

local function names_of(schema)
  local out = {}
  for name, spec in pairs(schema) do
    out[#out + 1] = name
    for _, a in ipairs(spec.aliases or {}) do out[#out + 1] = a end
  end
  table.sort(out)
  return out
end

local function describe_type(spec)
  if spec.one_of then
    local q = {}
    for i, v in ipairs(spec.one_of) do q[i] = string.format("%q", v) end
    return "one of " .. table.concat(q, ", ")
  end
  local t = spec.type == "int" and "an integer" or spec.type == "number" and "a number"
    or spec.type == "bool" and "true or false" or "a " .. spec.type
  if spec.min and spec.max then return t .. " from " .. spec.min .. " to " .. spec.max end
  if spec.above and spec.max then return t .. " above " .. spec.above .. " and at most " .. spec.max end
  if spec.above then return t .. " above " .. spec.above end
  if spec.min then return t .. " of at least " .. spec.min end
  return t
end

local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

local function valid_value(spec, v)
  local t = spec.type
  if spec.one_of then
    for _, ok in ipairs(spec.one_of) do if v == ok then return true end end
    return false
  end
  if t == "any" then return true end
  if t == "int" or t == "number" then
    if not finite(v) or (t == "int" and v % 1 ~= 0) then return false end
    if spec.min and v < spec.min then return false end
    if spec.above and v <= spec.above then return false end
    if spec.max and v > spec.max then return false end
    return true
  end
  if t == "bool" then return type(v) == "boolean" end
  return type(v) == t
end

--- The options under their canonical names, or raises (at the caller's
-- caller, `level` above this function) naming what is wrong. where: the
-- constructor's name, for the message ("models.gbt").
function M.check(where, schema, opts, level)
  level = (level or 1) + 1
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(where .. ": options must be a table", level) end
  local by_alias = {}
  for name, spec in pairs(schema) do
    by_alias[name] = name
    for _, a in ipairs(spec.aliases or {}) do by_alias[a] = name end
  end
  local out, given_as = {}, {}
  for key, v in pairs(opts) do
    if type(key) ~= "string" then error(where .. ": option names are strings, got " .. tostring(key), level) end
    local name = by_alias[key]
    if not name then
      local valid = names_of(schema)
      local near = M.closest(key, valid)
      error(string.format("%s: unknown option '%s'%s; valid options: %s", where, key,
        near and (" (did you mean '" .. near .. "'?)") or "", table.concat(valid, ", ")), level)
    end
    if given_as[name] then
      local a, b = given_as[name], key
      if a > b then a, b = b, a end
      error(string.format("%s: options '%s' and '%s' both set %s", where, a, b, name), level)
    end
    local spec = schema[name]
    if not valid_value(spec, v) then
      error(string.format("%s: option '%s' must be %s, got %s", where, key, describe_type(spec),
        type(v) == "string" and string.format("%q", v) or tostring(v)), level)
    end
    out[name], given_as[name] = v, key
  end
  return out
end

--- A paged read's opts.limit (an integer from 1 to max, default `default`)
-- and opts.offset (a non-negative integer, default 0): limit, offset, or
-- nil, message, "invalid".
function M.page(opts, default, max)
  local limit, offset = opts.limit or default, opts.offset or 0
  if type(limit) ~= "number" or limit < 1 or limit > max or limit % 1 ~= 0 then
    return errors.fail("invalid", "limit must be an integer from 1 to " .. max)
  end
  if type(offset) ~= "number" or offset < 0 or offset % 1 ~= 0 then
    return errors.fail("invalid", "offset must be a non-negative integer")
  end
  return limit, offset
end

return M
