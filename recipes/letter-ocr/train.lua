-- The letter recognizer's pipeline script: AutoML with a k-means cluster
-- feature on every labelled row, registered and released (production when
-- there is none, else canary).
--   tycho --home H run recipes/letter-ocr/train.lua
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local lib = dofile(here .. "lib.lua")

local t = lib.train(2)
if t.skipped then print(t.skipped) return end
print(string.format("AutoML chose %s (cross-validated accuracy %.4f) on %d rows: test accuracy %.4f", t.family,
  t.cv_score, t.rows, t.accuracy))
for i, e in ipairs(t.leaderboard) do print(string.format("  %d. %-8s %.4f", i, e.family, e.score)) end
local r = lib.release(t.version)
print(r.alias and (t.version .. " released as " .. r.alias) or ("refused: " .. tostring(r.refused)))
