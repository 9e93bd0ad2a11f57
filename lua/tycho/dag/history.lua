--- DAG run history in the home, the one-runner lock, and the slots a run
-- covers; tycho.dagrun runs what this module records.
--
-- History lives in the home's `dag_runs` database (keys by tycho.keys):
--   dag · NAME                 the DAG's file, schedule, latest slot and run
--   lock · NAME                the runner holding the DAG: pid, run, since
--   date · NAME · DATE         runs of one logical date: the latest, count
--   run · NAME · RUN           status (running, success, failed,
--                              interrupted), reason, trigger, start and end
--   task · NAME · RUN · TASK   state (queued, running, retrying, success,
--                              failed, timed_out, skipped, upstream_failed,
--                              interrupted), attempts with their timings and
--                              errors, the last 50 log lines, error, output
--   result · NAME · RUN · TASK what the task's process reports back
-- The first run of a logical date has that date as its id; later runs of
-- the same date are DATE#2, DATE#3...
local uv = require "luv"
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local timeutil = require "tycho.util.timeutil"
local errors = require "tycho.util.errors"

local M = {}
local DB = "dag_runs"
local LOG_LINES, LINE_MAX = 50, 1000
local OUTPUT_LIMIT = 256 * 1024
M.DB = DB

local K = {}
function K.dag(name) return keys.pack("s s", "dag", name) end
function K.dags() return keys.pack("s", "dag") end
function K.lock(name) return keys.pack("s s", "lock", name) end
function K.date(name, date) return keys.pack("s s s", "date", name, date) end
function K.run(name, id) return keys.pack("s s s", "run", name, id) end
function K.runs(name) return keys.pack("s s", "run", name) end
function K.task(name, id, task) return keys.pack("s s s s", "task", name, id, task) end
function K.tasks(name, id) return keys.pack("s s s", "task", name, id) end
function K.result(name, id, task) return keys.pack("s s s s", "result", name, id, task) end
M.keys = K

local function now() return timeutil.now() / 1e6 end
M.now = now

local TERMINAL = { success = true, failed = true, timed_out = true, skipped = true, upstream_failed = true }
local FAILED = { failed = true, timed_out = true, upstream_failed = true }

-- ---- processes ---------------------------------------------------------------------

