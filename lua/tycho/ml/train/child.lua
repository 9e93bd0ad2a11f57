--- The child process of a console training (ml/train/jobs.lua starts
-- `tycho run HOME/train/child.lua ID`, whose one line calls main): reads
-- the job's spec from its record and checks it again, builds a
-- point-in-time training set from the feature store (the label view's rows
-- are the spine), fits the family or runs AutoML, evaluates on a held-out
-- split, records a "train" run, registers the pipeline when asked, and
-- keeps the record's stage and progress current. What it prints is the
-- job's log.
local json = require "tycho.util.json"
local features = require "tycho.features"
local pipeline = require "tycho.ml.pipeline"
local models = require "tycho.ml.models"
local automl = require "tycho.ml.automl"
local tune = require "tycho.ml.tune"
local runs = require "tycho.registry.runs"
local registry = require "tycho.registry"
local hist = require "tycho.dag.history"
local spec_mod = require "tycho.ml.train.spec"
local jobs = require "tycho.ml.train.jobs"

local M = {}

local function say(fmt, ...)
  io.stdout:write(string.format(fmt, ...), "\n")
  io.stdout:flush()
end

local function check(v, err)
  if v == nil or v == false then error(tostring(err), 0) end
  return v
end

-- The training set: the label view's labelled rows as the spine, each
-- view's features as of each row's time.
local function training_set(fs, spec, plan)
  local lv, label = plan.label_view, select(2, spec_mod.label(spec))
  local rows = check(fs:export(lv.name))
  local spine = rows:select(lv.join_key, lv.timestamp, label):filter(function(r) return r[label] ~= nil end)
  say("spine: %d labelled rows of %s (of %d)", spine:nrows(), lv.name, rows:nrows())
  if spine:nrows() < 10 then error("only " .. spine:nrows() .. " rows of " .. lv.name .. " have a label", 0) end
  if #plan.left_out > 0 then say("left out (not numeric): %s", table.concat(plan.left_out, ", ")) end
  return check(fs:historical(spine, plan.refs, { timestamp = lv.timestamp }))
end

local function make_pipeline(spec, refs, model)
  return pipeline.new { name = spec.name, features = refs, steps = { pipeline.step.fill_missing { "median" } },
                        model = model }
end

local function fit_family(spec, plan, train, label)
  local opts = {}
  for k, v in pairs(spec.params) do opts[k] = v end
  if spec.task ~= "auto" then opts.objective = spec.task end
  say("training %s on %d rows", spec.family, train:nrows())
  local pipe = make_pipeline(spec, plan.refs, models[spec.family](opts))
  check(pipe:fit(train, { label = label, quiet = true }))
  return pipe
end

local function fit_automl(spec, plan, train, label, progress)
  local budget = spec.budget.trials or (spec.budget.seconds .. "s")
  say("automl: budget %s on %d rows", tostring(budget), train:nrows())
  local res = check(automl.run {
    data = train, label = label, budget = budget, families = spec.families, seed = spec.seed, name = spec.name,
    quiet = true, task = spec.task == "regression" and "regression" or "auto",
    pipeline = function(model) return make_pipeline(spec, plan.refs, model) end,
    on_trial = function(t, n, metric)
      say("trial %d (%s): %s %.6g", n, t.family or "?", metric, t.score)
      progress(t, n, metric)
    end,
  })
  say("automl: best %s (%s %.6g)", res.best.family, res.metric, res.best.score)
  return res.pipeline, res
end

-- Scalar metrics only (a confusion matrix stays in the registry's evaluation).
local function scalars(t)
  local out = {}
  for k, v in pairs(t or {}) do
    if type(v) == "number" or type(v) == "string" or type(v) == "boolean" then out[k] = v end
  end
  return out
end

-- The train run's params: what was asked, flat, so the Runs page can sort
-- and group by any of them.
local function run_params(spec, res)
  local p = { family = res and res.best.family or spec.family, views = table.concat(spec.views, ","),
              label = spec.label, test = spec.test, seed = spec.seed,
              task = spec.task }
  for k, v in pairs(spec.params or {}) do p[k] = v end
  if spec.budget then p.budget_trials, p.budget_seconds = spec.budget.trials, spec.budget.seconds end
  return p
end

local function train(id, spec, started)
  local function stage(name, extra)
    local patch = { stage = name }
    for k, v in pairs(extra or {}) do patch[k] = v end
    jobs.update(id, patch)
  end
  local fs = check(features.open())
  local plan = check(spec_mod.resolve(fs, spec))
  local data = training_set(fs, spec, plan)
  -- The spine's label column keeps its name (a feature that clashes with it is renamed VIEW__NAME).
  local label = select(2, spec_mod.label(spec))
  local tr, te = data:split { test = spec.test, seed = spec.seed }
  stage("training", { progress = { rows = data:nrows(), train = tr:nrows(), test = te:nrows() } })
  local pipe, res
  if spec.family == "automl" then
    local best
    pipe, res = fit_automl(spec, plan, tr, label, function(t, n, metric)
      if not best or tune.better(metric, t.score, best) then best = t.score end
      stage("training", { progress = { rows = data:nrows(), trials = n, budget = spec.budget.trials, metric = metric,
                                       family = t.family, score = t.score, best = best } })
    end)
  else
    pipe = fit_family(spec, plan, tr, label)
  end
  stage("evaluating")
  local metrics = scalars(pipe:evaluate(te))
  say("holdout (%d rows): %s", te:nrows(), json.encode(metrics))
  local version
  if spec.register then
    stage("registering")
    local rerr
    version, rerr = check(registry.open()):register(spec.name, pipe, { metrics = metrics, data = data:fingerprint(),
      description = "trained in the console (job " .. id .. ")" })
    check(version, rerr)
    say("registered %s %s", spec.name, version)
  end
  local run_id = runs.record { kind = "train", model = spec.name, params = run_params(spec, res), metrics = metrics,
    seconds = hist.now() - started, data = data:fingerprint(), job = id, tuning = res and res.study, version = version }
  say("recorded run %s", tostring(run_id))
  return { run = run_id, version = version, metrics = metrics, study = res and res.study }
end

--- Runs job id (the child's entry). Raises, after marking the job failed,
-- when the training fails: the process then exits with 1.
function M.main(id)
  local job = check(jobs.get(id))
  if job.status ~= "queued" then error("job " .. id .. " is " .. tostring(job.status) .. ", not queued", 0) end
  local spec = check(spec_mod.check(job.spec))  -- the record is input too
  local pid, pstart = hist.me()
  local started = hist.now()
  jobs.update(id, { status = "running", stage = "loading features", pid = pid, pstart = pstart, started = started })
  say("job %s: %s of %s on %s", id, spec.family, spec.label, table.concat(spec.views, ", "))
  local ok, res = xpcall(train, debug.traceback, id, spec, started)
  if not ok then
    local msg = tostring(res):match("^([^\n]*)")
    io.stderr:write(tostring(res), "\n")
    jobs.update(id, { status = "failed", error = msg, finished = hist.now() })
    error(msg, 0)
  end
  jobs.update(id, { status = "succeeded", stage = "done", finished = hist.now(), run = res.run, version = res.version,
                    metrics = res.metrics, study = res.study })
  say("done in %.2f s", hist.now() - started)
end

return M
