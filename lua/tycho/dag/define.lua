--- DAGs: tasks with dependencies, retries, timeouts and a cron schedule.
--
--   -- dags/retrain.lua
--   local tycho = require "tycho"
--   return tycho.dag {
--     name = "retrain", schedule = "0 3 * * *", catchup = false, start = "2026-01-01",
--     tasks = {
--       extract = { run = function(ctx) ctx.log("rows for", ctx.date) return { rows = 42 } end },
--       train = { after = { "extract" }, retries = 2, retry_delay = "30s", timeout = "20m",
--                 run = function(ctx) return { auc = fit(ctx.outputs.extract.rows) } end },
--     },
--   }
--
-- DAG fields: name (default: the file's name), schedule (tycho.cron: five
-- fields in UTC, @daily-style shortcuts, "@every 2s"), catchup (false: after
-- downtime the scheduler runs only the latest missed slot; true: every
-- missed slot in order), start (no scheduled slot before it), max_active
-- (tasks run at once, default 2), kill_grace (SIGTERM to SIGKILL, default
-- "5s"), description.
-- Task fields: run(ctx), after (names), retries (default 0), retry_delay
-- (default "10s"; doubled after each failed attempt: delay * backoff^(n-1),
-- backoff default 2, at most max_retry_delay, default "1h"), timeout (none
-- by default), description.
--
-- Each attempt of a task runs in a process of its own and gets ctx: date
-- (the logical date, see Dag:label), ts (epoch seconds of the slot),
-- run_id, attempt (1, 2, ...), dag and task (names), home, dir (the DAG
-- file's directory), outputs (what the task's upstream tasks returned, by
-- name), log(...) (a line for the task's log; print() output is kept too)
-- and skip(why) (ends the task as skipped, and its dependents with it).
-- What run returns must be JSON (at most 256 KiB): it becomes the task's
-- output; an error, a crash or a timeout fails the attempt.
--
-- The file is checked when it loads: unknown fields, unknown dependencies,
-- cycles ("cycle: a -> b -> a"), bad schedules and durations are refused.
-- It loads in the runner, in every task process and in the serving worker
-- that schedules it: keep its top level cheap, the work goes in tasks.
-- This module defines and loads DAGs; the facade tycho.dag (dag/init.lua)
-- adds running (dag/run.lua), history and the lock (dag/history.lua), the
-- scheduler of `tycho serve` (dag/sched.lua) and the command line
-- (`tycho dag run|status|list`, dag/cli.lua).
local cron = require "tycho.dag.cron"
local errors = require "tycho.util.errors"

local M = {}

local Dag = {}
Dag.__index = Dag

local DAG_FIELDS = { name = true, schedule = true, catchup = true, start = true, tasks = true, max_active = true,
                     kill_grace = true, description = true }
local TASK_FIELDS = { run = true, after = true, retries = true, retry_delay = true, backoff = true,
                      max_retry_delay = true, timeout = true, description = true }

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out, function(a, b) return tostring(a) < tostring(b) end)
  return out
end

local function duration_field(where, field, v, default)
  if v == nil then v = default end
  if v == nil then return nil end
  local secs, err = cron.duration(v)
  if not secs then error(where .. ": " .. field .. ": " .. err, 0) end
  return secs
end

