--- The HTTP server's face to FFI (core/lua/lua_http.c): a direct route's
-- answer sent from a string.buffer's bytes, never made a Lua string (one
-- new string a request is interned, hashed and later swept by LuaJIT).
local ffi = require "ffi"

ffi.cdef [[
int tz_lua_http_direct_answer(const char *body, size_t len);
]]
local C = ffi.C

local M = {}

--- Answers the direct route running now with buf's bytes: true, or false
-- when no direct route waits for an answer (buf is then left to the caller).
function M.direct_answer(buf)
  local p, len = buf:ref()
  return C.tz_lua_http_direct_answer(p, len) == 1
end

return M
