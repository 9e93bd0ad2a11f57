-- The app `bench/http/run` serves: one fixed JSON route, the same answer the
-- nginx peer returns from its config, so the benchmark measures the HTTP
-- server and the Lua handler path, nothing else.
local tycho = require "tycho"

local app = tycho.app()
app:get("/hello", function() return { hello = "world" } end)
return app