local function check_task(dagname, name, def)
  local where = "dag " .. dagname .. ": task " .. tostring(name)
  if name == nil then error("tycho.dag: the DAG needs a name (name = \"...\")", 0) end
  if type(name) ~= "string" or not name:match("^[%w_][%w_%-%.]*$") then
    error("dag " .. dagname .. ": task name '" .. tostring(name) .. "' must be letters, digits, _ - .", 0)
  end
  if type(def) ~= "table" then error(where .. ": expected a table with run = function(ctx)", 0) end
  for k in pairs(def) do
    if not TASK_FIELDS[k] then
      error(where .. ": unknown field '" .. tostring(k) .. "' (" .. table.concat(sorted_keys(TASK_FIELDS), ", ") .. ")", 0)
    end
  end
  if type(def.run) ~= "function" then error(where .. ": run must be a function(ctx)", 0) end
  local after = def.after or {}
  if type(after) == "string" then after = { after } end
  if type(after) ~= "table" then error(where .. ": after must be a list of task names", 0) end
  local retries = def.retries or 0
  if type(retries) ~= "number" or retries < 0 or retries % 1 ~= 0 then
    error(where .. ": retries must be a whole number >= 0", 0)
  end
  local backoff = def.backoff or 2
  if type(backoff) ~= "number" or backoff < 1 then error(where .. ": backoff must be a number >= 1", 0) end
  local timeout = duration_field(where, "timeout", def.timeout)
  if timeout and timeout <= 0 then error(where .. ": timeout must be positive", 0) end
  return {
    name = name, run = def.run, after = { unpack(after) }, retries = retries, backoff = backoff,
    retry_delay = duration_field(where, "retry_delay", def.retry_delay, "10s"),
    max_retry_delay = duration_field(where, "max_retry_delay", def.max_retry_delay, "1h"),
    timeout = timeout, description = def.description,
  }
end

