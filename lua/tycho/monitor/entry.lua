--- One prediction log entry as stored in the `predictions` table: the
-- serving log writes it (serve/log.lua) and monitoring, feedback and the
-- console read it. Entries are LuaJIT's string.buffer serialization, which
-- writes a table of numbers and strings without formatting a single
-- number (JSON cost a logged prediction more than predicting it); entries
-- written as JSON by earlier versions (they start with "{") still read.
local buffer = require "string.buffer"
local json = require "tycho.util.json"

local M = {}

local JSON_OPEN = string.byte("{")

--- encode(entry): the stored bytes of entry (a table of strings, numbers,
-- booleans and tables of them). LuaJIT's own function, not a Lua wrapper:
-- a trace of the logging loop runs straight into it.
M.encode = buffer.encode

--- A buffer for writers of many entries: encode_into(buf, entry) appends
-- entry's stored bytes to it, making no Lua string per entry.
function M.buffer() return buffer.new() end
function M.encode_into(buf, entry) buf:encode(entry) end

--- The entry stored as raw, or nil when raw is not one.
function M.decode(raw)
  if type(raw) ~= "string" or raw == "" then return nil end
  local ok, entry
  if raw:byte(1) == JSON_OPEN then ok, entry = pcall(json.decode, raw)
  else ok, entry = pcall(buffer.decode, raw) end
  if ok and type(entry) == "table" then return entry end
  return nil
end

return M
