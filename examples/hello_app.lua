-- A minimal app: `tycho serve examples/hello_app.lua`, then
--   curl http://127.0.0.1:8080/hello/world
--   curl -X POST -d '{"n": 41}' http://127.0.0.1:8080/counter/visits
local tycho = require "tycho"

local app = tycho.app()
local store  -- opened per worker, on first use (a store must not cross fork)

local function home_store()
  store = store or assert(tycho.store.open())
  return store
end

app:get("/hello/{name}", function(req)
  return { hello = req.params.name }
end)

-- Adds the posted n to a named counter kept in the home; answers the total.
app:post("/counter/{name}", function(req)
  local body = req:json()
  if type(body.n) ~= "number" then tycho.http.error(400, "bad_request", "field n must be a number") end
  local total = home_store():update(function(tx)
    local key = "counter:" .. req.params.name
    local value = (tonumber(tx:get("examples", key)) or 0) + body.n
    tx:put("examples", key, tostring(value))
    return value
  end)
  return { name = req.params.name, total = total }
end)

app:get("/counter/{name}", function(req)
  local value = home_store():get("examples", "counter:" .. req.params.name)
  if not value then tycho.http.error(404, "not_found", "no counter " .. req.params.name) end
  return { name = req.params.name, total = tonumber(value) }
end)

return app
