--- Experiments, feedback, monitoring and alerts inside `tycho serve`: the
-- built-in routes of DESIGN.md, the work each prediction-log flush does for
-- them, the alert timer, and their Prometheus gauges.
local experiments = require "tycho.experiments"
local feedback_check = require "tycho.monitor.feedback"
local hosted = require "tycho.serve.hosted"
local experiments_follow = require "tycho.serve.experiments_follow"
local cluster = require "tycho.experiments.cluster"
local json = require "tycho.util.json"
local monitor = require "tycho.monitor"
local timeutil = require "tycho.util.timeutil"
local uv = require "luv"

local M = {}

local function store() return assert(require("tycho.core.store").open()) end

-- The app's declared experiment, or one stored in the home by another app.
local function find(app, http, name)
  local e = app.experiments[name]
  if e then return e end
  local loaded, err, code = experiments.load(name)
  if not loaded then http.fail(err, code) end
  return loaded
end

-- Answers req with answer(ok, result) once write(tx) has committed. Serving,
-- that is the prediction log's next group commit, shared with this worker's
-- buffered predictions and every other outcome that came meanwhile, so an
-- acknowledged outcome is on disk; otherwise a transaction of its own.
local function write_then_answer(app, req, write, answer)
  if not app.commit_log then return answer(pcall(store().update, store(), write)) end
  local reply = req:defer()
  app.commit_log(write, function(ok, res) reply(answer, ok, res) end)
end

-- The answer to a feedback request once its writes are done.
local function feedback_answer(http, body, ok, res)
  if not ok then http.error(503, "store_unavailable", tostring(res)) end
  if type(body) == "table" and body.prediction_id ~= nil and res.results[1].status == "rejected" then
    local r = res.results[1]
    http.fail(r.reason, r.code)
  end
  return res
end

-- Why an outcome does not fit the model that made the prediction, or nil.
-- model nil (the prediction is not logged yet): it must fit one of the
-- hosted models. A model that is not hosted here is not checked.
local function outcome_check(app)
  return function(model, version, outcome)
    if model == nil then
      local first
      for _, h in pairs(app.hosted) do
        for _, slot in pairs(h.live) do
          local why = hosted.outcome_problem(slot.pipe, outcome)
          if not why then return nil end
          first = first or why
        end
      end
      return first
    end
    local pipe
    for _, h in pairs(app.hosted) do pipe = pipe or h:pipeline_of(model, version) end
    return pipe and hosted.outcome_problem(pipe, outcome)
  end
end

