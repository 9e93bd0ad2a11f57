-- The spam model hosted the declarative way: POST /v1/models/spam:predict,
-- GET /v1/models, GET /metrics; the production alias is followed live.
local tycho = require "tycho"
local app = tycho.app()
app:model("spam", { alias = "production" })
return app
