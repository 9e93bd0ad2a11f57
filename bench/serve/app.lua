-- Hosts both benchmark models: POST /v1/models/spam:predict (GBT, from
-- examples/spam/train.lua) and POST /v1/models/spam_logistic:predict
-- (bench/serve/train_logistic.lua), each following its production alias.
local tycho = require "tycho"
local app = tycho.app()
app:model("spam", { alias = "production" })
app:model("spam_logistic", { alias = "production" })
return app