-- With a cluster, feedback is checked here and joined where every node's
-- predictions land (monitor/log_stream.lua): accepted once a replica holds
-- it, else 503 (the client sends it again; applying it twice counts once).
local function shared_feedback(app, http, body, items)
  local res = { accepted = 0, duplicate = 0, pending = 0, rejected = 0, results = {} }
  local ok_items = {}
  for i, it in ipairs(items) do
    local r = feedback_check.check_item(it, app.log_retain, app.check_outcome)
    res.results[i], res[r.status] = r, res[r.status] + 1
    if r.status == "accepted" then ok_items[#ok_items + 1] = it end
  end
  if #ok_items > 0 then
    local id, err = app.log_shipper:feedback(ok_items)
    if not id then http.error(503, "unavailable", tostring(err)) end
  end
  return feedback_answer(http, body, true, res)
end

local function feedback(app, http, req)
  local body = req:json()
  local items = body
  if type(body) == "table" and body.prediction_id ~= nil then items = { body } end
  if type(items) ~= "table" or #items == 0 then
    http.error(400, "bad_request", 'expected {"prediction_id": "...", "outcome": ...} or a list of them')
  end
  http.check_count(app, #items, "items", "feedback entries")
  if app.log_shipper then return shared_feedback(app, http, body, items) end
  local opts = { experiments = app.experiments, retain = app.log_retain, check = app.check_outcome }
  return write_then_answer(app, req, function(tx) return experiments.feedback_in(tx, items, opts) end,
    function(ok, res) return feedback_answer(http, body, ok, res) end)
end

-- The answer to an events request once its writes are done.
local function events_answer(http, ok, res)
  if not ok then http.error(503, "store_unavailable", tostring(res)) end
  if res.accepted == 0 then return 400, res end
  if #res.rejected == 0 then res.rejected = json.empty_array end
  return res
end

--- Adds the experiment, feedback and monitor routes to app.
function M.add(app, http)
  app.check_outcome = outcome_check(app)
  app:get("/v1/experiments", function()
    local list = experiments.list()
    for i, rec in ipairs(list) do
      list[i] = { name = rec.name, kind = rec.kind, status = rec.status, unit = rec.unit, metric = rec.metric,
                  variants = #rec.variants, declared = app.experiments[rec.name] ~= nil }
    end
    return { experiments = #list > 0 and list or json.empty_array }
  end)
  app:get("/v1/experiments/{name}", function(req)
    if app.flush_log then app.flush_log() end
    local e = find(app, http, req.params.name)
    if experiments.has_pending(store()) then
      store():update(function(tx) experiments.reconcile(tx, app.experiments, nil, app.check_outcome) end)
    end
    return e:results()
  end)
  app:get("/v1/experiments/{name}/assignment", function(req)
    local e = find(app, http, req.params.name)
    local unit = req.query.unit
    if not unit or unit == "" then http.error(400, "bad_request", "needs ?unit=ID") end
    local v, counted = e:assign(unit, req)
    local data = {}
    for k, x in pairs(v) do if k ~= "weight" and type(x) ~= "function" then data[k] = x end end
    return { experiment = e.name, variant = v.name, in_experiment = counted, data = data }
  end, { writes = true })  -- a new unit is recorded
  app:post("/v1/experiments/{name}/events", function(req)
    local e = find(app, http, req.params.name)
    local body = req:json()
    if type(body) ~= "table" or type(body.events) ~= "table" or #body.events == 0 then
      http.error(400, "bad_request", 'expected {"events": [{"unit": ID, "metric": NAME, "value": NUMBER}, ...]}')
    end
    http.check_count(app, #body.events, "items", "events")
    if e:status() == "stopped" then
      http.error(409, "experiment_stopped", "experiment " .. e.name .. " is stopped; its results are final")
    end
    if cluster.of(app.home or store()) then
      -- Shared: answered by the cluster, which holds every node's units.
      local res, err, code = e:record_events(body.events, app.home)
      if not res then http.fail(err, code) end
      return events_answer(http, true, res)
    end
    return write_then_answer(app, req, function(tx) return e:record_events_in(tx, body.events) end,
      function(ok, res) return events_answer(http, ok, res) end)
  end)
  app:post("/v1/experiments/{name}:stop", function(req)
    local e = find(app, http, req.params.name)
    local body = #req.body > 0 and req:json() or {}
    local rec, err, code = e:stop(type(body) == "table" and body.winner or nil)
    if not rec then http.fail(err, code) end
    return { name = e.name, status = rec.status, winner = rec.winner }
  end)
  app:post("/v1/feedback", function(req) return feedback(app, http, req) end)
  app:get("/v1/models/{name}/monitor", function(req)
    if app.flush_log then app.flush_log() end
    local ok, res = pcall(monitor.summary, req.params.name, { window = req.query.window or "1h",
                                                              max_records = app.limits.monitor_records })
    if not ok then http.error(400, "bad_request", tostring(res)) end
    return monitor.to_json(res)
  end)
end

--- Stores the app's experiment definitions (a stored status survives), in
-- st (the worker's home) or this process's home, and with a cluster
-- follows the experiments shared on it.
function M.start(app, st)
  st = st or store()
  for _, e in pairs(app.experiments) do e:save(st) end
  experiments_follow.start(app, st)  -- with a cluster, the other homes' changes and traffic
end

--- The work of each prediction-log flush: experiment exposures, and
-- feedback that arrived before its prediction was logged. Returns the hook
-- and has_work() for an otherwise idle log: buffered exposures, or (looked
-- up once a second) pending feedback.
function M.on_flush(app)
  local last_check = 0
  local function hook(tx)
    for _, e in pairs(app.experiments) do e:flush_in(tx) end
    experiments.reconcile(tx, app.experiments, nil, app.check_outcome)
  end
  local function has_work()
    for _, e in pairs(app.experiments) do
      if e:has_work() then return true end
    end
    local now = timeutil.now()
    if now - last_check < 1e6 then return false end
    last_check = now
    return experiments.has_pending(store())
  end
  return hook, has_work
end

-- One evaluation of an alert rule.
-- What an alert rule looks at: the live version's monitor summary, or a
-- feature view's data quality.
local function observed(app, rule)
  if rule.view then
    app.alert_fs = app.alert_fs or assert(require("tycho.features").open({ store = app.home }))
    return assert(app.alert_fs:quality(rule.view))
  end
  local h = app.hosted[rule.model]
  local version = h and h.live.main and h.live.main.version
  return monitor.current(monitor.summary(rule.model, { window = rule.window }), version)
end

local function check_alert(app, rule)
  local ok, err = pcall(function()
    local m = observed(app, rule)
    rule.last = m
    local firing = rule.when(m) and true or false
    if firing and not rule.firing then
      rule.fired = rule.fired + 1
      rule.action(m)
    end
    rule.firing = firing
  end)
  if not ok then
    rule.errors = rule.errors + 1
    io.stderr:write("tycho serve: alert ", rule.name, ": ", tostring(err), "\n")
  end
end

--- Checks the app's alert rules on their timers (first worker only).
function M.start_alerts(app)
  for _, rule in ipairs(app.alerts) do
    local t = uv.new_timer()
    local ms = math.max(1, math.floor(rule.every * 1000))
    t:start(ms, ms, function() check_alert(app, rule) end)
    t:unref()
  end
end

-- Monitor summaries for /metrics, recomputed at most every 15 s.
local cache = {}
local function cached_summary(name, max_records)
  local c = cache[name]
  local now = timeutil.now()
  if not c or now - c.at > 15e6 then
    local ok, s = pcall(monitor.summary, name, { window = "1h", max_records = max_records })
    c = { at = now, summary = ok and s or nil }
    cache[name] = c
  end
  return c.summary
end

local function gauge(line, name, help)
  line("# HELP " .. name .. " " .. help)
  line("# TYPE " .. name .. " gauge")
end

local function num(v) return type(v) == "number" and v == v end

--- Appends the monitoring, experiment and alert gauges to /metrics.
function M.prometheus(app, line, label)
  local names = {}
  for name in pairs(app.hosted) do names[#names + 1] = name end
  table.sort(names)
  local summaries = {}
  for _, name in ipairs(names) do summaries[name] = cached_summary(name, app.limits.monitor_records) end
  local function each_version(fn)
    for _, name in ipairs(names) do
      local s = summaries[name]
      for _, v in ipairs(s and s.versions or {}) do
        fn(string.format('model="%s",version="%s",role="%s"', label(name), label(v.version), label(v.role)), v)
      end
    end
  end
  gauge(line, "tycho_monitor_predictions", "Predictions logged in the last hour.")
  each_version(function(l, v) line(string.format("tycho_monitor_predictions{%s} %d", l, v.volume)) end)
  gauge(line, "tycho_monitor_errors", "Failed predictions in the last hour.")
  each_version(function(l, v) line(string.format("tycho_monitor_errors{%s} %d", l, v.errors)) end)
  for _, key in ipairs { "p50", "p99" } do
    local name = "tycho_monitor_latency_" .. key .. "_seconds"
    gauge(line, name, "Model latency " .. key .. " in the last hour.")
    each_version(function(l, v)
      local ms = v.latency_ms[key]
      if num(ms) then line(string.format("%s{%s} %.6g", name, l, ms / 1000)) end
    end)
  end
  gauge(line, "tycho_monitor_metric", "Online metrics from joined outcomes in the last hour.")
  each_version(function(l, v)
    for k, x in pairs(v.metrics) do if num(x) then line(string.format('tycho_monitor_metric{%s,metric="%s"} %.6g', l, k, x)) end end
  end)
  gauge(line, "tycho_drift_psi", "Population stability index of an input (or the output) against training.")
  gauge(line, "tycho_drift_ks", "Kolmogorov-Smirnov statistic of an input (or the output) against training.")
  each_version(function(l, v)
    local function emit(feature, d)
      if type(d) == "table" and num(d.psi) then
        line(string.format('tycho_drift_psi{%s,feature="%s"} %.6g', l, label(feature), d.psi))
        if num(d.ks) then line(string.format('tycho_drift_ks{%s,feature="%s"} %.6g', l, label(feature), d.ks)) end
      end
    end
    for f, d in pairs(v.drift.features) do emit(f, d) end
    emit("__output__", v.drift.output)
  end)
  gauge(line, "tycho_experiment_units", "Units assigned to each variant.")
  gauge(line, "tycho_experiment_mean", "Mean metric per unit of each variant.")
  gauge(line, "tycho_experiment_prob_beat_control", "Posterior probability that a variant beats the control.")
  local enames = {}
  for name in pairs(app.experiments) do enames[#enames + 1] = name end
  table.sort(enames)
  for _, name in ipairs(enames) do
    local ok, r = pcall(app.experiments[name].results, app.experiments[name])
    for _, v in ipairs(ok and r.variants or {}) do
      local l = string.format('experiment="%s",variant="%s"', label(name), label(v.name))
      line(string.format("tycho_experiment_units{%s} %d", l, v.units))
      line(string.format("tycho_experiment_mean{%s} %.6g", l, v.mean))
      if num(v.prob_beat_control) then
        line(string.format("tycho_experiment_prob_beat_control{%s} %.6g", l, v.prob_beat_control))
      end
    end
  end
  if app.log_shipper then app.log_shipper:prometheus(line) end
  gauge(line, "tycho_alert_firing", "1 while an alert rule's condition holds (first worker).")
  for _, rule in ipairs(app.alerts) do
    local subject = rule.view and string.format('view="%s"', label(rule.view))
      or string.format('model="%s"', label(rule.model))
    line(string.format('tycho_alert_firing{alert="%s",%s} %d', label(rule.name), subject, rule.firing and 1 or 0))
  end
end

return M
