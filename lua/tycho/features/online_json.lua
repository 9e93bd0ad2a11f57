--- The Feast answer of fs:online as JSON text, written straight into a
-- buffer: lua-cjson spends most of such an answer formatting its numbers
-- with printf (14 digits); this writes them in their shortest exact form
-- (core/util/tz_fmt) and the rest as it comes. Same document otherwise:
-- { "metadata": { "feature_names": [...] }, "results": [ { "values": [...],
-- "statuses": [...], "event_timestamps": [...] }, ... ] }.
local buffer = require "string.buffer"
local base = require "tycho.core.base"
local json = require "tycho.util.json"

local M = {}

local out = buffer.new(4096)
local json_number, encode = base.json_number, json.encode
local null = json.null

-- A string needs cjson's escaping only when it holds a quote, a backslash,
-- a control character or a byte above ASCII (cjson escapes "/" too, which
-- JSON does not require).
local function plain(s) return not s:find('[%z\1-\31"\\\127-\255]') end

local function value(v)
  local t = type(v)
  if t == "number" then out:put(json_number(v))
  elseif t == "string" then
    if plain(v) then out:put('"', v, '"') else out:put(encode(v)) end
  elseif v == nil or v == null then out:put("null")
  elseif t == "boolean" then out:put(v and "true" or "false")
  else out:put(encode(v)) end
end

local function list(items, n)
  out:put("[")
  for i = 1, n do
    if i > 1 then out:put(",") end
    value(items[i])
  end
  out:put("]")
end

--- The text of answer (what fs:online returns).
function M.encode(answer)
  out:reset()
  local names = answer.metadata.feature_names
  out:put('{"metadata":{"feature_names":')
  list(names, #names)
  out:put('},"results":[')
  for j, col in ipairs(answer.results) do
    if j > 1 then out:put(",") end
    -- The statuses say how many rows there are: values may hold nulls.
    local n = #col.statuses
    out:put('{"values":')
    list(col.values, n)
    out:put(',"statuses":')
    list(col.statuses, n)
    out:put(',"event_timestamps":')
    list(col.event_timestamps, n)
    out:put("}")
  end
  out:put("]}")
  return out:tostring()
end

return M
