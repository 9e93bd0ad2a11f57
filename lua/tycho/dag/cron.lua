--- Cron schedules in UTC, for DAGs.
--
--   local s = assert(cron.parse("0 3 * * 1-5"))   -- 03:00 UTC on weekdays
--   s:next(t)    -- the first slot strictly after epoch second t
--   s:prev(t)    -- the latest slot at or before t
--   s:label(ts)  -- the logical date of slot ts: "2026-01-05" when the
--                -- schedule fires at most once a day, else "2026-01-05T03:00:00Z"
--
-- Five fields: minute hour day-of-month month day-of-week, each `*`, a
-- value, a range a-b, a list a,b,c, and steps (*/15, 1-30/2, 5/10 = 5-max/10).
-- Months and days may be named (jan..dec, sun..sat); day-of-week 0 and 7 are
-- Sunday. When both day fields are restricted (neither starts with `*`), a
-- day matches either of them (Vixie cron's rule); otherwise both must match.
-- Shortcuts: @yearly (@annually) @monthly @weekly @daily (@midnight) @hourly,
-- and `@every DURATION` (e.g. "@every 2s", "@every 15m"): slots at whole
-- multiples of the duration since the epoch.
local errors = require "tycho.util.errors"

local M = {}

local FIELDS = {
  { name = "minute", lo = 0, hi = 59 },
  { name = "hour", lo = 0, hi = 23 },
  { name = "day-of-month", lo = 1, hi = 31 },
  { name = "month", lo = 1, hi = 12,
    names = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8, sep = 9, oct = 10,
              nov = 11, dec = 12 } },
  { name = "day-of-week", lo = 0, hi = 7, names = { sun = 0, mon = 1, tue = 2, wed = 3, thu = 4, fri = 5, sat = 6 } },
}

local SHORTCUTS = {
  ["@yearly"] = "0 0 1 1 *", ["@annually"] = "0 0 1 1 *", ["@monthly"] = "0 0 1 * *",
  ["@weekly"] = "0 0 * * 0", ["@daily"] = "0 0 * * *", ["@midnight"] = "0 0 * * *", ["@hourly"] = "0 * * * *",
}

--- Seconds in a duration: a number, "250ms", or what timeutil.duration takes
-- ("45s", "15m", "12h", "30d", "1w"). nil, message, "invalid" when it is not one.
function M.duration(v)
  if type(v) == "number" then
    if v ~= v or v < 0 or v == math.huge then return errors.fail("invalid", "bad duration " .. tostring(v)) end
    return v
  end
  if type(v) ~= "string" then return errors.fail("invalid", "a duration must be a string or a number of seconds") end
  local ms = v:match("^%s*(%d+%.?%d*)%s*ms%s*$")
  if ms then return tonumber(ms) / 1000 end
  local ok, secs = pcall(require("tycho.util.timeutil").duration, v)
  if not ok then return errors.fail("invalid", "bad duration '" .. v .. "' (e.g. 250ms, 45s, 15m, 12h, 30d)") end
  return secs
end

-- Civil date <-> days since the epoch (proleptic Gregorian, UTC).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

