--- The letter recognizer's pieces, shared by its DAG, pipeline script and
-- demo: the labelled images that arrive day by day, AutoML over model
-- families with a k-means cluster of the inputs as an extra feature, and
-- the canary rollout: a retrained version takes a share of live traffic
-- first and replaces production only if its online accuracy holds up.
local tycho = require "tycho"

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
M.DATA = dofile(here .. "../common.lua").DATA
M.MODEL = "letter"
M.FIRST_DAY = 1735689600  -- 2025-01-01T00:00:00Z

local quick = os.getenv("TYCHO_QUICK") == "1"

function M.letter(code) return string.char(65 + code) end

--- Train and test frames: the fixed split; in quick mode a subsample.
function M.frames()
  local f = assert(tycho.frame.read_csv(M.DATA .. "/letter.csv"))
  local train, test = f:split { mask = M.DATA .. "/letter.split" }
  if quick then train, test = train:head(3000), test:head(1000) end
  return train, test
end

--- The training rows labelled by day d (1-based): 40 % on the first day,
-- all of them from the second on (labels keep arriving).
function M.labelled(train, day)
  if day >= 2 then return train end
  return train:head(math.floor(train:nrows() * 0.4))
end

function M.day_of(ts) return math.floor((ts - M.FIRST_DAY) / 86400) + 1 end

--- AutoML on the rows labelled by `day`: families searched with Bayesian
-- tuning, a k-means cluster (and the distance to its centre) added to the
-- 16 image statistics. Registers the winner with its test accuracy and the
-- leaderboard; a day with no new labels trains nothing.
function M.train(day)
  local train, test = M.frames()
  local rows = M.labelled(train, day)
  local reg = assert(tycho.registry.open())
  local latest = reg:get(M.MODEL)
  local fingerprint = rows:fingerprint()
  if latest and type(latest.data) == "table" and latest.data.content_hash == fingerprint.content_hash then
    return { skipped = "no new labelled rows since " .. latest.version, version = latest.version }
  end
  local res = assert(tycho.automl {
    data = rows, label = "label", name = M.MODEL, seed = 7,
    budget = quick and 4 or "90s", families = quick and { "forest", "logistic" } or { "gbt", "forest", "logistic" },
    steps = { tycho.step.kmeans { k = 26, name = "cluster" } },
  })
  local metrics = res.pipeline:evaluate(test)
  -- Output drift is judged against held-out answers, not the training
  -- rows a forest nearly memorizes.
  res.pipeline:set_output_reference(test)
  local board = {}
  for i = 1, math.min(5, #res.leaderboard) do
    local t = res.leaderboard[i]
    board[i] = { family = t.family, score = t.score }
  end
  local version = assert(reg:register(M.MODEL, res.pipeline, { metrics = metrics, data = fingerprint,
    description = string.format("automl (%s) on %d rows, day %d", res.best.family, rows:nrows(), day),
    params = { leaderboard = board } }))
  return { version = version, family = res.best.family, rows = rows:nrows(), accuracy = metrics.accuracy,
           cv_score = res.best.score, leaderboard = board }
end

--- Releases a trained version: straight to production when there is none,
-- else to the canary alias, after an offline gate (test accuracy within a
-- point of production's).
function M.release(version)
  local reg = assert(tycho.registry.open())
  local prod = reg:get(M.MODEL, "production")
  if not prod then
    assert(reg:promote(M.MODEL, version, "production", { gates = { accuracy = 0.5 } }))
    return { alias = "production", version = version }
  end
  local floor = (prod.metrics and prod.metrics.accuracy or 0) - 0.01
  local ok, why = reg:promote(M.MODEL, version, "canary", { gates = { accuracy = floor } })
  if not ok then return { alias = nil, version = version, refused = why } end
  return { alias = "canary", version = version }
end

--- Judges the canary on live traffic: its accuracy on joined outcomes
-- against production's over the window. Enough outcomes and no worse than
-- `margin` below production: the canary becomes production. Worse: the
-- canary alias goes back to production's version (all traffic there).
function M.judge(opts)
  opts = opts or {}
  local reg = assert(tycho.registry.open())
  local prod, canary = reg:get(M.MODEL, "production"), reg:get(M.MODEL, "canary")
  if not prod or not canary or canary.version == prod.version then return { decision = "no canary" } end
  local summary = tycho.monitor.summary(M.MODEL, { window = opts.window or "1d" })
  local acc, n = {}, {}
  for _, v in ipairs(summary.versions) do
    if v.role == "live" then acc[v.version], n[v.version] = v.metrics.accuracy, v.outcomes end
  end
  local min = opts.min_outcomes or 100
  local report = { production = prod.version, canary = canary.version, production_accuracy = acc[prod.version],
                   canary_accuracy = acc[canary.version], canary_outcomes = n[canary.version] or 0 }
  if (n[canary.version] or 0) < min or (n[prod.version] or 0) < min then
    report.decision = string.format("wait: %d canary outcomes of the %d needed", n[canary.version] or 0, min)
    return report
  end
  if acc[canary.version] >= acc[prod.version] - (opts.margin or 0.01) then
    assert(reg:promote(M.MODEL, canary.version, "production", { gates = { schema = true } }))
    report.decision = "promoted " .. canary.version .. " to production"
  else
    assert(reg:promote(M.MODEL, prod.version, "canary", { gates = { schema = false } }))
    report.decision = "rolled back: canary " .. canary.version .. " is less accurate online"
  end
  return report
end

return M