-- Refuses unknown dependencies and cycles; returns the tasks in an order
-- where every task comes after its dependencies (ties by name).
local function check_graph(dagname, tasks)
  local names = sorted_keys(tasks)
  for _, name in ipairs(names) do
    for _, dep in ipairs(tasks[name].after) do
      if not tasks[dep] then
        error(string.format("dag %s: task %s: unknown dependency '%s' (tasks: %s)", dagname, name, tostring(dep),
          table.concat(names, ", ")), 0)
      end
    end
  end
  local color, stack = {}, {}
  local function visit(name)
    color[name] = "grey"
    stack[#stack + 1] = name
    for _, dep in ipairs(tasks[name].after) do
      if color[dep] == "grey" then
        local cycle, from = {}, nil
        for i, n in ipairs(stack) do if n == dep then from = i end end
        -- The stack runs from dependents to dependencies: print it the
        -- way work flows, dependency first.
        for i = #stack, from, -1 do cycle[#cycle + 1] = stack[i] end
        cycle[#cycle + 1] = name
        error("dag " .. dagname .. ": cycle: " .. table.concat(cycle, " -> "), 0)
      end
      if not color[dep] then visit(dep) end
    end
    stack[#stack] = nil
    color[name] = "black"
  end
  for _, name in ipairs(names) do if not color[name] then visit(name) end end
  local order, done = {}, {}
  while #order < #names do
    for _, name in ipairs(names) do
      if not done[name] then
        local ready = true
        for _, dep in ipairs(tasks[name].after) do if not done[dep] then ready = false end end
        if ready then
          done[name] = true
          order[#order + 1] = name
        end
      end
    end
  end
  return order
end

local function build(def, source)
  if type(def) ~= "table" then error("tycho.dag: expected a table { name, schedule, tasks }", 0) end
  local name = def.name
  if name == nil and source then name = source:match("([^/]+)%.lua$") end
  if type(name) ~= "string" or not name:match("^[%w_][%w_%-%.]*$") then
    error("tycho.dag: name '" .. tostring(name) .. "' must be letters, digits, _ - .", 0)
  end
  for k in pairs(def) do
    if not DAG_FIELDS[k] then
      error("dag " .. name .. ": unknown field '" .. tostring(k) .. "' (" .. table.concat(sorted_keys(DAG_FIELDS), ", ")
        .. ")", 0)
    end
  end
  local dag = setmetatable({ name = name, description = def.description, catchup = def.catchup == true,
                             tasks = {} }, Dag)
  if def.schedule ~= nil then
    local s, err = cron.parse(def.schedule)
    if not s then error("dag " .. name .. ": schedule: " .. err, 0) end
    dag.schedule, dag.schedule_text = s, s.text
  end
  if def.start ~= nil then
    local us, err = require("tycho.util.timeutil").parse(def.start)
    if not us then error("dag " .. name .. ": start: " .. err, 0) end
    dag.start = us / 1e6
  end
  local max_active = def.max_active or 2
  if type(max_active) ~= "number" or max_active < 1 or max_active % 1 ~= 0 then
    error("dag " .. name .. ": max_active must be a whole number >= 1", 0)
  end
  dag.max_active = max_active
  dag.kill_grace = duration_field("dag " .. name, "kill_grace", def.kill_grace, "5s")
  if type(def.tasks) ~= "table" or next(def.tasks) == nil then
    error("dag " .. name .. ": tasks must be a table of named tasks", 0)
  end
  for tname, tdef in pairs(def.tasks) do dag.tasks[tname] = check_task(name, tname, tdef) end
  dag.order = check_graph(name, dag.tasks)
  return dag
end

-- The file M.load is running: a DAG without a name is named after it.
local loading

--- Builds and checks a DAG (what a DAG file returns, also as tycho.dag{...});
-- raises on a bad one.
function M.new(def)
  local ok, dag = pcall(build, def, loading)
  if not ok then error(dag, 2) end
  return dag
end

--- Whether v is a DAG (built by tycho.dag{...}, dag.new or dag.load).
function M.is_dag(v) return getmetatable(v) == Dag end

local function absolute(path)
  local real = require("luv").fs_realpath(path)
  if real then return real end
  if path:sub(1, 1) == "/" then return path end
  return require("luv").cwd() .. "/" .. path
end

--- Loads a DAG file. Returns the DAG (with .file, absolute) or nil, message,
-- code (not_found: no such file; invalid: it does not load or build a DAG).
function M.load(path)
  if type(path) ~= "string" then error("dag.load: expected a file path", 2) end
  local file = absolute(path)
  local chunk, err = loadfile(file)
  if not chunk then return errors.fail(require("luv").fs_stat(file) and "invalid" or "not_found", err) end
  loading = file
  local ok, dag = pcall(chunk)
  loading = nil
  if not ok then
    -- `return tycho.dag{...}` is a tail call: the file's line is gone from
    -- the error, so the message names the file.
    local msg = tostring(dag)
    if msg:sub(1, #file) ~= file then msg = file .. ": " .. msg end
    return errors.fail("invalid", msg)
  end
  if not M.is_dag(dag) then
    return errors.fail("invalid",
      path .. " must return a DAG (return tycho.dag { name = ..., tasks = { ... } }), got " .. type(dag))
  end
  dag.file = file
  dag.dir = file:match("^(.*)/[^/]*$") or "."
  return dag
end

--- The logical date of slot ts: "YYYY-MM-DD" for schedules that fire at
-- most once a day (and unscheduled DAGs), else an ISO-8601 UTC timestamp.
function Dag:label(ts)
  return cron.label(ts, not self.schedule or self.schedule:daily())
end

--- Tasks that task name depends on, directly or not (a set).
function Dag:ancestors(name)
  local out = {}
  local function walk(n)
    for _, dep in ipairs(self.tasks[n].after) do
      if not out[dep] then
        out[dep] = true
        walk(dep)
      end
    end
  end
  walk(name)
  return out
end

--- Tasks that depend on task name, directly or not (a set).
function Dag:descendants(name)
  local out, changed = {}, true
  while changed do
    changed = false
    for n, t in pairs(self.tasks) do
      if not out[n] then
        for _, dep in ipairs(t.after) do
          if dep == name or out[dep] then
            out[n], changed = true, true
            break
          end
        end
      end
    end
  end
  return out
end

function Dag:__tostring() return "tycho.dag(" .. self.name .. ")" end

return setmetatable(M, { __call = function(_, def)
  local ok, dag = pcall(build, def, loading)
  if not ok then error(dag, 2) end
  return dag
end })
