-- Daily price estimates, 03:00 UTC: the day's new listings land in the
-- feature store, the model refits on every listing priced so far and is
-- promoted only through the gate, then the batch job precomputes the
-- estimate of every listed diamond into the feature view price_estimates.
--   tycho dag run recipes/price-estimate/dag.lua --from 2025-01-02 --to 2025-01-04
local tycho = require "tycho"

local function lib(ctx) return dofile(ctx.dir .. "/lib.lua") end
local quick = os.getenv("TYCHO_QUICK") == "1"

return tycho.dag {
  name = "price-estimate", schedule = "0 3 * * *", start = "2025-01-02",
  description = "ingest the day's listings, refit and promote through the gate, precompute every estimate",
  tasks = {
    ingest = { retries = 2, retry_delay = "10s", timeout = "10m", run = function(ctx)
      local l = lib(ctx)
      local r = l.ingest(ctx.ts)
      ctx.log(string.format("listings up to %s: %d read, %d landed (%d already there), %d rejected", ctx.date,
        r.rows_read, r.landed, r.unchanged, r.rejected))
      for _, x in ipairs(l.rejections(r)) do ctx.log(string.format("  rejected %4d: %s", x.n, x.reason)) end
      if r.quarantine then ctx.log("  quarantined rows: " .. r.quarantine) end
      return { read = r.rows_read, landed = r.landed, rejected = r.rejected, unchanged = r.unchanged,
               quarantine = r.quarantine }
    end },
    train = { after = { "ingest" }, retries = 1, retry_delay = "30s", timeout = "20m", run = function(ctx)
      local r = lib(ctx).train_and_promote(ctx.ts, { quick = quick })
      if r.skipped then
        ctx.log(string.format("%s: %s; production stays %s", r.model, r.skipped, r.version))
      else
        ctx.log(string.format("%s %s: %d rows, holdout MAE %.1f RMSE %.1f R2 %.4f, %s", r.model, r.version, r.rows,
          r.mae, r.rmse, r.r2, r.promoted and "promoted to production" or ("not promoted: " .. tostring(r.refused))))
      end
      return r
    end },
    precompute = { after = { "train" }, retries = 1, retry_delay = "30s", timeout = "20m", run = function(ctx)
      local r, err = lib(ctx).precompute(ctx.ts, ctx.home .. "/price-estimate")
      if not r then
        if err:match("^no production") then ctx.skip(err) end
        error(err, 0)
      end
      ctx.log(string.format("precomputed %d estimates with %s in %.1fs", r.items, r.version, r.seconds))
      return r
    end },
  },
}
