-- Daily at 04:00 UTC: judge yesterday's canary on live outcomes, retrain
-- with AutoML on the labels that arrived, and release the new version as
-- the next canary (or as production when there is none).
--   tycho dag run recipes/letter-ocr/dag.lua --date 2025-01-02
local tycho = require "tycho"

local function lib(ctx) return dofile(ctx.dir .. "/lib.lua") end

return tycho.dag {
  name = "letter-retrain", schedule = "0 4 * * *", start = "2025-01-01",
  description = "judge the canary, retrain with AutoML, release a new canary",
  tasks = {
    judge = { timeout = "5m", run = function(ctx)
      local r = lib(ctx).judge { min_outcomes = tonumber(os.getenv("LETTER_MIN_OUTCOMES")) }
      ctx.log("canary: " .. r.decision)
      return r
    end },
    train = { after = { "judge" }, timeout = "30m", retries = 1, retry_delay = "1m", run = function(ctx)
      local r = lib(ctx).train(lib(ctx).day_of(ctx.ts))
      if r.skipped then ctx.log(r.skipped) else
        ctx.log(string.format("%s %s: %d rows, test accuracy %.4f", r.family, r.version, r.rows, r.accuracy))
      end
      return r
    end },
    release = { after = { "train" }, run = function(ctx)
      local t = ctx.outputs.train
      if t.skipped then return { alias = false } end
      local r = lib(ctx).release(t.version)
      ctx.log(r.alias and (t.version .. " released as " .. r.alias) or ("refused: " .. tostring(r.refused)))
      return r
    end },
  },
}
