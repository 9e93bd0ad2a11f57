--- Hyperparameter search: grid, random and Bayesian (Gaussian-process
-- surrogate with expected improvement). Every search scores candidates the
-- same way — k-fold (cv = k) or a holdout fraction — and returns a
-- leaderboard of trials, best first.
--
--   local result = tune.bayes {
--     model = function(p) return models.gbt { rounds = 50, depth = p.depth, eta = p.eta } end,
--     space = { depth = { "int", 2, 8 }, eta = { "log", 0.01, 0.5 } },
--     data = train, label = "label", metric = "auc", cv = 3, trials = 20, seed = 42,
--   }
--   result.best.params, result.best.score, result.trials
--   result.fitted   -- the best candidate fitted on all of data (refit = false skips it)
--   result.study    -- the id its trials carry in the runs (opts.study, or a new one)
--
-- model(params) may return a model or a pipeline: with a pipeline, its
-- steps are fitted inside every fold with the model, so their parameters
-- can be searched too (space = { clip_hi = {...}, depth = {...} }).
-- A frame's entity keys and event time (fs:historical's) are never
-- features unless opts.features names them: result.left_out says what was
-- left out.
--
-- Space entries: { lo, hi } (uniform real), { "int", lo, hi }, { "log", lo, hi }
-- (log-uniform), or a list of choices { "a", "b" } (grid and random only
-- need lists; bayes maps choices onto an index).
local metrics = require "tycho.ml.metrics"
local models = require "tycho.ml.models"
local pipeline = require "tycho.ml.pipeline"
local columns = require "tycho.ml.columns"
local json = require "tycho.util.json"
local timeutil = require "tycho.util.timeutil"
local uv = require "luv"

local function wall() return tonumber(uv.hrtime()) / 1e9 end
local on_tty  -- whether stderr is a terminal (progress lines), asked once

local M = {}

-- ---- spaces ----------------------------------------------------------------------

