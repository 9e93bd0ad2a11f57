--- DAG runs over HTTP, for the console's DAGs page (what `tycho dag status`
-- and `tycho dag list` show), and a trigger:
--
--   GET  /v1/dags                          DAGs with runs in the home
--   GET  /v1/dags/{name}                   one DAG: its record, tasks in run order, their edges
--   GET  /v1/dags/{name}/runs?limit=25&offset=0
--                                          a page of runs, newest first, each with
--                                          its tasks' state, attempts and timings (the grid)
--   GET  /v1/dags/{name}/runs/{run}        one run with every task's attempts and log tail
--   POST /v1/dags/{name}/runs              trigger a run: {"date": "YYYY-MM-DD"} (optional);
--                                          needs the token; 202 with the runner's pid
--   POST /v1/dags/{name}/backfill          {"from", "to": "YYYY-MM-DD", "rerun", "keep_going"}:
--                                          a run for every slot of the schedule in the
--                                          range, in order, by one runner (needs the token;
--                                          at most limits.backfill_runs, else 413); 202 with
--                                          the pid and the dates queued
--
-- Reads go through tycho.dag.history's store layout (dag_runs); the
-- trigger starts `tycho dag run FILE --rerun` as a detached child, which
-- takes the DAG's lock like any other runner.
local uv = require "luv"
local json = require "tycho.util.json"
local hist = require "tycho.dag.history"
local internal = require "tycho.internal"
local define = require "tycho.dag.define"
local query = require "tycho.serve.query"

local M = {}
local DB, K = hist.DB, hist.keys
local MAX_PAGE = 200

local function store(app, http)
  if app.home then return app.home end
  local st, err = require("tycho.core.store").open()
  if not st then http.error(503, "store_unavailable", err) end
  return st
end

local function list_or_empty(t) return #t > 0 and t or json.empty_array end

