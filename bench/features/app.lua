-- The app bench/features/run serves: just tycho's built-in routes, of which
-- the benchmark uses POST /get-online-features (lua/tycho/http.lua) against
-- the home the Lua phases filled (view `o`, entity key `key`, f1..f10).
local tycho = require "tycho"

return tycho.app()
