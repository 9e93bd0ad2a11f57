--- What every recipe's main.lua shares: section titles, `tycho` child
-- commands on the recipe's home (output shown, failure fatal), and HTTP
-- calls that must answer 200.
--   local common = dofile(here .. "../common.lua")
--   local run = common.runner(home, env); run { "dag", "run", file }
local testing = require "tycho.testing"

local M = {}

-- The shared datasets sit next to the project: ../shared/data from its root.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
M.DATA = os.getenv("TYCHO_DATA") or (here .. "../../shared/data")

--- Arrival times by row of n items, one every `every` seconds from `base`
-- in a fixed shuffled order (the datasets are sorted; real arrivals are
-- not): a Fisher-Yates shuffle driven by a MINSTD generator (`multiplier`
-- 16807 unless given) from `seed`.
function M.arrivals(n, base, every, seed, multiplier)
  local order, state = {}, seed
  for i = 1, n do order[i] = i end
  for k = n, 2, -1 do
    state = state * (multiplier or 16807) % 2147483647
    local j = state % k + 1
    order[k], order[j] = order[j], order[k]
  end
  local at = {}
  for rank, row in ipairs(order) do at[row] = base + rank * every end
  return at
end

--- The rows of frame f that arrived by until_ts (at: arrival time by row)
-- as feature-store events: column `drop` removed, the entity key `key`
-- (id_of(row)) and event_time added.
function M.arrived_events(f, at, until_ts, drop, key, id_of)
  local keep, ids, times = {}, {}, {}
  for row = 1, f:nrows() do
    if at[row] <= until_ts then
      keep[#keep + 1] = row
      ids[#ids + 1], times[#times + 1] = id_of(row), at[row]
    end
  end
  return f:take(keep):drop(drop):with_column(key, ids):with_column("event_time", times)
end

function M.step(title) print("\n== " .. title) end

--- A function that runs `tycho --home HOME ARGS...` with env, prints its
-- output, and raises when it fails.
function M.runner(home, env)
  return function(args)
    local full = { "--home", home }
    for _, a in ipairs(args) do full[#full + 1] = a end
    local code, out, err = testing.run(full, { env = env, timeout = 1800000 })
    io.write(out)
    if code ~= 0 then
      io.stderr:write(err)
      error("tycho " .. table.concat(args, " ") .. " failed with exit code " .. tostring(code), 0)
    end
  end
end

--- request(method, path, body) on the server: the decoded JSON answer, or
-- an error naming the route and status.
function M.client(port)
  return function(method, path, body)
    local status, _, raw, doc = testing.request(port, method, path, { body = body, timeout = 30000 })
    if status ~= 200 then error(method .. " " .. path .. " answered " .. tostring(status) .. ": " .. tostring(raw), 0) end
    return doc
  end
end

--- Stops the server (SIGTERM drains it) and prints its exit code; after
-- a failure (ok false) its stderr too, which says why.
function M.stop(srv, ok)
  local code = srv:stop()
  print("server exited with code " .. tostring(code))
  if not ok or code ~= 0 then io.stderr:write("server log:\n", srv.proc.stderr(), "\n") end
end

return M
