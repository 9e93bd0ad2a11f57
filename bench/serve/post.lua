-- wrk script for bench/serve/run: POSTs the JSON body in $BODY_FILE (one
-- instance of spam's 57 request features) to the URL's path, and prints one
-- machine-readable line when done (latencies in microseconds):
--   RESULT requests duration_us p50 p99 p99.9 non2xx socket_errors
local path = os.getenv("BODY_FILE") or error("BODY_FILE is not set")
local f = assert(io.open(path))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

-- DISTINCT=1: no two requests alike, as real traffic's instances differ
-- (a server that remembers a repeated body, as LuaJIT's string table
-- does, gains nothing then): the "make" value counts up. wrk then builds
-- each request in Lua, which costs wrk some CPU of its own: compare such
-- rows among themselves.
if os.getenv("DISTINCT") == "1" then
  local before, after = wrk.body:match('^(.-"make":)[%d.]+(.*)$')
  assert(before, "the body has no \"make\" value to vary")
  local n = 0
  function request()
    n = n + 1
    return wrk.format(nil, nil, nil, before .. (n % 100000) / 1000 .. after)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  -- wrk counts responses with status > 399 in errors.status.
  io.write(string.format("RESULT %d %d %.1f %.1f %.1f %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), e.status,
    e.connect + e.read + e.write + e.timeout))
end
