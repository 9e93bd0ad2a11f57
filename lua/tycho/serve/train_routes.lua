--- Trainings started from the console (ml/train/): point-and-click
-- training on the feature store, each in its own child process.
--
--   GET  /v1/train:options       families with their hyperparameters (range, default),
--                                AutoML's budget, tasks, the test fraction
--   POST /v1/train               start one (token): {"name", "views": [...], "label": "VIEW:FEATURE",
--                                "family": "gbt"|"forest"|"logistic"|"linear"|"automl",
--                                "params": {...} | "budget": {"trials": N}|{"seconds": N},
--                                "families", "task", "test", "seed", "register"};
--                                202 {id, status, pid}; 400 a bad field, 404 an unknown
--                                view or feature, 503 busy (limits.trainings at once)
--   GET  /v1/train?limit=20      jobs, newest first
--   GET  /v1/train/{id}          one job: status, stage, progress, run, version,
--                                metrics, error and the tail of its output
--
-- The request is checked field by field (ml/train/spec.lua) and against the
-- feature store before anything starts; the child reads the checked spec
-- from its job record, never from generated source.
local json = require "tycho.util.json"
local spec_mod = require "tycho.ml.train.spec"
local jobs = require "tycho.ml.train.jobs"
local query = require "tycho.serve.query"

local M = {}

local function start(app, http, req)
  local body = req:json()
  local spec, err, code = spec_mod.check(body)
  if not spec then http.fail(err, code) end
  local plan, perr, pcode = spec_mod.resolve(http.feature_store(app), spec)
  if not plan then http.fail(perr, pcode) end
  local job, jerr, jcode = jobs.start(spec, { max = app.limits.trainings, store = app.home })
  if not job then http.fail(jerr, jcode) end
  return 202, job
end

--- Adds the routes to app (http: the router module, for its errors).
function M.add(app, http)
  app:get("/v1/train:options", function() return spec_mod.options() end)
  app:post("/v1/train", function(req) return start(app, http, req) end)
  app:get("/v1/train", function(req)
    local list, err, code = jobs.list { limit = query.integer(http, req.query, "limit"), store = app.home }
    if not list then http.fail(err, code) end
    return { jobs = #list > 0 and list or json.empty_array }
  end)
  app:get("/v1/train/{id}", function(req)
    local job, err, code = jobs.get(req.params.id, { store = app.home })
    if not job then http.fail(err, code) end
    return job
  end)
end

return M
