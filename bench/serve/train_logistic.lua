-- Registers a logistic pipeline "spam_logistic" next to train.lua's GBT "spam"
-- and promotes it to production, so one app can host both.
--   tycho --home HOME run bench/serve/train_logistic.lua DATA_DIR
local tycho = require "tycho"
local data = arg[1] or "../shared/data"
local f = assert(tycho.frame.read_csv(data .. "/spam.csv"))
local tr = f:split { mask = data .. "/spam.split" }
local p = assert(tycho.pipeline { model = tycho.models.logistic {} }:fit(tr, { label = "label" }))
local reg = assert(tycho.registry.open())
local v = assert(reg:register("spam_logistic", p))
assert(reg:promote("spam_logistic", v, "production"))
print("registered spam_logistic " .. v .. " and promoted it to production")
