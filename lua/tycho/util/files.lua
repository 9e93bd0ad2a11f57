--- Whole-file reads and atomic writes, for artifacts and model files.
local M = {}

--- The file's bytes, or nil, "cannot open PATH: reason".
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot open " .. path .. ": " .. err end
  local bytes = f:read("*a")
  f:close()
  return bytes
end

--- Writes bytes to path through a temporary file and a rename, so a reader
-- never sees half a file. true, or nil and a message.
function M.write_atomic(path, bytes)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, "cannot write " .. path .. ": " .. err end
  local ok, werr = f:write(bytes)
  f:close()
  if not ok then
    os.remove(tmp)
    return nil, "cannot write " .. path .. ": " .. tostring(werr)
  end
  return os.rename(tmp, path)
end

return M
