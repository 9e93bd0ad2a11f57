--- JSON through lua-cjson. `decode` never raises on bad input: it returns
-- nil, message. `null` is JSON null; `empty_array` encodes as [] (cjson 2.1
-- would write an empty table as {}).
--
-- Numbers are finite at this border both ways: NaN, Infinity and numbers
-- past a double's range (1e999) are refused by decode, with a message that
-- says so; a computed NaN or infinity encodes as null instead of failing
-- the whole response.
local cjson = require "cjson.safe"
local errors = require "tycho.util.errors"

local M = { null = cjson.null }

cjson.encode_sparse_array(true)
cjson.encode_number_precision(14)  -- the most lua-cjson 2.1.0 allows
cjson.decode_invalid_numbers(false)
cjson.encode_invalid_numbers("null")

local HUGE = math.huge
local NOT_FINITE = "invalid JSON: a number is not a finite decimal (NaN, Infinity, hex, or past a double's range like 1e999)"

-- cjson calls NaN and Infinity tokens, not numbers: name them.
local function names_non_finite(text, err)
  if err:find("invalid number", 1, true) then return true end
  local at = tonumber(err:match("invalid token at character (%d+)"))
  local word = at and text:sub(at, at + 7):lower()
  return word ~= nil and (word:find("^nan") or word:find("^inf")) ~= nil
end

local function all_finite(v)
  if type(v) == "number" then return v == v and v ~= HUGE and v ~= -HUGE end
  if type(v) ~= "table" then return true end
  for _, x in next, v do
    if not all_finite(x) then return false end
  end
  return true
end

-- Empty arrays: cjson 2.1 writes an empty table as {}. `empty_array` is a
-- table of its own that cjson refuses (it holds a function), so a document
-- that has one takes the Lua encoder below, which writes it as []; every
-- other document is cjson's alone, at no extra cost. No value a client sends
-- can be it: a marker string could (fuzz/json_fuzz turned a fixed marker
-- into [] or broken JSON, then learnt a per-process nonce).
local EMPTY = setmetatable({ empty_array = function() end }, { __tostring = function() return "[]" end })
M.empty_array = EMPTY

local MAX_DEPTH = 1000  -- as cjson's encoder

local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t, n
end

local function canonical(v, out, depth)
  if v == EMPTY then
    out[#out + 1] = "[]"
    return
  end
  if type(v) ~= "table" then
    out[#out + 1] = cjson.encode(v) or error("json.encode: cannot encode a " .. type(v), 0)
    return
  end
  if depth > MAX_DEPTH then error("json.encode: nested deeper than " .. MAX_DEPTH .. " (a cycle?)", 0) end
  local arr, n = is_array(v)
  if arr and n > 0 then
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = "," end
      canonical(v[i], out, depth + 1)
    end
    out[#out + 1] = "]"
    return
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = cjson.encode(k)
    out[#out + 1] = ":"
    local val = v[k]
    if val == nil then val = v[tonumber(k)] end
    canonical(val, out, depth + 1)
  end
  out[#out + 1] = "}"
end

--- Encodes a value; raises on values JSON cannot hold (functions, cycles).
function M.encode(value)
  local s, err = cjson.encode(value)
  if s then return s end
  -- cjson refused it: an empty_array inside (the Lua encoder writes it), or
  -- a value JSON cannot hold (the Lua encoder raises on it too).
  local ok, out = pcall(M.encode_canonical, value)
  if not ok then error("json.encode: " .. err, 2) end
  return out
end

-- ---- numbers in their shortest exact form ----------------------------------

local exact_out = require("string.buffer").new(1024)
local put_number  -- core/base's (tz_fmt), loaded at the first use

-- Whether t is written as an array, as lua-cjson decides it (its sparse
-- array rule: positive integer keys only, and the largest at most 10 or at
-- most twice their count, holes as null); and the largest key.
local function as_array(t)
  local n, max = 0, 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then return false end
    n = n + 1
    if k > max then max = k end
  end
  return n > 0 and (max <= 10 or max <= 2 * n), max
end

local QUOTED_MAX, QUOTED_LEN = 4096, 64
local quoted, n_quoted = {}, 0
--- A string as JSON text. Short ones are remembered: an answer's keys,
-- statuses and labels repeat from one request to the next, and lua-cjson
-- makes a buffer for every call (most of a small answer's encoding).
-- Bounded: reset when full.
local function quote(s)
  local q = quoted[s]
  if q then return q end
  q = cjson.encode(s)
  if #s <= QUOTED_LEN then
    if n_quoted >= QUOTED_MAX then quoted, n_quoted = {}, 0 end
    quoted[s], n_quoted = q, n_quoted + 1
  end
  return q
end

M.quote = quote

local function exact(v, depth)
  local t = type(v)
  if t == "number" then
    put_number(exact_out, v)
  elseif t == "string" then
    exact_out:put(quote(v))
  elseif t ~= "table" then
    exact_out:put(cjson.encode(v) or error("json.encode_exact: cannot encode a " .. t, 0))
  elseif v == EMPTY then
    exact_out:put("[]")
  else
    if depth > MAX_DEPTH then error("json.encode_exact: nested deeper than " .. MAX_DEPTH .. " (a cycle?)", 0) end
    local arr, max = as_array(v)
    if arr then
      exact_out:put("[")
      for i = 1, max do
        if i > 1 then exact_out:put(",") end
        local x = v[i]
        if x == nil then exact_out:put("null") else exact(x, depth + 1) end
      end
      exact_out:put("]")
      return
    end
    exact_out:put("{")
    local first = true
    for k, x in pairs(v) do
      if not first then exact_out:put(",") end
      first = false
      exact_out:put(quote(tostring(k)), ":")
      exact(x, depth + 1)
    end
    exact_out:put("}")
  end
end

--- Like encode, with every number in its shortest exact form (the double
-- reads back bit for bit; lua-cjson writes 14 digits): for answers whose
-- numbers a client compares, such as predictions.
function M.encode_exact(value)
  put_number = put_number or require("tycho.core.base").put_json_number
  exact_out:reset()
  exact(value, 0)
  return exact_out:tostring()
end

--- Like encode, with object keys sorted: the same value always gives the
-- same bytes (artifacts and hashes rely on it).
function M.encode_canonical(value)
  local out = {}
  canonical(value, out, 0)
  return table.concat(out)
end

--- Decodes text; returns value or nil, message, "invalid".
function M.decode(text)
  if type(text) ~= "string" then error("json.decode: expected a string, got " .. type(text), 2) end
  local v, err = cjson.decode(text)
  if v == nil and err then
    if names_non_finite(text, err) then return errors.fail("invalid", NOT_FINITE) end
    return errors.fail("invalid", "invalid JSON: " .. err)
  end
  if not all_finite(v) then return errors.fail("invalid", NOT_FINITE) end
  return v
end

return M
