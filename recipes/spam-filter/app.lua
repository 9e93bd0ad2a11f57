-- The spam filter online: gbt in production, an A/B test against the
-- logistic family on live traffic (each email a unit; reward: a correct
-- answer once the true label comes back as feedback), a drift alert, and
-- the daily retraining DAG run by the server's scheduler.
--   tycho --home H serve recipes/spam-filter/app.lua --port 8080
local tycho = require "tycho"
local app = tycho.app { prediction_log = { sample_every = tonumber(os.getenv("TYCHO_LOG_SAMPLE")) or 2 } }

app:model("spam", { alias = "production" })
app:model("spam_lr", { alias = "production" })
app:experiment {
  name = "gbt-vs-logistic", unit = "email_id", kind = "ab", metric = "correct", reward = "correct",
  description = "does the tree ensemble beat the linear model on live mail?",
  variants = { { name = "gbt", model = "spam@production", weight = 0.5 },
               { name = "logistic", model = "spam_lr@production", weight = 0.5 } },
}
app:alert { name = "spam-input-drift", model = "spam", window = "1h", every = "30s",
            when = function(m) return m.drift.samples >= 100 and m.drift.psi_max > 0.25 end,
            ["do"] = function(m)
              io.stderr:write(string.format("ALERT spam %s: inputs drifted (%s), max PSI %.2f\n", m.version,
                table.concat(m.drift.drifted, ", "), m.drift.psi_max))
            end }
app:schedule "dag.lua"
return app
