-- Chaos fixture: registers the small generated pipeline as "chaos" 1.0.0
-- and promotes it to production, for serve_app.lua.
local tycho = require "tycho"
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local reg = assert(tycho.registry.open())
local v = assert(reg:register("chaos", (common.pipeline())))
assert(reg:promote("chaos", v, "production"))
common.say("registered ", v)
