--- The FFI base shared by the modules that call the C core: the tz_err type,
-- the TZ_E* codes by name, and one reused error buffer (hot calls allocate
-- nothing; the loop is single-threaded, so one buffer serves every call).
local ffi = require "ffi"

ffi.cdef [[
typedef struct tz_err { int code; char msg[256]; } tz_err;
const char *tz_strerror(int code);
]]

local M = {
  OK = 0, ENOTFOUND = -30001, EINVAL = -30002, ENOMEM = -30003, EIO = -30004, EMAPFULL = -30005,
  ECORRUPT = -30006, EBUSY = -30007, ESTORE = -30008, ETOOBIG = -30009,
}

M.err = ffi.new("tz_err")

--- The last error as message, code name.
function M.failure()
  return ffi.string(M.err.msg), ffi.string(ffi.C.tz_strerror(M.err.code))
end

return M
