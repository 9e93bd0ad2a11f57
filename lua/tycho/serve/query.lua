--- Query parameters the console's read routes share: a time window and the
-- number of slices it is cut into, each bounded so that one answer's work
-- is bounded, and integers (a page's limit and offset). A bad value is
-- answered 400 with what is allowed.
local timeutil = require "tycho.util.timeutil"

local M = {}

--- ?name=DURATION ("15m", "1h", "7d"; default `default`) as seconds, at
-- most max_days days.
function M.window(http, q, name, default, max_days)
  local text = q[name] ~= nil and q[name] ~= "" and q[name] or default
  local ok, secs = pcall(timeutil.duration, text)
  if not ok or not secs or secs <= 0 or secs > max_days * 86400 then
    http.error(400, "bad_request", string.format("%s is a duration up to %dd: 15m, 1h, 7d", name, max_days))
  end
  return secs, text
end

--- ?name=N as an integer (default `default` when absent or empty); 400
-- when it is not one. Its range is the reader's to check.
function M.integer(http, q, name, default)
  if q[name] == nil or q[name] == "" then return default end
  local n = tonumber(q[name])
  if not n or n % 1 ~= 0 then http.error(400, "bad_request", name .. " must be an integer") end
  return n
end

--- ?buckets=N (default 60): the slices a window is cut into, 1 to 500.
function M.buckets(http, q)
  if q.buckets == nil or q.buckets == "" then return 60 end
  local n = tonumber(q.buckets)
  if not n or n < 1 or n > 500 or n % 1 ~= 0 then http.error(400, "bad_request", "buckets is an integer from 1 to 500") end
  return n
end

return M