-- When process pid started (clock ticks since boot, /proc/PID/stat field
-- 22) and its state letter; nil without /proc.
local function proc_stat(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local text = f:read("*a") or ""
  f:close()
  -- The command name (field 2) may hold spaces and parentheses: fields
  -- are counted from the last ')'.
  local rest = text:match("^.*%)%s+(.*)$") or ""
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  return tonumber(fields[20]), fields[1]
end

--- This process's identity for locks and runs: pid and start time, so a
-- recycled pid is not taken for a live runner.
function M.me()
  local pid = uv.os_getpid()
  local started = proc_stat(pid)
  return pid, started
end

--- True when process pid lives (not a zombie) and, when pstart is given,
-- is the process that started then (not a recycled pid).
function M.alive(pid, pstart)
  if type(pid) ~= "number" or pid <= 0 then return false end
  local ok, _, code = uv.kill(pid, 0)
  if not ok and code ~= "EPERM" then return false end
  local started, state = proc_stat(pid)
  if state == "Z" or state == "X" then return false end
  if pstart and started and started ~= pstart then return false end
  return true
end

local function kill_group(pid, sig)
  if type(pid) == "number" and pid > 0 then uv.kill(-pid, sig) end
end

-- ---- slots ---------------------------------------------------------------------------

local function parse_time(text, what)
  local us, err, code = timeutil.parse(text)
  if not us then return nil, what .. ": " .. err, code end
  return us / 1e6
end

local function plain_date(text) return type(text) == "string" and text:match("^%s*%d%d%d%d%-%d%d%-%d%d%s*$") end

--- The slots {ts, date} a run covers. opts: date (one logical date; a
-- plain date of a daily schedule means that day's slot), from and to (every
-- scheduled slot in [from, to], a plain `to` meaning its whole day; at
-- most opts.max, default 10000), or nothing (the latest due slot; today
-- for an unscheduled DAG). nil, message, code on a bad date or range.
function M.slots(dag, opts)
  opts = opts or {}
  local s = dag.schedule
  if opts.from or opts.to then
    if not (opts.from and opts.to) then return errors.fail("invalid", "a backfill needs both --from and --to") end
    if not s then return errors.fail("invalid", "dag " .. dag.name .. " has no schedule to backfill") end
    local from, err, code = parse_time(opts.from, "--from")
    if not from then return nil, err, code end
    local to, err2, code2 = parse_time(opts.to, "--to")
    if not to then return nil, err2, code2 end
    if plain_date(opts.to) then to = to + 86399 end
    if to < from then return errors.fail("invalid", "--to is before --from") end
    local out, t, max = {}, s:next(from - 1), opts.max or 10000
    while t and t <= to do
      if #out >= max then
        return errors.fail("too_large", string.format("more than %d slots between %s and %s", max, opts.from, opts.to))
      end
      out[#out + 1] = { ts = t, date = dag:label(t) }
      t = s:next(t)
    end
    if #out == 0 then
      return errors.fail("not_found", "no slot of '" .. dag.schedule_text .. "' between " .. opts.from .. " and " .. opts.to)
    end
    return out
  end
  if opts.date then
    local t, err, code = parse_time(opts.date, "--date")
    if not t then return nil, err, code end
    if s and plain_date(opts.date) and s:daily() then
      local slot = s:next(t - 1)
      if slot and slot < t + 86400 then t = slot end
    end
    return { { ts = t, date = dag:label(t) } }
  end
  local t = opts.now or now()
  if not s then
    t = math.floor(t / 86400) * 86400
    return { { ts = t, date = dag:label(t) } }
  end
  local latest = s:prev(t)
  if not latest or (dag.start and latest < dag.start) then
    return errors.fail("unavailable", "no slot of dag " .. dag.name .. " is due yet")
  end
  return { { ts = latest, date = dag:label(latest) } }
end

-- ---- history -------------------------------------------------------------------------

-- The store, or nil, message, "unavailable" (store.open's third value is
-- the core's error name, not a tycho.util.errors code).
local function open_store(opts)
  if opts and opts.store then return opts.store end
  local st, err = require("tycho.core.store").open(opts and opts.home)
  if not st then return errors.fail("unavailable", err) end
  return st
end

--- Runs of a DAG (name or DAG), newest logical date first, each with its
-- tasks in run order: { {run_id, date, status, reason, ..., tasks = {...}} }.
-- opts: limit (default 10), home.
function M.history(dag, opts)
  opts = opts or {}
  local name = type(dag) == "table" and dag.name or dag
  local st, err, code = open_store(opts)
  if not st then return nil, err, code end
  return st:view(function(tx)
    local runs = {}
    for _, v in tx:scan(DB, { prefix = K.runs(name), reverse = true, limit = opts.limit or 10 }) do
      local run = json.decode(v)
      if run.status == "running" and not M.alive(run.pid, run.pstart) then
        run.status = "interrupted"
        run.reason = string.format("runner pid %s is gone; the next run of %s resumes it", tostring(run.pid), run.date)
      end
      local by_name = {}
      for _, tv in tx:scan(DB, { prefix = K.tasks(name, run.run_id) }) do
        local t = json.decode(tv)
        by_name[t.task] = t
      end
      run.tasks = {}
      for _, tname in ipairs(run.order or {}) do run.tasks[#run.tasks + 1] = by_name[tname] end
      runs[#runs + 1] = run
    end
    return runs
  end)
end

--- DAGs with runs in the home: { {name, file, schedule, last_run, last_date, last_status, ...} }.
function M.list(opts)
  local st, err, code = open_store(opts)
  if not st then return nil, err, code end
  return st:view(function(tx)
    local out = {}
    for _, v in tx:scan(DB, { prefix = K.dags() }) do out[#out + 1] = json.decode(v) end
    return out
  end)
end

--- The DAG's record and the record of its latest run of a date (either may be nil).
function M.state(st, name, date)
  return st:view(function(tx)
    local d = date and tx:get_json(DB, K.date(name, date))
    return tx:get_json(DB, K.dag(name)), d and tx:get_json(DB, K.run(name, d.latest)), tx:get_json(DB, K.lock(name))
  end)
end

-- Marks a dead runner's run interrupted (inside tx); returns the process
-- groups of its tasks that may still be running.
local function interrupt_run(tx, name, run_id, why)
  local run = run_id and tx:get_json(DB, K.run(name, run_id))
  if not run or TERMINAL[run.status] or run.status == "interrupted" then return {} end
  run.status, run.reason, run.finished = "interrupted", why, now()
  tx:put_json(DB, K.run(name, run_id), run)
  local d = tx:get_json(DB, K.date(name, run.date))
  if d and d.latest == run_id then
    d.status = "interrupted"
    tx:put_json(DB, K.date(name, run.date), d)
  end
  local pids, recs = {}, {}
  for k, v in tx:scan(DB, { prefix = K.tasks(name, run_id) }) do recs[k] = json.decode(v) end
  for k, t in pairs(recs) do
    if t.state == "running" or t.state == "retrying" then
      if t.state == "running" then
        pids[#pids + 1] = t.pid
        t.history = t.history or {}
        t.history[#t.history + 1] = { attempt = t.attempts, state = "interrupted", started = t.attempt_started,
                                      duration = t.attempt_started and now() - t.attempt_started, error = why }
      end
      t.state, t.error, t.pid = "interrupted", why, nil
      tx:put_json(DB, k, t)
    end
  end
  return pids
end

--- Takes the DAG's lock for this process: true, or nil, a message naming
-- the live runner that holds it, and "busy". A dead runner's lock is taken
-- over and its run marked interrupted.
function M.lock(st, dag)
  local me, pstart = M.me()
  local held, pids = st:update(function(tx)
    local l = tx:get_json(DB, K.lock(dag.name))
    if l and l.pid ~= me and M.alive(l.pid, l.pstart) then return l end
    local groups = {}
    if l and l.pid ~= me then
      groups = interrupt_run(tx, dag.name, l.run_id, string.format("runner pid %d died", l.pid))
    end
    tx:put_json(DB, K.lock(dag.name), { pid = me, pstart = pstart, since = now(), file = dag.file })
    return nil, groups
  end)
  if held then
    return errors.fail("busy", string.format("dag %s is already running (pid %d, run %s, since %s)", dag.name,
      held.pid, tostring(held.run_id or "-"), os.date("!%Y-%m-%d %H:%M:%SZ", math.floor(held.since or 0))))
  end
  for _, pid in ipairs(pids or {}) do kill_group(pid, "sigkill") end
  return true
end

--- Releases the lock when this process holds it.
function M.unlock(st, dag)
  local me = uv.os_getpid()
  st:update(function(tx)
    local l = tx:get_json(DB, K.lock(dag.name))
    if l and l.pid == me then tx:delete(DB, K.lock(dag.name)) end
  end)
end

local function new_task(name)
  return { task = name, state = "queued", attempts = 0, history = {}, log = {} }
end

-- Sets up the run of one slot (inside the lock). Returns run, task records,
-- or nil and why nothing is to run ("done": succeeded already).
local function prepare(st, dag, slot, opts)
  local name = dag.name
  return st:update(function(tx)
    local d = tx:get_json(DB, K.date(name, slot.date)) or { date = slot.date, ts = slot.ts, runs = 0 }
    local prev = d.latest and tx:get_json(DB, K.run(name, d.latest))
    local run_id, carry, resume = slot.date, nil, false
    if prev then
      if prev.status == "running" or prev.status == "queued" then
        -- We hold the lock: whoever ran this is gone.
        interrupt_run(tx, name, prev.run_id, "runner stopped")
        prev = tx:get_json(DB, K.run(name, prev.run_id))
      end
      if not opts.rerun and prev.status == "success" then return nil, "done", prev end
      if not opts.rerun and prev.status == "failed" and opts.trigger == "scheduled" then
        return nil, "failed before", prev
      end
      if prev.status == "interrupted" and not opts.rerun then
        resume, run_id = true, prev.run_id
      else
        run_id = slot.date .. "#" .. (d.runs + 1)
        if prev.status == "failed" and not opts.rerun then carry = prev.run_id end
      end
    end
    local tasks = {}
    for _, tname in ipairs(dag.order) do
      local rec
      if resume then rec = tx:get_json(DB, K.task(name, run_id, tname)) end
      if carry then
        local old = tx:get_json(DB, K.task(name, carry, tname))
        if old and (old.state == "success" or old.state == "skipped") then
          rec = old
          rec.carried = carry
        end
      end
      rec = rec or new_task(tname)
      rec.history, rec.log = rec.history or {}, rec.log or {}
      if not (rec.state == "success" or rec.state == "skipped") then
        rec.state, rec.error, rec.pid = "queued", nil, nil
      end
      tasks[tname] = rec
      tx:put_json(DB, K.task(name, run_id, tname), rec)
      tx:delete(DB, K.result(name, run_id, tname))
    end
    local run = resume and prev or { dag = name, run_id = run_id, date = slot.date, ts = slot.ts }
    run.status, run.reason, run.finished = "running", nil, nil
    run.started, run.trigger, run.order = now(), opts.trigger or "manual", dag.order
    run.pid, run.pstart = M.me()
    run.resumes = resume and (run.resumes or 0) + 1 or nil
    run.carried_from = carry
    tx:put_json(DB, K.run(name, run_id), run)
    if not resume then d.runs = d.runs + 1 end
    d.latest, d.status = run_id, "running"
    tx:put_json(DB, K.date(name, slot.date), d)
    local rec = tx:get_json(DB, K.dag(name)) or { name = name }
    rec.file, rec.schedule = dag.file, dag.schedule_text
    rec.last_ts = math.max(rec.last_ts or slot.ts, slot.ts)
    rec.last_run, rec.last_date, rec.last_status, rec.last_started = run_id, slot.date, "running", run.started
    tx:put_json(DB, K.dag(name), rec)
    local l = tx:get_json(DB, K.lock(name))
    if l then
      l.run_id = run_id
      tx:put_json(DB, K.lock(name), l)
    end
    return run, tasks
  end)
end

--- Stores task record rec of run run_id of DAG `name` (inside tx): its
-- state, attempts, timings and log tail as the runner keeps them.
function M.put_task(tx, name, run_id, rec) tx:put_json(DB, K.task(name, run_id, rec.task), rec) end

local function finish_run(st, dag, run)
  st:update(function(tx)
    tx:put_json(DB, K.run(dag.name, run.run_id), run)
    local d = tx:get_json(DB, K.date(dag.name, run.date))
    if d and d.latest == run.run_id then
      d.status = run.status
      tx:put_json(DB, K.date(dag.name, run.date), d)
    end
    local rec = tx:get_json(DB, K.dag(dag.name))
    if rec and rec.last_run == run.run_id then
      rec.last_status = run.status
      tx:put_json(DB, K.dag(dag.name), rec)
    end
  end)
end

M.prepare, M.finish_run, M.kill_group = prepare, finish_run, kill_group
M.LOG_LINES, M.LINE_MAX, M.OUTPUT_LIMIT = LOG_LINES, LINE_MAX, OUTPUT_LIMIT
M.FAILED, M.TERMINAL = FAILED, TERMINAL

return M
