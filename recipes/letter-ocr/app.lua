-- The letter recognizer online: production answers, and a retrained
-- version on the canary alias takes 30 % of the images (sticky by the
-- request's `id`) until the DAG judges it on their outcomes.
--   tycho --home H serve recipes/letter-ocr/app.lua
local tycho = require "tycho"
local app = tycho.app { prediction_log = { sample_every = 2 } }  -- inputs of every 2nd image for drift
app:model("letter", { alias = "production", canary = { alias = "canary", percent = 30 } })
-- The demo (main.lua) drives the days itself; a deployment lets the
-- server's scheduler run the DAG daily.
if os.getenv("TYCHO_SCHEDULE") ~= "off" then app:schedule "dag.lua" end
return app
