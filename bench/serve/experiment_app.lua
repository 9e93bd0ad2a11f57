-- The app of bench/serve/experiment_run: hosts model $EXP_MODEL (default
-- "spam") on POST /v1/models/$EXP_MODEL:predict, either plainly
-- (EXP_KIND=none, the default) or split by an experiment of kind $EXP_KIND
-- ("ab", "thompson", ...) between $EXP_MODEL@production and
-- $EXP_MODEL@staging, with the request field "id" as the unit. The bench
-- points both aliases at the same version, so both variants cost the same.
local tycho = require "tycho"
-- EXP_FLUSH_MS: the prediction log's timer (experiment_instructions sets it
-- beyond its run, so that the log flushes every 500 predictions only).
local app = tycho.app { prediction_log = { interval_ms = tonumber(os.getenv("EXP_FLUSH_MS")) } }
local model = os.getenv("EXP_MODEL") or "spam"
local kind = os.getenv("EXP_KIND") or "none"
if kind == "none" then
  app:model(model, { alias = "production" })
else
  app:experiment { name = "bench-" .. kind, unit = "id", kind = kind, seed = 7,
                   variants = { { name = "control", model = model .. "@production", weight = 0.5 },
                                { name = "b", model = model .. "@staging", weight = 0.5 } } }
end
return app
