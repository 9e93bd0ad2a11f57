--- Event times: ISO-8601 (with Z, +hh:mm offsets, fractions, or no zone =
-- UTC), dates, and epoch seconds / milliseconds / microseconds, all to UTC
-- epoch microseconds (exact integers in a Lua number up to year 2255).
local errors = require "tycho.util.errors"

local M = {}

-- Days from 1970-01-01 to y-m-d (proleptic Gregorian), Howard Hinnant's way.
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local DAYS_IN = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

--- Microseconds since the epoch (UTC) for a time value, or nil, reason,
-- "invalid".
function M.parse(v)
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return errors.fail("invalid", "not a finite time") end
    local a = math.abs(v)
    -- Epoch units by magnitude: seconds up to year 5138, then ms, then µs.
    if a < 1e11 then return math.floor(v * 1e6 + 0.5) end
    if a < 1e14 then return math.floor(v * 1e3 + 0.5) end
    return math.floor(v + 0.5)
  end
  if type(v) ~= "string" then return errors.fail("invalid", "a time must be a string or a number") end
  local s = v:match("^%s*(.-)%s*$")
  if s:match("^%-?%d+%.?%d*$") then return M.parse(tonumber(s)) end
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return errors.fail("invalid", "not an ISO-8601 time or epoch number: '" .. v .. "'") end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 or d < 1 or d > DAYS_IN[mo] or (mo == 2 and d == 29 and
      not (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0))) then
    return errors.fail("invalid", "no such date: '" .. v .. "'")
  end
  local h, mi, sec, frac, zone = 0, 0, 0, "", ""
  if rest ~= "" then
    local hh, mm, tail = rest:match("^[Tt ](%d%d):(%d%d)(.*)$")
    if not hh then return errors.fail("invalid", "bad time of day in '" .. v .. "'") end
    h, mi = tonumber(hh), tonumber(mm)
    local ss, after = tail:match("^:(%d%d)(.*)$")
    if ss then sec, tail = tonumber(ss), after end
    local f, after2 = tail:match("^[%.,](%d+)(.*)$")
    if f then frac, tail = f, after2 end
    zone = tail
    if h > 23 or mi > 59 or sec > 60 then return errors.fail("invalid", "bad time of day in '" .. v .. "'") end
  end
  local offset = 0
  if zone ~= "" and zone ~= "Z" and zone ~= "z" then
    local sign, oh, om = zone:match("^([%+%-])(%d%d):?(%d%d)$")
    if not sign then
      local sign2, oh2 = zone:match("^([%+%-])(%d%d)$")
      sign, oh, om = sign2, oh2, "00"
    end
    if not sign then return errors.fail("invalid", "bad time zone '" .. zone .. "' in '" .. v .. "'") end
    offset = (tonumber(oh) * 60 + tonumber(om)) * 60 * (sign == "+" and 1 or -1)
  end
  local micros = frac ~= "" and math.floor(tonumber("0." .. frac) * 1e6 + 0.5) or 0
  local seconds = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
  return seconds * 1e6 + micros
end

--- ISO-8601 UTC text of epoch microseconds ("2024-01-02T03:04:05.000006Z").
function M.format(us)
  local secs = math.floor(us / 1e6)
  local micros = us - secs * 1e6
  local text = os.date("!%Y-%m-%dT%H:%M:%S", secs)
  if micros ~= 0 then text = text .. string.format(".%06d", micros) end
  return text .. "Z"
end

--- Seconds in a duration: a number (seconds) or "30d", "12h", "15m", "45s", "1w", "200ms".
function M.duration(v)
  if v == nil then return nil end
  if type(v) == "number" then return v end
  local n, unit = tostring(v):match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
  local mult = { ms = 0.001, s = 1, m = 60, h = 3600, d = 86400, w = 604800, [""] = 1 }
  if not n or not mult[unit] then error("bad duration '" .. tostring(v) .. "' (e.g. 30d, 12h, 90m, 45s, 200ms)", 3) end
  return tonumber(n) * mult[unit]
end

--- Microseconds now (the wall clock).
M.now = require("tycho.core.base").now_us

return M
