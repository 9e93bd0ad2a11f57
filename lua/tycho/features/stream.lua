--- tycho.features, streaming: a JSONL file followed with a checkpoint.
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"
local ingest = require "tycho.features.ingest"
local land = ingest.land

local M = {}
local FS = {}
local ENOENT = 2


--- Ingests the lines appended to a JSONL file since the last call (the
-- checkpoint is saved in the same transaction as the rows, so a restart
-- neither loses nor doubles lines). Returns the report of this pass, or
-- nil, message, code.
function FS:follow_once(view, path)
  local v, verr, vcode = self:view(view)
  if not v then return nil, verr, vcode end
  local ck = "follow/" .. view .. "/" .. path
  local offset = tonumber(self.store:get("catalog", ck) or "0")
  local f, ferr, errno = io.open(path, "rb")
  if not f then return errors.fail(errno == ENOENT and "not_found" or "unavailable", "cannot open " .. path .. ": " .. ferr) end
  local size = f:seek("end")
  if size < offset then offset = 0 end  -- the file was truncated or replaced: start over
  f:seek("set", offset)
  local chunk = f:read(size - offset) or ""
  f:close()
  local complete = chunk:match("^(.*\n)") or ""  -- only whole lines; a partial one waits
  local rows, issues, lineno = {}, {}, 0
  for line in complete:gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    if line:match("%S") then
      local obj, jerr = json.decode(line)
      if type(obj) == "table" then
        rows[#rows + 1] = { lineno, obj }
      else
        issues[#issues + 1] = { line = lineno, column = 0, message = jerr or "not a JSON object" }
      end
    end
  end
  local i = 0
  local function iter()
    i = i + 1
    if rows[i] then return rows[i][1], rows[i][2] end
  end
  local new_offset = offset + #complete
  -- The checkpoint is written inside land()'s transaction, with the rows.
  self._after_land = function(tx) tx:put("catalog", ck, tostring(new_offset)) end
  local report = land(self, v, iter, issues, "online_and_offline", path, ingest.key_present)
  self._after_land = nil
  report.offset = new_offset
  return report
end

--- Tails a JSONL file: ingests appended lines every interval_ms (500) on
-- the event loop. Returns a handle with :stop().
function FS:follow(view, path, opts)
  local uv = require "luv"
  local timer = uv.new_timer()
  local interval = opts and opts.interval_ms or 500
  local on_report = opts and opts.on_report
  timer:start(0, interval, function()
    local report, ferr = self:follow_once(view, path)
    if on_report then on_report(report, ferr) end
  end)
  return { stop = function() if not timer:is_closing() then timer:stop() timer:close() end end }
end

M.methods = FS

return M