-- A run as the page shows it (a dead runner's "running" run: interrupted).
local function run_view(run)
  if run.status == "running" and not hist.alive(run.pid, run.pstart) then
    run.status, run.reason = "interrupted", "its runner (pid " .. tostring(run.pid) .. ") is gone"
  end
  run.pid, run.pstart = nil, nil
  return run
end

-- A task for the grid and the Gantt: state and timings, no log.
local function task_brief(t)
  local attempts = {}
  for i, h in ipairs(t.history or {}) do
    attempts[i] = { attempt = h.attempt, state = h.state, started = h.started, duration = h.duration }
  end
  return { task = t.task, state = t.state, attempts = t.attempts or 0, started = t.started,
           duration = t.duration, carried = t.carried, history = list_or_empty(attempts) }
end

local function tasks_of(tx, name, run_id, full)
  local by_name = {}
  for _, v in tx:scan(DB, { prefix = K.tasks(name, run_id) }) do
    local t = json.decode(v)
    if t then by_name[t.task] = full and t or task_brief(t) end
  end
  return by_name
end

local function dag_record(http, tx, name)
  local rec = tx:get_json(DB, K.dag(name))
  if not rec then http.error(404, "not_found", "no DAG named '" .. tostring(name) .. "' has runs in this home") end
  return rec
end

-- Tasks and their edges from the DAG's file (nil when it no longer loads).
local function graph_of(file)
  if type(file) ~= "string" then return nil end
  local ok, dag = pcall(define.load, file)
  if not ok or type(dag) ~= "table" then return nil end
  local edges = {}
  for _, t in ipairs(dag.order) do
    for _, up in ipairs(dag.tasks[t].after or {}) do edges[#edges + 1] = { from = up, to = t } end
  end
  return { order = dag.order, edges = list_or_empty(edges) }
end

local function runs_page(app, http, req)
  local name = req.params.name
  local limit = query.integer(http, req.query, "limit", 25)
  local offset = query.integer(http, req.query, "offset", 0)
  if limit < 1 or limit > MAX_PAGE then http.error(400, "bad_request", "limit must be an integer from 1 to " .. MAX_PAGE) end
  if offset < 0 then http.error(400, "bad_request", "offset must be a non-negative integer") end
  return store(app, http):view(function(tx)
    local rec = dag_record(http, tx, name)
    local runs, total = {}, 0
    for _, v in tx:scan(DB, { prefix = K.runs(name), reverse = true }) do
      total = total + 1
      if total > offset and #runs < limit then runs[#runs + 1] = v end
    end
    local tasks, seen = {}, {}
    for i, raw in ipairs(runs) do
      local run = run_view(json.decode(raw))
      local by_name = tasks_of(tx, name, run.run_id, false)
      run.tasks = {}
      for _, t in ipairs(run.order or {}) do run.tasks[#run.tasks + 1] = by_name[t] or { task = t, state = "none" } end
      for _, t in ipairs(run.order or {}) do
        if not seen[t] then
          seen[t] = true
          tasks[#tasks + 1] = t
        end
      end
      run.tasks = list_or_empty(run.tasks)
      run.order = nil
      runs[i] = run
    end
    return { name = name, total = total, offset = offset, limit = limit,
             next_offset = offset + limit < total and offset + limit or nil,
             tasks = list_or_empty(tasks), runs = list_or_empty(runs), last_status = rec.last_status }
  end)
end

local function one_run(app, http, req)
  local name, run_id = req.params.name, req.params.run
  return store(app, http):view(function(tx)
    local run = tx:get_json(DB, K.run(name, run_id))
    if not run then http.error(404, "not_found", "DAG " .. tostring(name) .. " has no run '" .. tostring(run_id) .. "'") end
    run = run_view(run)
    local by_name = tasks_of(tx, name, run_id, true)
    run.tasks = {}
    for _, t in ipairs(run.order or {}) do
      local rec = by_name[t] or { task = t, state = "none" }
      rec.pid, rec.output = nil, nil
      rec.log = list_or_empty(rec.log or {})
      rec.history = list_or_empty(rec.history or {})
      run.tasks[#run.tasks + 1] = rec
    end
    run.tasks = list_or_empty(run.tasks)
    run.order = nil
    return run
  end)
end

local DATE = "^%d%d%d%d%-%d%d%-%d%d$"

-- The DAG's record when a runner may start now: 404 unknown, 409 while
-- one runs or when its file is gone.
local function runnable(http, st, name)
  local rec, _, lock = hist.state(st, name)
  if not rec then http.error(404, "not_found", "no DAG named '" .. tostring(name) .. "' has runs in this home") end
  if lock and hist.alive(lock.pid, lock.pstart) then
    http.error(409, "busy", "DAG " .. name .. " is running (pid " .. tostring(lock.pid) .. ")")
  end
  local f = type(rec.file) == "string" and io.open(rec.file)
  if not f then http.error(409, "conflict", "the file of DAG " .. name .. " is gone: " .. tostring(rec.file)) end
  f:close()
  return rec
end

-- Starts `tycho dag run FILE ...` detached: it takes the DAG's lock like
-- any other runner. Its pid.
local function start_runner(http, st, file, args)
  local argv = { "--home", st.path or internal.home, "dag", "run", file, "--quiet" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local handle, pid
  handle, pid = uv.spawn(internal.exe, { args = argv, detached = true }, function()
    if handle and not handle:is_closing() then handle:close() end
  end)
  if not handle then http.error(500, "internal", "cannot start the runner: " .. tostring(pid)) end
  handle:unref()
  return pid
end

local function trigger(app, http, req)
  local name = req.params.name
  local body = req.body ~= "" and req:json() or {}
  if type(body) ~= "table" then http.error(400, "bad_request", 'expected {} or {"date": "YYYY-MM-DD"}') end
  if body.date ~= nil and (type(body.date) ~= "string" or not body.date:match(DATE)) then
    http.error(400, "bad_request", "date is YYYY-MM-DD")
  end
  local st = store(app, http)
  local rec = runnable(http, st, name)
  local pid = start_runner(http, st, rec.file, body.date and { "--rerun", "--date", body.date } or { "--rerun" })
  return 202, { name = name, started = true, pid = pid, date = body.date }
end

local BACKFILL_FIELDS = { from = true, to = true, rerun = true, keep_going = true }

local function backfill_body(http, req)
  local body = req:json()
  if type(body) ~= "table" then http.error(400, "bad_request", 'expected {"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}') end
  for k in pairs(body) do
    if not BACKFILL_FIELDS[k] then http.error(400, "bad_request", "a backfill has no field '" .. tostring(k) .. "'") end
  end
  for _, k in ipairs { "from", "to" } do
    if type(body[k]) ~= "string" or not body[k]:match(DATE) then http.error(400, "bad_request", k .. " is YYYY-MM-DD") end
  end
  for _, k in ipairs { "rerun", "keep_going" } do
    if body[k] ~= nil and type(body[k]) ~= "boolean" then http.error(400, "bad_request", k .. " is true or false") end
  end
  return body
end

-- The dates a backfill queues, in order; each says whether its latest run
-- succeeded (the runner skips those unless rerun).
local function queued_dates(st, name, slots)
  local out = {}
  for i, slot in ipairs(slots) do
    local _, latest = hist.state(st, name, slot.date)
    out[i] = { date = slot.date, succeeded = latest and latest.status == "success" or false }
  end
  return out
end

-- Queues the DAG's runs for every slot of its schedule from..to (at most
-- limits.backfill_runs), run in order by one runner, as `tycho dag run
-- FILE --from --to` does.
local function backfill(app, http, req)
  local name = req.params.name
  local body = backfill_body(http, req)
  local st = store(app, http)
  local rec = runnable(http, st, name)
  local ok, dag, lerr = pcall(define.load, rec.file)
  if not ok or type(dag) ~= "table" then
    http.error(409, "conflict", "the file of DAG " .. name .. " no longer loads: " .. tostring(ok and lerr or dag))
  end
  local slots, err, code = hist.slots(dag, { from = body.from, to = body.to, max = app.limits.backfill_runs })
  if not slots then http.fail(err, code) end
  local args = { "--from", body.from, "--to", body.to }
  if body.rerun then args[#args + 1] = "--rerun" end
  if body.keep_going then args[#args + 1] = "--keep-going" end
  local dates = queued_dates(st, name, slots)
  local pid = start_runner(http, st, rec.file, args)
  return 202, { name = name, started = true, pid = pid, from = body.from, to = body.to, runs = #dates, dates = dates }
end

--- Adds the routes to app (http: the router module, for its errors).
function M.add(app, http)
  app:get("/v1/dags", function()
    local list, err = hist.list({ store = store(app, http) })
    if not list then http.error(503, "store_unavailable", err) end
    return { dags = list_or_empty(list) }
  end)
  app:get("/v1/dags/{name}", function(req)
    local rec = store(app, http):view(function(tx) return dag_record(http, tx, req.params.name) end)
    local g = graph_of(rec.file)
    rec.tasks = g and g.order or json.empty_array
    rec.edges = g and g.edges or json.empty_array
    return rec
  end)
  app:get("/v1/dags/{name}/runs", function(req) return runs_page(app, http, req) end)
  app:get("/v1/dags/{name}/runs/{run}", function(req) return one_run(app, http, req) end)
  app:post("/v1/dags/{name}/runs", function(req) return trigger(app, http, req) end)
  app:post("/v1/dags/{name}/backfill", function(req) return backfill(app, http, req) end)
end

return M
