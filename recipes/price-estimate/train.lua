-- The price estimate's pipeline script: ingest the listings, build the
-- point-in-time training set, fit, register, promote through the gate and
-- precompute every listed diamond's estimate into price_estimates (what
-- one DAG run does, in one process).
--   tycho --home H run recipes/price-estimate/train.lua [--quick] [--date 2025-01-04]
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local lib = dofile(here .. "lib.lua")
local tycho = require "tycho"

local quick, date = false, "2025-01-04"
local i = 1
while arg[i] do
  if arg[i] == "--quick" then quick = true
  elseif arg[i] == "--date" and arg[i + 1] then date, i = arg[i + 1], i + 1
  else error("usage: train.lua [--quick] [--date YYYY-MM-DD]", 0) end
  i = i + 1
end
-- The 03:00 UTC slot of that date, as the DAG's run for it would see.
local until_ts = math.floor(assert(require("tycho.timeutil").parse(date .. "T03:00:00Z")) / 1e6)

local r = lib.ingest(until_ts)
print(string.format("ingested listings up to %s: %d read, %d landed (%d already there), %d rejected", date,
  r.rows_read, r.landed, r.unchanged, r.rejected))
for _, x in ipairs(lib.rejections(r)) do print(string.format("  rejected %4d: %s", x.n, x.reason)) end
if r.quarantine then print("  quarantined rows: " .. r.quarantine) end

local t = lib.train_and_promote(until_ts, { quick = quick })
if t.skipped then
  print(string.format("%s %s: %s", t.model, t.version, t.skipped))
else
  print(string.format("%s %s: %d rows, holdout MAE %.1f RMSE %.1f R2 %.4f, %s", t.model, t.version, t.rows, t.mae,
    t.rmse, t.r2, t.promoted and "promoted" or ("refused: " .. tostring(t.refused))))
end

local p, err = lib.precompute(until_ts, tycho.home() .. "/price-estimate")
if not p then error(err, 0) end
print(string.format("precomputed %d estimates with %s %s", p.items, lib.MODEL, p.version))
