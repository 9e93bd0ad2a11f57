-- Chaos fixture: hosts the "chaos" model (registered by serve_setup.lua) for
-- tests/chaos/run.sh, which kills its workers and master with SIGKILL.
local tycho = require "tycho"
local app = tycho.app()
app:model("chaos", { alias = "production" })
return app
