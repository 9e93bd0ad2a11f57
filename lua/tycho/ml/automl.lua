--- AutoML: tries the model families with Bayesian tuning within a budget
-- and returns the best pipeline, fitted on all the data, with the
-- leaderboard of every trial.
--
--   local res = tycho.automl { data = train, label = "label", budget = "2m" }   -- or budget = 30 (trials)
--   res.pipeline:evaluate(test); reg:register("spam", res.pipeline, { metrics = ... })
local tune = require "tycho.ml.tune"
local models = require "tycho.ml.models"
local pipeline = require "tycho.ml.pipeline"
local timeutil = require "tycho.util.timeutil"
local errors = require "tycho.util.errors"
local uv = require "luv"

local M = {}

-- Search spaces per family, and how a trial's params become a model.
local FAMILIES = {
  gbt = {
    tasks = { binary = true, multiclass = true, regression = true },
    space = { depth = { "int", 3, 8 }, eta = { "log", 0.03, 0.4 }, min_child_weight = { "log", 0.5, 10 },
              subsample = { 0.6, 1.0 }, colsample = { 0.5, 1.0 } },
    defaults = { depth = 6, eta = 0.3, min_child_weight = 1, subsample = 1, colsample = 1 },
    make = function(p, task, big)
      return models.gbt { objective = task, rounds = big and 200 or 100, depth = p.depth, eta = p.eta,
                          min_child_weight = p.min_child_weight, subsample = p.subsample, colsample = p.colsample }
    end,
  },
  forest = {
    tasks = { binary = true, multiclass = true, regression = true },
    space = { max_features = { 0.1, 0.9 }, min_samples_leaf = { "int", 1, 5 } },
    -- The forest's own default: sqrt(p) of p columns per split.
    defaults = function(p) return { max_features = math.max(0.1, math.min(0.9, math.sqrt(p) / p)), min_samples_leaf = 1 } end,
    make = function(p, task)
      return models.forest { task = task == "regression" and "regression" or "classification", trees = 100,
                             max_features = p.max_features, min_samples_leaf = p.min_samples_leaf }
    end,
  },
  logistic = {
    tasks = { binary = true, multiclass = true },
    space = { C = { "log", 0.01, 100 } },
    defaults = { C = 1 },
    make = function(p) return models.logistic { C = p.C, max_iter = 200 } end,
  },
  linear = {
    tasks = { regression = true },
    space = { alpha = { "log", 1e-4, 100 } },
    defaults = { alpha = 1e-4 },
    make = function(p) return models.linear { alpha = p.alpha } end,
  },
}
local ORDER = { "gbt", "forest", "logistic", "linear" }

local function infer_task(f, label)
  local col = f:col(label)
  if col.code == 3 or col.code == 2 then
    local seen, k = {}, 0
    for i = 1, col.n do
      local v = col:get(i)
      if v ~= nil and not seen[v] then seen[v], k = true, k + 1 end
    end
    return k == 2 and "binary" or "multiclass"
  end
  local seen, k = {}, 0
  for i = 1, col.n do
    local v = col:get(i)
    if v ~= nil then
      if v % 1 ~= 0 then return "regression" end
      if not seen[v] then
        seen[v], k = true, k + 1
        if k > 256 then return "regression" end
      end
    end
  end
  return k == 2 and "binary" or "multiclass"
end

local BUDGET_SPENT = "automl: budget spent"