local function dims(space)
  local names = {}
  for k in pairs(space) do names[#names + 1] = k end
  table.sort(names)
  local out = {}
  for i, name in ipairs(names) do
    local s = space[name]
    if type(s) ~= "table" then error("tune: space." .. name .. " must be a table", 3) end
    local kind
    if s[1] == "int" or s[1] == "log" then kind = s[1]
    elseif #s == 2 and type(s[1]) == "number" and type(s[2]) == "number" and s[1] < s[2] and s.choices == nil then
      kind = "real"
    else kind = "choice" end
    out[i] = { name = name, kind = kind, lo = kind == "real" and s[1] or s[2], hi = kind == "real" and s[2] or s[3],
               choices = kind == "choice" and s or nil }
  end
  return out
end

-- Maps u in [0, 1] onto a dimension's value.
local function decode(d, u)
  if d.kind == "real" then return d.lo + u * (d.hi - d.lo) end
  if d.kind == "log" then return math.exp(math.log(d.lo) + u * (math.log(d.hi) - math.log(d.lo))) end
  if d.kind == "int" then return math.min(d.hi, d.lo + math.floor(u * (d.hi - d.lo + 1))) end
  return d.choices[math.min(#d.choices, 1 + math.floor(u * #d.choices))]
end

-- The unit-cube point of a value (inverse of decode), for given starting points.
local function encode(d, v)
  if d.kind == "real" then return (v - d.lo) / (d.hi - d.lo) end
  if d.kind == "log" then return (math.log(v) - math.log(d.lo)) / (math.log(d.hi) - math.log(d.lo)) end
  if d.kind == "int" then return (v - d.lo + 0.5) / (d.hi - d.lo + 1) end
  for i, c in ipairs(d.choices) do
    if c == v then return (i - 0.5) / #d.choices end
  end
  error("tune: initial value " .. tostring(v) .. " is not a choice of " .. d.name, 4)
end

local function params_of(ds, u)
  local p = {}
  for i, d in ipairs(ds) do p[d.name] = decode(d, u[i]) end
  return p
end

local function key_of(p)
  local names = {}
  for k in pairs(p) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = k .. "=" .. tostring(p[k]) end
  return table.concat(parts, ",")
end

-- Seeded generator (Park-Miller), the same sequence everywhere. The seed is
-- scrambled first (a few rounds of an integer hash), so small and adjacent
-- seeds start unrelated streams instead of near-zero, evenly spaced draws.
local function rng(seed)
  local x = (seed or 42) % 2147483646 + 1
  for _ = 1, 4 do x = (x * 1103515245 + 12345) % 2147483647 end
  x = (x * 48271) % 2147483647
  if x == 0 then x = 1 end
  for _ = 1, 8 do x = x * 48271 % 2147483647 end
  return function()
    x = x * 48271 % 2147483647
    return (x - 1) / 2147483646
  end
end

-- ---- scoring ---------------------------------------------------------------------

-- A candidate (model or pipeline) of params, fitted on train.
local function fit_candidate(opts, params, train)
  local candidate = opts.model(params)
  local ok, err
  if pipeline.is_pipeline(candidate) then
    ok, err = candidate:fit(train, { label = opts.label, quiet = true })
  elseif models.is_model(candidate) then
    ok, err = candidate:fit(train, { label = opts.label, features = opts.features, quiet = true })
  else
    error("tune: model(params) must return a model or a pipeline, got " .. type(candidate), 0)
  end
  if not ok then error("tune: fit failed for " .. key_of(params) .. ": " .. tostring(err), 0) end
  return candidate
end

local function evaluate(opts, params)
  local data = opts.data
  local metric = opts.metric or "accuracy"
  local folds
  if opts.cv then
    folds = data:kfold(opts.cv, { seed = opts.seed })
  else
    local train, test = data:split { test = opts.holdout or 0.2, seed = opts.seed }
    folds = { { train = train, test = test } }
  end
  local total, t0, candidate = 0, wall(), nil
  for _, fold in ipairs(folds) do
    candidate = fit_candidate(opts, params, fold.train)
    local res = pipeline.is_pipeline(candidate) and candidate:evaluate(fold.test) or metrics.evaluate(candidate, fold.test)
    if res[metric] == nil then
      error("tune: metric '" .. metric .. "' does not apply to a " .. tostring(candidate.task or
        (candidate.model and candidate.model.task)) .. " model", 0)
    end
    total = total + res[metric]
  end
  return total / #folds, wall() - t0, candidate
end

--- Whether score a beats score b under the metric named metric (higher or
-- lower is better, by metrics.higher_is_better); false on a tie.
local function better(metric, a, b)
  if metrics.higher_is_better(metric) then return a > b end
  return a < b
end
M.better = better

local function finish(opts, trials)
  if #trials == 0 then error("tune: no trial ran (is the space empty?)", 0) end
  if on_tty and not opts.quiet then io.stderr:write("\n") end
  local metric = opts.metric or "accuracy"
  local ranked = {}
  for i, t in ipairs(trials) do ranked[i] = t end
  table.sort(ranked, function(a, b)
    if a.score ~= b.score then return better(metric, a.score, b.score) end
    return a.trial < b.trial
  end)
  for rank, t in ipairs(ranked) do t.rank = rank end
  local result = { best = ranked[1], trials = ranked, history = trials, metric = metric, left_out = trials.left_out,
                   study = trials.study }
  if opts.refit ~= false then result.fitted = fit_candidate(opts, ranked[1].params, opts.data) end
  return result
end

local function check(opts, name)
  if type(opts) ~= "table" or type(opts.model) ~= "function" or not opts.data or not opts.label then
    error("tune." .. name .. ": needs model (function of params), data (frame), label and space", 3)
  end
end

-- On a terminal (and unless quiet), one line that is rewritten after every
-- trial: how many ran, the best score so far. Nothing when piped.
local function show_progress(opts, trials)
  if opts.quiet then return end
  if on_tty == nil then on_tty = uv.guess_handle(2) == "tty" end
  if not on_tty then return end
  local metric, best = opts.metric or "accuracy", nil
  for _, t in ipairs(trials) do
    if not best or better(metric, t.score, best) then best = t.score end
  end
  io.stderr:write(string.format("\rtune: trial %d%s, best %s %.6g   ", #trials,
    opts.trials and ("/" .. opts.trials) or "", metric, best))
end

local study_count = 0

--- A new study id: UTC start time first, so that ids sort as the studies
-- started, then the process and name (cut to 40 bytes).
function M.study_id(name)
  study_count = study_count + 1
  local us = timeutil.now()
  return string.format("%s%06d-%d-%d-%s", os.date("!%Y%m%dT%H%M%S.", math.floor(us / 1e6)), us % 1e6,
    uv.os_getpid(), study_count, tostring(name):sub(1, 40))
end

local function run_trial(opts, trials, params)
  local score, seconds, candidate = evaluate(opts, params)
  if not trials.left_out then
    trials.left_out = candidate.left_out or json.empty_array
    local used = candidate.features or candidate.inputs
    local note = not opts.quiet and used and columns.describe("tune", used, candidate.left_out or {})
    if note then io.stderr:write(note, "\n") end
  end
  trials[#trials + 1] = { trial = #trials + 1, params = params, score = score, seconds = seconds }
  trials.study = trials.study or opts.study or M.study_id(opts.name or "tune")
  show_progress(opts, trials)
  local t = trials[#trials]
  if opts.on_trial then opts.on_trial(t) end
  -- The study groups the search's trials in the runs index (the console's
  -- best score by trial); family is what automl's on_trial names.
  require("tycho.registry.runs").record { kind = "trial", model = opts.name or "tune", params = params,
    metrics = { [opts.metric or "accuracy"] = score }, seconds = seconds, study = trials.study, family = t.family }
  return score
end

--- Every combination of the listed values: space = { depth = {3, 6}, eta = {0.1, 0.3} }.
function M.grid(opts)
  check(opts, "grid")
  local names = {}
  for k in pairs(opts.space) do names[#names + 1] = k end
  table.sort(names)
  local trials = {}
  local function walk(i, p)
    if i > #names then
      local copy = {}
      for k, v in pairs(p) do copy[k] = v end
      run_trial(opts, trials, copy)
      return
    end
    for _, v in ipairs(opts.space[names[i]]) do
      p[names[i]] = v
      walk(i + 1, p)
    end
  end
  walk(1, {})
  return finish(opts, trials)
end

--- trials random draws from the space (seeded).
function M.random(opts)
  check(opts, "random")
  local ds, draw, trials, seen = dims(opts.space), rng(opts.seed), {}, {}
  local budget = opts.trials or 20
  -- Duplicates are drawn again (a small discrete space may run out first).
  for _ = 1, 100 * budget do
    if #trials >= budget then break end
    local u = {}
    for i = 1, #ds do u[i] = draw() end
    local p = params_of(ds, u)
    if not seen[key_of(p)] then
      seen[key_of(p)] = true
      run_trial(opts, trials, p)
    end
  end
  return finish(opts, trials)
end

-- ---- Gaussian process ------------------------------------------------------------

-- Matern 5/2 kernel on the unit cube, length scale ell.
local function kernel(a, b, ell)
  local d2 = 0
  for i = 1, #a do d2 = d2 + (a[i] - b[i]) ^ 2 end
  local r = math.sqrt(5 * d2) / ell
  return (1 + r + r * r / 3) * math.exp(-r)
end

local function cholesky(A, n)
  local L = {}
  for i = 1, n do
    L[i] = {}
    for j = 1, i do
      local s = A[i][j]
      for k = 1, j - 1 do s = s - L[i][k] * L[j][k] end
      if i == j then
        if s <= 0 then return nil end
        L[i][i] = math.sqrt(s)
      else
        L[i][j] = s / L[j][j]
      end
    end
  end
  return L
end

local function solve(L, b, n)
  local y = {}
  for i = 1, n do
    local s = b[i]
    for k = 1, i - 1 do s = s - L[i][k] * y[k] end
    y[i] = s / L[i][i]
  end
  local x = {}
  for i = n, 1, -1 do
    local s = y[i]
    for k = i + 1, n do s = s - L[k][i] * x[k] end
    x[i] = s / L[i][i]
  end
  return x, y
end

local function gp_fit(X, y, ell, noise)
  local n = #X
  local mean, var = 0, 0
  for i = 1, n do mean = mean + y[i] end
  mean = mean / n
  for i = 1, n do var = var + (y[i] - mean) ^ 2 end
  local sd = math.sqrt(var / n)
  if sd == 0 then sd = 1 end
  local z = {}
  for i = 1, n do z[i] = (y[i] - mean) / sd end
  local K = {}
  for i = 1, n do
    K[i] = {}
    for j = 1, n do K[i][j] = kernel(X[i], X[j], ell) + (i == j and noise or 0) end
  end
  local L = cholesky(K, n)
  if not L then return nil end
  local alpha = solve(L, z, n)
  return { X = X, L = L, alpha = alpha, n = n, ell = ell, mean = mean, sd = sd, z = z }
end

-- Log marginal likelihood, to pick the length scale.
local function gp_lml(gp)
  local fit = 0
  for i = 1, gp.n do fit = fit + gp.z[i] * gp.alpha[i] end
  local logdet = 0
  for i = 1, gp.n do logdet = logdet + math.log(gp.L[i][i]) end
  return -0.5 * fit - logdet
end

local function gp_predict(gp, x)
  local k = {}
  for i = 1, gp.n do k[i] = kernel(x, gp.X[i], gp.ell) end
  local mu = 0
  for i = 1, gp.n do mu = mu + k[i] * gp.alpha[i] end
  local v = select(2, solve(gp.L, k, gp.n))
  local var = 1
  for i = 1, gp.n do var = var - v[i] * v[i] end
  return mu * gp.sd + gp.mean, math.sqrt(math.max(var, 1e-12)) * gp.sd
end

local function norm_pdf(z) return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) end

local function norm_cdf(z)
  -- Abramowitz-Stegun 7.1.26 on erf; absolute error below 1.5e-7.
  local t = 1 / (1 + 0.3275911 * math.abs(z) / math.sqrt(2))
  local y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t
    * math.exp(-z * z / 2)
  return z >= 0 and 0.5 * (1 + y) or 0.5 * (1 - y)
end
M._norm_cdf = norm_cdf

--- Expected improvement over best for a maximised objective.
local function expected_improvement(mu, sigma, best, xi)
  if sigma <= 0 then return 0 end
  local z = (mu - best - xi) / sigma
  return (mu - best - xi) * norm_cdf(z) + sigma * norm_pdf(z)
end
M._expected_improvement = expected_improvement

--- Bayesian optimisation: opts.initial points (params tables) and init
-- random trials (5), then each trial maximises
-- expected improvement of a GP fitted to the scores so far (the length
-- scale chosen by marginal likelihood), over 2000 seeded random candidates.
function M.bayes(opts)
  check(opts, "bayes")
  local ds, draw, trials = dims(opts.space), rng(opts.seed), {}
  local budget, init = opts.trials or 20, math.min(opts.init or 5, opts.trials or 20)
  local sign = metrics.higher_is_better(opts.metric or "accuracy") and 1 or -1
  local X, y, seen = {}, {}, {}
  local function try(u)
    local p = params_of(ds, u)
    local key = key_of(p)
    if seen[key] then return false end
    seen[key] = true
    X[#X + 1], y[#y + 1] = u, sign * run_trial(opts, trials, p)
    return true
  end
  -- Given starting points first (e.g. a family's defaults), then random ones.
  for _, p in ipairs(opts.initial or {}) do
    if #trials < budget then
      local u = {}
      for i, d in ipairs(ds) do u[i] = math.min(1, math.max(0, encode(d, p[d.name]))) end
      try(u)
    end
  end
  local attempts = 0
  while #trials < init and attempts < 100 * budget do
    attempts = attempts + 1
    local u = {}
    for i = 1, #ds do u[i] = draw() end
    try(u)
  end
  while #trials < budget and attempts < 100 * budget do
    local gp, best_lml
    for _, ell in ipairs { 0.1, 0.2, 0.4, 0.8, 1.6 } do
      local g = gp_fit(X, y, ell, 1e-4)
      if g then
        local lml = gp_lml(g)
        if not best_lml or lml > best_lml then gp, best_lml = g, lml end
      end
    end
    local best_y = -math.huge
    for _, v in ipairs(y) do best_y = math.max(best_y, v) end
    local pick, pick_ei = nil, -1
    for _ = 1, 2000 do
      local u = {}
      for i = 1, #ds do u[i] = draw() end
      local ei
      if gp then
        local mu, sigma = gp_predict(gp, u)
        ei = expected_improvement(mu, sigma, best_y, 0.01)
      else
        ei = draw()  -- no usable surrogate: fall back to random search
      end
      if ei > pick_ei and not seen[key_of(params_of(ds, u))] then pick, pick_ei = u, ei end
    end
    attempts = attempts + 1
    if not pick then break end
    try(pick)
  end
  return finish(opts, trials)
end

--- The leaderboard as a frame: rank, trial, score, seconds, then each param.
function M.leaderboard(result)
  local frame = require "tycho.core.frame"
  local rows = {}
  for i, t in ipairs(result.trials) do
    local r = { rank = t.rank, trial = t.trial, score = t.score, seconds = t.seconds }
    for k, v in pairs(t.params) do r[k] = v end
    rows[i] = r
  end
  return frame.from_rows(rows)
end

return M
