--- What every recipe's main.lua shares: section titles, `tycho` child
-- commands on the recipe's home (output shown, failure fatal), and HTTP
-- calls that must answer 200.
--   local common = dofile(here .. "../common.lua")
--   local run = common.runner(home, env); run { "dag", "run", file }
local testing = require "tycho.testing"

local M = {}

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
