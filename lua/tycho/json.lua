--- JSON through lua-cjson. `decode` never raises on bad input: it returns
-- nil, message. `null` is JSON null; `empty_array` encodes as [] (cjson 2.1
-- would write an empty table as {}).
local cjson = require "cjson.safe"

local M = { null = cjson.null }

cjson.encode_sparse_array(true)
cjson.encode_number_precision(14)  -- the most lua-cjson 2.1.0 allows

local EMPTY = "\0tycho:[]\0"
M.empty_array = EMPTY
local EMPTY_ENCODED = '"\\u0000tycho:[]\\u0000"'

--- Encodes a value; raises on values JSON cannot hold (functions, cycles).
function M.encode(value)
  local s, err = cjson.encode(value)
  if not s then error("json.encode: " .. err, 2) end
  if s:find(EMPTY_ENCODED, 1, true) then s = s:gsub('"\\u0000tycho:%[%]\\u0000"', "[]") end
  return s
end

--- Decodes text; returns value or nil, message.
function M.decode(text)
  if type(text) ~= "string" then error("json.decode: expected a string, got " .. type(text), 2) end
  local v, err = cjson.decode(text)
  if v == nil and err then return nil, "invalid JSON: " .. err end
  return v
end

return M
