--- The few C library functions Lua calls directly: special functions for
-- the statistics (erfc, lgamma, log1p: exact where Lua's math has none) and
-- prctl, so a DAG task dies with the runner that watches it.
local ffi = require "ffi"

ffi.cdef [[
double erfc(double);
double lgamma(double);
double log1p(double);
int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);
]]

local C = ffi.C
local M = { erfc = C.erfc, lgamma = C.lgamma, log1p = C.log1p }

local PR_SET_PDEATHSIG, SIGKILL = 1, 9

--- Asks Linux to SIGKILL this process when its parent dies; false when
-- the call is refused.
function M.die_with_parent()
  return C.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0
end

return M
