--- The HTTP server's face to FFI (core/lua/lua_http.c): a direct route's
-- body read and its answer sent as bytes, never made Lua strings (a new
-- string a request is interned, hashed and later swept by LuaJIT).
local ffi = require "ffi"

ffi.cdef [[
int tz_lua_http_direct_answer(const char *body, size_t len);
const char *tz_lua_http_direct_body(size_t *len);
]]
local C = ffi.C

local M = {}

local body_len = ffi.new("size_t[1]")

--- The body of the request whose direct route runs now: a pointer to its
-- bytes (valid until the route returns) and their count; nil, 0 outside
-- a direct route.
function M.direct_body()
  local p = C.tz_lua_http_direct_body(body_len)
  if p == nil then return nil, 0 end
  return p, tonumber(body_len[0])
end

--- Answers the direct route running now with buf's bytes: true, or false
-- when no direct route waits for an answer (buf is then left to the caller).
function M.direct_answer(buf)
  local p, len = buf:ref()
  return C.tz_lua_http_direct_answer(p, len) == 1
end

return M