--- Epoch seconds of a UTC civil time: year, month (1-12; 13 and up roll into
-- the following years), day (past the month's end carries over), and hour
-- and minute (default 0). No time zones, no leap seconds.
local function epoch(y, mo, d, h, mi)
  while mo > 12 do y, mo = y + 1, mo - 12 end
  return days_from_civil(y, mo, d) * 86400 + (h or 0) * 3600 + (mi or 0) * 60
end

local function civil(t) return os.date("!*t", t) end

-- One field: a set (value -> true). Raises "FIELD field 'TEXT': why".
local function parse_field(text, f)
  local set = {}
  local function fail(why) error(string.format("%s field '%s': %s", f.name, text, why), 0) end
  local function value(s)
    local n = tonumber(s)
    if not n and f.names then n = f.names[s:lower()] end
    if not n or n % 1 ~= 0 then fail("'" .. s .. "' is not a " .. f.name .. (f.names and " number or name" or " number")) end
    if n < f.lo or n > f.hi then fail(string.format("%d is out of range %d-%d", n, f.lo, f.hi)) end
    return n
  end
  if text == "" then fail("empty") end
  for item in (text .. ","):gmatch("([^,]*),") do
    if item == "" then fail("empty list item") end
    local range, step = item:match("^([^/]+)/(.+)$")
    range = range or item
    local lo, hi
    if range == "*" then
      lo, hi = f.lo, f.hi
    else
      local a, b = range:match("^([^-]+)-([^-]+)$")
      if a then
        lo, hi = value(a), value(b)
        if lo > hi then fail(string.format("range %d-%d runs backwards", lo, hi)) end
      else
        lo = value(range)
        hi = step and f.hi or lo
      end
    end
    local by = 1
    if step then
      by = tonumber(step)
      if not by or by % 1 ~= 0 or by < 1 then fail("step '" .. step .. "' must be a whole number of at least 1") end
    end
    for v = lo, hi, by do set[v] = true end
  end
  return set
end

local Schedule = {}
Schedule.__index = Schedule

local function day_ok(s, c)
  local dom, dow = s.sets[3][c.day], s.sets[5][c.wday - 1]
  if s.dom_star or s.dow_star then return dom and dow end
  return dom or dow
end

--- The first slot strictly after epoch second t, or nil when there is none
-- within the next nine years.
function Schedule:next(t)
  if self.every then return (math.floor(t / self.every) + 1) * self.every end
  local limit = t + 9 * 366 * 86400
  t = math.floor(t / 60) * 60 + 60
  local min, hour, month = self.sets[1], self.sets[2], self.sets[4]
  while t <= limit do
    local c = civil(t)
    if not month[c.month] then t = epoch(c.year, c.month + 1, 1)
    elseif not day_ok(self, c) then t = epoch(c.year, c.month, c.day) + 86400
    elseif not hour[c.hour] then t = epoch(c.year, c.month, c.day, c.hour) + 3600
    elseif not min[c.min] then t = t + 60
    else return t end
  end
  return nil
end

--- The latest slot at or before epoch second t, or nil when there is none
-- within the previous nine years.
function Schedule:prev(t)
  if self.every then return math.floor(t / self.every) * self.every end
  local limit = t - 9 * 366 * 86400
  t = math.floor(t / 60) * 60
  local min, hour, month = self.sets[1], self.sets[2], self.sets[4]
  while t >= limit do
    local c = civil(t)
    if not month[c.month] then t = epoch(c.year, c.month, 1) - 60
    elseif not day_ok(self, c) then t = epoch(c.year, c.month, c.day) - 60
    elseif not hour[c.hour] then t = epoch(c.year, c.month, c.day, c.hour) - 60
    elseif not min[c.min] then t = t - 60
    else return t end
  end
  return nil
end

--- True when the schedule fires at most once per UTC day (its logical
-- dates are then plain dates).
function Schedule:daily()
  if self.every then return self.every % 86400 == 0 end
  local function single(set)
    local n = 0
    for _ in pairs(set) do n = n + 1 end
    return n == 1
  end
  return single(self.sets[1]) and single(self.sets[2])
end

--- The logical date of slot ts (see the module comment).
function Schedule:label(ts) return M.label(ts, self:daily()) end

--- "YYYY-MM-DD" (daily) or "YYYY-MM-DDTHH:MM:SSZ" for epoch second ts.
function M.label(ts, daily)
  return os.date(daily and "!%Y-%m-%d" or "!%Y-%m-%dT%H:%M:%SZ", math.floor(ts))
end

function Schedule:__tostring() return "cron(" .. self.text .. ")" end

--- Parses a schedule. Returns it, or nil, a message naming the bad field
-- and "invalid".
function M.parse(text)
  if type(text) ~= "string" then return errors.fail("invalid", "a cron schedule must be a string") end
  local expr = text:match("^%s*(.-)%s*$")
  local every = expr:match("^@every%s+(.+)$")
  if every then
    local secs, err = M.duration(every)
    if not secs then return errors.fail("invalid", "bad cron expression '" .. text .. "': " .. err) end
    if secs < 1 or secs % 1 ~= 0 then
      return errors.fail("invalid", "bad cron expression '" .. text .. "': @every needs a whole number of seconds, at least 1s")
    end
    return setmetatable({ text = expr, every = secs }, Schedule)
  end
  if expr:sub(1, 1) == "@" then
    if not SHORTCUTS[expr:lower()] then
      return errors.fail("invalid", "bad cron expression '" .. text .. "': unknown shortcut (@yearly @monthly "
        .. "@weekly @daily @hourly @every DURATION)")
    end
    expr = SHORTCUTS[expr:lower()]
  end
  local parts = {}
  for p in expr:gmatch("%S+") do parts[#parts + 1] = p end
  if #parts ~= 5 then
    return errors.fail("invalid", string.format("bad cron expression '%s': expected 5 fields (minute hour "
      .. "day-of-month month day-of-week), got %d", text, #parts))
  end
  local sets = {}
  for i, f in ipairs(FIELDS) do
    local ok, set = pcall(parse_field, parts[i], f)
    if not ok then return errors.fail("invalid", "bad cron expression '" .. text .. "': " .. set) end
    sets[i] = set
  end
  if sets[5][7] then sets[5][0] = true end
  local s = setmetatable({ text = text:match("^%s*(.-)%s*$"), sets = sets, dom_star = parts[3]:sub(1, 1) == "*",
                           dow_star = parts[5]:sub(1, 1) == "*" }, Schedule)
  -- "0 0 30 2 *" parses but never fires: refuse it now, not at 3 a.m.
  if not s:next(0) and not s:next(os.time()) then
    return errors.fail("invalid", "bad cron expression '" .. text .. "': it never matches a real date")
  end
  return s
end

M.epoch = epoch

return M
