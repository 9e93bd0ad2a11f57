-- Registers spam's GBT pipeline (100 rounds, depth 6, eta 0.3, as
-- examples/spam/train.lua fits it, with features from the request only)
-- and promotes it to production; with --cluster the move is published and
-- every `tycho --cluster URL serve --model spam@production` node follows it.
--   tycho --home HOME --cluster URL run bench/cluster/train.lua DATA_DIR
local tycho = require "tycho"
local step = tycho.step
local data = arg[1] or "../shared/data"
local f = assert(tycho.frame.read_csv(data .. "/spam.csv"))
local train, test = f:split { mask = data .. "/spam.split" }
local pipe = assert(tycho.pipeline {
  name = "spam",
  steps = { step.fill_missing { "median" }, step.log1p { columns = { "capitalTotal", "capitalLong" } } },
  model = tycho.models.gbt { rounds = 100, depth = 6, eta = 0.3 },
}:fit(train, { label = "label", quiet = true }))
local m = pipe:evaluate(test)
local reg = assert(tycho.registry.open())
local v = assert(reg:register("spam", pipe, { metrics = m, description = "gbt 100x6" }))
assert(reg:promote("spam", v, "production"))
print(string.format("registered spam %s (test AUC %.4f) and promoted it to production%s", v, m.auc,
  reg.cluster and " (published on the cluster)" or ""))