-- On a terminal (unless quiet): one line rewritten after every trial, with
-- the family being tuned and the best score so far. Nothing when piped.
local function progress(opts, board, metric)
  if opts.quiet or uv.guess_handle(2) ~= "tty" then return end
  local best
  for _, t in ipairs(board) do if not best or tune.better(metric, t.score, best) then best = t.score end end
  io.stderr:write(string.format("\rautoml: trial %d (%s), best %s %.6g   ", #board, board[#board].family, metric, best))
end
local metrics_lower = { rmse = true, mae = true, log_loss = true }

local DEFAULT_METRIC = { binary = "auc", multiclass = "accuracy", regression = "rmse" }

--- opts: data (frame), label, task ("auto"), budget (trials as a number, or
-- a duration like "5m"; default 30 trials), families (list), metric, cv (3),
-- seed, steps (pipeline steps to put before every model), pipeline (instead
-- of steps: a function(model) -> pipeline, so the steps are fitted inside
-- every fold with each candidate model, as the final pipeline will be),
-- blend (true: try averaging the two best families), name (the runs'
-- model), study (the id its trials carry in the runs; default a new one),
-- on_trial (function(trial, n, metric) after each trial: { family, params,
-- score }).
-- Returns { pipeline, best = {family, params, score}, leaderboard = {...},
-- metric, study }, or nil, message, code.
function M.run(opts)
  if type(opts) ~= "table" or not opts.data or not opts.label then
    error("automl: needs data (frame) and label", 2)
  end
  local wrap = opts.pipeline
  if wrap ~= nil and type(wrap) ~= "function" then error("automl: pipeline must be a function(model) -> pipeline", 2) end
  if wrap and opts.steps then error("automl: give steps or a pipeline factory, not both", 2) end
  local function candidate(model) if wrap then return wrap(model) end return model end
  local task = (opts.task == nil or opts.task == "auto") and infer_task(opts.data, opts.label) or opts.task
  local metric = opts.metric or DEFAULT_METRIC[task]
  local families = {}
  for _, name in ipairs(opts.families or ORDER) do
    if FAMILIES[name] and FAMILIES[name].tasks[task] then families[#families + 1] = name end
  end
  local trials, deadline = 30, nil
  if type(opts.budget) == "number" then trials = opts.budget
  elseif opts.budget then deadline = tonumber(uv.hrtime()) / 1e9 + timeutil.duration(opts.budget) trials = 1e6 end
  local per_family = math.max(2, math.floor(trials / #families))
  -- With steps, the search runs on the data as the steps leave it, so the
  -- features they add (a k-means cluster, say) take part in it.
  local search = opts.data
  if opts.steps and #opts.steps > 0 then
    search = pipeline.transform_for_search({ steps = opts.steps, features = opts.features }, opts.data, opts.label)
  end
  local search_features = search == opts.data and opts.features or nil
  local board = {}
  -- Every family's trials (and the blend's) are one study in the runs.
  local study = opts.study or tune.study_id(opts.name or "automl")
  local n_features = search_features and #search_features or search:ncols() - 1
  for _, name in ipairs(families) do
    local fam = FAMILIES[name]
    local remaining = deadline and (deadline - tonumber(uv.hrtime()) / 1e9)
    if remaining and remaining <= 0 then break end
    local budget_here = deadline and math.max(2, math.min(15, per_family)) or per_family
    local ok, err = pcall(tune.bayes, {
      refit = false, quiet = true,  -- the winner is fitted once, below
      model = function(p) return candidate(fam.make(p, task)) end,
      space = fam.space, data = search, label = opts.label, metric = metric, cv = opts.cv or 3,
      trials = budget_here, init = math.min(3, budget_here), seed = opts.seed or 42, name = opts.name, study = study,
      -- Each family's defaults are tried first: AutoML never does worse
      -- (in cross-validation) than the untuned models.
      initial = { type(fam.defaults) == "function" and fam.defaults(n_features) or fam.defaults },
      features = search_features,
      on_trial = function(t)
        t.family = name
        t.default = #board == 0 or board[#board].family ~= name  -- each family's first trial is its defaults
        board[#board + 1] = t
        progress(opts, board, metric)
        if opts.on_trial then opts.on_trial(t, #board, metric) end
        if deadline and tonumber(uv.hrtime()) / 1e9 > deadline then error(BUDGET_SPENT, 0) end
      end,
    })
    if not ok and err ~= BUDGET_SPENT then error(err, 0) end
  end
  local best
  for _, t in ipairs(board) do
    if not best or tune.better(metric, t.score, best.score) then
      best = { family = t.family, params = t.params, score = t.score }
    end
  end
  if not best then return errors.fail("invalid", "automl: no trial finished within the budget") end
  -- A blend of the two best families often beats either: score it the same way.
  -- Within a family the defaults stand unless a tuned trial beats them by
  -- more than the cross-validation noise: picking the luckiest of many
  -- trials otherwise buys test error (the winner's curse).
  local margin = opts.margin or 0.003
  local function clearly_better(a, b)
    if metrics_lower[metric] then return a < b * (1 - margin) end
    return a > b + margin
  end
  local per_family_best, order = {}, {}
  for _, t in ipairs(board) do
    local b = per_family_best[t.family]
    if not b then order[#order + 1] = t.family end
    if not b or (b.default and clearly_better(t.score, b.score)) or (not b.default and tune.better(metric, t.score, b.score)) then
      per_family_best[t.family] = t
    end
  end
  best = nil
  for _, fam in ipairs(order) do
    local t = per_family_best[fam]
    if not best or tune.better(metric, t.score, best.score) then best = { family = fam, params = t.params, score = t.score } end
  end
  table.sort(order, function(a, b) return tune.better(metric, per_family_best[a].score, per_family_best[b].score) end)
  local function make_best()
    return FAMILIES[best.family].make(best.params, task)
  end
  local make = make_best
  if #order >= 2 and opts.blend ~= false then
    local a, b = per_family_best[order[1]], per_family_best[order[2]]
    local function make_blend()
      return models.blend { members = { FAMILIES[a.family].make(a.params, task), FAMILIES[b.family].make(b.params, task) } }
    end
    local ok, res = pcall(tune.grid, { model = function() return candidate(make_blend()) end, space = {}, data = search,
                                       label = opts.label, refit = false, quiet = true,
                                       metric = metric, cv = opts.cv or 3, seed = opts.seed or 42,
                                       features = search_features, name = opts.name, study = study,
                                       on_trial = function(t) t.family = "blend" end })
    -- The blend is kept unless clearly worse: averaging two families lowers
    -- variance, which cross-validation on smaller folds undervalues.
    if ok and not clearly_better(best.score, res.best.score) then
      local t = res.best
      t.family, t.params = "blend", { [a.family] = a.params, [b.family] = b.params }
      board[#board + 1] = t
      best = { family = "blend", params = t.params, score = t.score }
      make = make_blend
    end
  end
  if not opts.quiet and uv.guess_handle(2) == "tty" then io.stderr:write("\n") end
  local pipe = wrap and wrap(make()) or pipeline.new { steps = opts.steps, model = make(), name = opts.name }
  if not pipeline.is_pipeline(pipe) then error("automl: pipeline(model) must return a pipeline", 2) end
  local ok, err, code = pipe:fit(opts.data, { label = opts.label, quiet = true })
  if not ok then return nil, err, code end
  table.sort(board, function(a, b) return tune.better(metric, a.score, b.score) end)
  for rank, t in ipairs(board) do t.rank = rank end
  return { pipeline = pipe, best = best, leaderboard = board, metric = metric, task = task, study = study }
end

return setmetatable(M, { __call = function(_, opts) return M.run(opts) end })
