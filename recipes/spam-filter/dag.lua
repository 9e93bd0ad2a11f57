-- Daily retraining of the spam filter, 03:00 UTC: the emails that arrived
-- land in the feature store, then both model families refit on the
-- point-in-time training set and are promoted only through the gates.
--   tycho dag run recipes/spam-filter/dag.lua --from 2025-01-02 --to 2025-01-05
local tycho = require "tycho"

local function lib(ctx) return dofile(ctx.dir .. "/lib.lua") end
local quick = os.getenv("TYCHO_QUICK") == "1"

local function train(family)
  return { after = { "ingest" }, retries = 1, retry_delay = "30s", timeout = "20m", run = function(ctx)
    local r = lib(ctx).train_and_promote(family, ctx.ts, { quick = quick })
    if r.skipped then
      ctx.log(string.format("%s: %s; production stays %s", r.model, r.skipped, r.version))
    else
      ctx.log(string.format("%s %s: %d rows, holdout AUC %.4f accuracy %.4f, %s", r.model, r.version, r.rows, r.auc,
        r.accuracy, r.promoted and "promoted to production" or ("not promoted: " .. tostring(r.refused))))
    end
    return r
  end }
end

return tycho.dag {
  name = "spam-retrain", schedule = "0 3 * * *", start = "2025-01-02",
  description = "ingest the day's emails, refit gbt and logistic, promote through the gates",
  tasks = {
    ingest = { retries = 2, retry_delay = "10s", timeout = "10m", run = function(ctx)
      local r = lib(ctx).ingest(ctx.ts)
      ctx.log(string.format("emails up to %s: %d landed, %d rejected, %d already there", ctx.date, r.landed,
        r.rejected, r.unchanged))
      return { landed = r.landed, rejected = r.rejected, unchanged = r.unchanged }
    end },
    train_gbt = train("gbt"),
    train_logistic = train("logistic"),
  },
}
