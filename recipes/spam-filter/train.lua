-- The spam filter's pipeline script: ingest every email, build the
-- point-in-time training set, fit both families, register and promote
-- through the gates (what one DAG run does, in one process).
--   tycho --home H run recipes/spam-filter/train.lua [--quick]
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local lib = dofile(here .. "lib.lua")
local quick = arg[1] == "--quick"

local until_ts = lib.BASE + 5 * 86400
local r = lib.ingest(until_ts)
print(string.format("ingested: %d landed, %d rejected, %d already there", r.landed, r.rejected, r.unchanged))
for _, family in ipairs { "gbt", "logistic" } do
  local t = lib.train_and_promote(family, until_ts, { quick = quick })
  if t.skipped then
    print(string.format("%-8s %s: %s", t.model, t.version, t.skipped))
  else
    print(string.format("%-8s %s: %d rows, holdout AUC %.4f, accuracy %.4f, %s", t.model, t.version, t.rows, t.auc,
      t.accuracy, t.promoted and "promoted" or ("refused: " .. tostring(t.refused))))
  end
end
