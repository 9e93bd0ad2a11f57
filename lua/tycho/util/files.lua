--- Whole-file reads and atomic writes, for artifacts and model files.
local errors = require "tycho.util.errors"

local M = {}

local ENOENT = 2

--- The file's bytes, or nil, "cannot open PATH: reason", code: not_found
-- when there is no such file, unavailable when it cannot be read.
function M.read(path)
  local f, err, errno = io.open(path, "rb")
  if not f then
    return errors.fail(errno == ENOENT and "not_found" or "unavailable", "cannot open " .. path .. ": " .. err)
  end
  local bytes = f:read("*a")
  f:close()
  return bytes
end

--- Writes bytes to path through a temporary file and a rename, so a reader
-- never sees half a file. true, or nil, a message and "unavailable".
function M.write_atomic(path, bytes)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return errors.fail("unavailable", "cannot write " .. path .. ": " .. err) end
  local ok, werr = f:write(bytes)
  f:close()
  if not ok then
    os.remove(tmp)
    return errors.fail("unavailable", "cannot write " .. path .. ": " .. tostring(werr))
  end
  local moved, rerr = os.rename(tmp, path)
  if not moved then
    os.remove(tmp)
    return errors.fail("unavailable", "cannot write " .. path .. ": " .. tostring(rerr))
  end
  return true
end

return M
