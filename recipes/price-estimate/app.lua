-- The price estimate online. Three ways to get a price:
--   * precomputed, by key: POST /get-online-features with
--     {"features": ["price_estimates:price_estimate"], "entities": {"diamond_id": ["d-00042"]}}
--     reads what the daily batch job wrote (no model runs at request time);
--   * online, by key: POST /v1/models/price:predict {"instances": [{"diamond_id": "d-00042"}]}
--     runs price@production on the listing's attributes from the online store;
--   * online, a new item: the same route with the attributes in the instance
--     ({"carat": 0.7, "cut": 4, "color": 2, ...}, no key), for a diamond
--     listed after the last batch run.
-- The daily DAG (ingest, retrain through the gate, precompute) runs from
-- the server's scheduler; two alerts watch the live version: MAE of the
-- priced-back predictions, and drift of the inputs.
--   tycho --home H serve recipes/price-estimate/app.lua --port 8080
local tycho = require "tycho"
local app = tycho.app { prediction_log = { sample_every = tonumber(os.getenv("TYCHO_LOG_SAMPLE")) or 2 } }

app:model("price", { alias = "production" })

app:alert { name = "price-mae", model = "price", window = "1h", every = "30s",
            when = function(m) return (m.outcomes or 0) >= 50 and (m.metrics.mae or 0) > 600 end,
            ["do"] = function(m)
              io.stderr:write(string.format("ALERT price %s: online MAE %.0f USD over %d priced predictions\n",
                m.version, m.metrics.mae, m.outcomes))
            end }
app:alert { name = "price-input-drift", model = "price", window = "1h", every = "30s",
            when = function(m) return (m.drift.samples or 0) >= 100 and m.drift.psi_max > 0.25 end,
            ["do"] = function(m)
              io.stderr:write(string.format("ALERT price %s: inputs drifted (%s), max PSI %.2f\n", m.version,
                table.concat(m.drift.drifted, ", "), m.drift.psi_max))
            end }

-- The demo (main.lua) replays January 2025 by backfilling the DAG itself and
-- turns the scheduler off: on the real clock today's slot would be due at
-- once and would list every remaining diamond in the middle of the demo.
if os.getenv("PRICE_ESTIMATE_SCHEDULER") ~= "off" then app:schedule "dag.lua" end
return app
