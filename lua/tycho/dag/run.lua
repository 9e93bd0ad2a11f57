--- Running DAGs: the runner, which starts every task attempt as a child
-- process, and the child's side (`tycho dag _task`).
--
--   local dag = assert(tycho.dag.load("dags/retrain.lua"))
--   local summary = assert(tycho.dag.run(dag, { date = "2026-01-05" }))
--   --> { runs = { {date, run_id, status, reason} }, failed = 0 }
--
-- Semantics:
-- * One runner per DAG: a second is refused while the lock's pid lives; a
--   dead runner's lock is taken over and its run marked interrupted.
-- * A date whose latest run succeeded is not run again unless opts.rerun.
--   An interrupted run resumes under its own id: succeeded tasks are kept,
--   the others run by their retry policy, attempts already used counted
--   (but not one this runner stopped on SIGINT/SIGTERM: only one that was
--   running when a runner died unseen, which may have been the cause). A
--   failed date run again by hand gets a new run that keeps the tasks that
--   succeeded and gives the others fresh attempts (the scheduler never
--   runs a failed date again). opts.rerun runs every task afresh.
-- * Up to dag.max_active tasks run at once (default 2), in dependency order,
--   ties by name. Each attempt is a child process in its own process group:
--   a crash, error or hang never reaches the runner. A timeout sends SIGTERM
--   to the group and SIGKILL after dag.kill_grace; whatever a task leaves
--   running in its group is killed when it ends. A failed attempt is retried
--   after retry_delay * backoff^(attempt-1), at most max_retry_delay.
-- * A task that fails for good marks every task after it upstream_failed and
--   the run failed, naming the task and its error; independent tasks still
--   run. ctx.skip(why) skips a task and its dependents; the run succeeds.
-- * Backfills run dates in order and stop at the first date that does not
--   succeed, unless opts.keep_going.
-- * SIGINT / SIGTERM: running tasks are stopped, the run is marked
--   interrupted and the lock released.
local uv = require "luv"
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"
local internal = require "tycho.internal"
local dagmod = require "tycho.dag.define"
local hist = require "tycho.dag.history"
local libc = require "tycho.core.libc"

local M = {}
local DB, K, now = hist.DB, hist.keys, hist.now
local HISTORY_MAX = 20

local function secs(s)
  if s == nil then return "-" end
  if s < 10 then return string.format("%.2fs", s) end
  if s < 600 then return string.format("%.0fs", s) end
  return string.format("%dm%02ds", math.floor(s / 60), math.floor(s % 60))
end
M.secs = secs

local function push_line(ex, name, line)
  local rec = ex.tasks[name]
  if #line > hist.LINE_MAX then line = line:sub(1, hist.LINE_MAX) .. "..." end
  local log = rec.log
  log[#log + 1] = line
  while #log > hist.LOG_LINES do table.remove(log, 1) end
  ex.dirty[name] = true
  if ex.echo then ex.say("  " .. name .. " | " .. line) end
end

local function save(ex, name)
  local rec = ex.tasks[name]
  ex.dirty[name] = nil
  ex.st:update(function(tx) hist.put_task(tx, ex.dag.name, ex.run.run_id, rec) end)
end

local pump

-- Attempts that count against a task's retries: every one started, less
-- those stopped by this runner's own shutdown (ctx.attempt counts them all).
local function counted(rec) return rec.attempts - (rec.stopped_attempts or 0) end


local function close(h)
  if h and not h:is_closing() then h:close() end
end

local function terminate(ex, p)
  if p.code ~= nil or p.terminating then return end
  p.terminating = true
  hist.kill_group(p.pid, "sigterm")
  p.grace = uv.new_timer()
  p.grace:start(math.floor(ex.dag.kill_grace * 1000), 0, function()
    if p.code == nil then hist.kill_group(p.pid, "sigkill") end
  end)
end

-- The outcome of an attempt whose process has ended and whose output is read.
local function finish_attempt(ex, p)
  local name = p.name
  close(p.timer)
  close(p.grace)
  close(p.handle)
  ex.procs[name] = nil
  ex.active = ex.active - 1
  local rec, task = ex.tasks[name], ex.dag.tasks[name]
  local dur = now() - p.started
  local res = ex.st:view(function(tx) return tx:get_json(DB, K.result(ex.dag.name, ex.run.run_id, name)) end)
  if res and res.attempt ~= p.attempt then res = nil end
  local state, err
  if p.code == 0 and res and res.ok then
    state = res.skipped and "skipped" or "success"
  elseif ex.stopping then
    state, err = "interrupted", "stopped by " .. ex.stopping
  elseif p.timed_out then
    state, err = "timed_out", "timed out after " .. secs(task.timeout)
  else
    state = "failed"
    err = (res and res.error) or p.spawn_error
      or ((p.signal or 0) ~= 0 and ("killed by signal " .. p.signal)) or ("exited with code " .. tostring(p.code))
  end
  local h = rec.history
  h[#h + 1] = { attempt = p.attempt, state = state, started = p.started, duration = dur, error = err,
                code = p.code, signal = (p.signal or 0) ~= 0 and p.signal or nil }
  while #h > HISTORY_MAX do table.remove(h, 1) end
  rec.duration, rec.pid, rec.attempt_started = (rec.duration or 0) + dur, nil, nil
  if state == "success" or state == "skipped" then
    rec.state, rec.output, rec.error, rec.reason, rec.finished = state, res.output, nil, res.skipped, now()
    ex.say(string.format("  %-16s %s in %s%s", name, state, secs(dur), res.skipped and (" (" .. res.skipped .. ")") or ""))
  elseif state == "interrupted" then
    rec.state, rec.error = state, err
    rec.stopped_attempts = (rec.stopped_attempts or 0) + 1
  elseif counted(rec) < task.retries + 1 then
    local delay = math.min(task.retry_delay * task.backoff ^ (counted(rec) - 1), task.max_retry_delay)
    rec.state, rec.error, rec.next_attempt = "retrying", err, now() + delay
    ex.say(string.format("  %-16s attempt %d of %d %s: %s; retry in %s", name, counted(rec), task.retries + 1,
      state == "timed_out" and "timed out" or "failed", err, secs(delay)))
    local t = uv.new_timer()
    ex.timers[name] = t
    uv.update_time()  -- the loop's clock stands still while Lua works
    t:start(math.floor(delay * 1000), 0, function()
      close(t)
      ex.timers[name] = nil
      rec.state, rec.next_attempt = "queued", nil
      pump(ex)
    end)
  else
    rec.state, rec.error, rec.finished = state, err, now()
    ex.failure = ex.failure or { task = name, state = state, error = err }
    ex.say(string.format("  %-16s %s after %d attempt%s: %s", name, state, counted(rec), counted(rec) == 1 and "" or "s",
      err))
  end
  save(ex, name)
  pump(ex)
end

local function maybe_finish(ex, p)
  if p.code == nil or p.finished then return end
  if p.open > 0 then
    -- Something in the task's group may still hold its output open: it is
    -- killed; after a second the pipes are closed regardless.
    if not p.linger then
      hist.kill_group(p.pid, "sigkill")
      p.linger = uv.new_timer()
      p.linger:start(1000, 0, function()
        for _, pipe in ipairs(p.pipes) do close(pipe) end
        p.open = 0
        maybe_finish(ex, p)
      end)
    end
    return
  end
  p.finished = true
  close(p.linger)
  finish_attempt(ex, p)
end

local function read_lines(ex, p, pipe)
  local partial = ""
  pipe:read_start(function(_, data)
    if data then
      partial = partial .. data
      for line in partial:gmatch("([^\n]*)\n") do push_line(ex, p.name, line) end
      partial = partial:match("[^\n]*$")
      if #partial > hist.LINE_MAX then
        push_line(ex, p.name, partial)
        partial = ""
      end
      return
    end
    if partial ~= "" then push_line(ex, p.name, partial) end
    close(pipe)
    p.open = p.open - 1
    maybe_finish(ex, p)
  end)
end

local function start_attempt(ex, name)
  local dag, rec, task = ex.dag, ex.tasks[name], ex.dag.tasks[name]
  rec.attempts = rec.attempts + 1
  rec.state, rec.attempt_started, rec.next_attempt = "running", now(), nil
  rec.started = rec.started or rec.attempt_started
  push_line(ex, name, string.format("--- attempt %d of %d ---", counted(rec), task.retries + 1))
  ex.st:update(function(tx) tx:delete(DB, K.result(dag.name, ex.run.run_id, name)) end)
  local p = { name = name, attempt = rec.attempts, started = rec.attempt_started, open = 2 }
  ex.procs[name] = p
  ex.active = ex.active + 1
  local stdin, stdout, stderr = uv.new_pipe(false), uv.new_pipe(false), uv.new_pipe(false)
  p.pipes = { stdout, stderr }
  local args = { "--home", ex.home, "dag", "_task", dag.file, name, ex.run.run_id, tostring(rec.attempts),
                 tostring(uv.os_getpid()) }
  local handle, pid = uv.spawn(internal.exe, { args = args, stdio = { stdin, stdout, stderr }, detached = true },
    function(code, signal)
      p.code, p.signal = code, signal
      -- Whatever the task started and left behind goes with it.
      hist.kill_group(p.pid, "sigkill")
      maybe_finish(ex, p)
    end)
  if not handle then
    close(stdin)
    close(stdout)
    close(stderr)
    p.code, p.open, p.spawn_error = -1, 0, "cannot start the task process: " .. tostring(pid)
    local t = uv.new_timer()
    t:start(0, 0, function()
      close(t)
      maybe_finish(ex, p)
    end)
    return
  end
  p.handle, p.pid, rec.pid = handle, pid, pid
  close(stdin)
  read_lines(ex, p, stdout)
  read_lines(ex, p, stderr)
  if task.timeout then
    uv.update_time()
    p.timer = uv.new_timer()
    p.timer:start(math.floor(task.timeout * 1000), 0, function()
      p.timed_out = true
      push_line(ex, name, "--- timed out after " .. secs(task.timeout) .. ": stopping it ---")
      terminate(ex, p)
    end)
  end
  save(ex, name)
end

-- What the dependencies of a queued task allow: "ready", "wait",
-- "upstream_failed" or "skipped", and the dependency that decided it.
local function verdict(ex, name)
  local wait, skipped, failed = false, nil, nil
  for _, dep in ipairs(ex.dag.tasks[name].after) do
    local s = ex.tasks[dep].state
    if hist.FAILED[s] then failed = failed or dep
    elseif s == "skipped" then skipped = skipped or dep
    elseif s ~= "success" then wait = true end
  end
  if failed then return "upstream_failed", failed end
  if wait then return "wait" end
  if skipped then return "skipped", skipped end
  return "ready"
end

pump = function(ex)
  if not ex.stopping then
    -- Dependency order: one pass settles every task whose inputs are known.
    for _, name in ipairs(ex.dag.order) do
      local rec, task = ex.tasks[name], ex.dag.tasks[name]
      if rec.state == "queued" then
        local v, dep = verdict(ex, name)
        if v == "upstream_failed" then
          local root = ex.tasks[dep].root or dep
          rec.state, rec.root, rec.error = "upstream_failed", root, "upstream task " .. root .. " failed"
          ex.say(string.format("  %-16s upstream_failed (%s)", name, rec.error))
          save(ex, name)
        elseif v == "skipped" then
          rec.state, rec.reason = "skipped", "upstream task " .. dep .. " was skipped"
          ex.say(string.format("  %-16s skipped (%s)", name, rec.reason))
          save(ex, name)
        elseif v == "ready" and ex.active < ex.dag.max_active then
          if counted(rec) >= task.retries + 1 then
            local last = rec.history[#rec.history]
            rec.state = "failed"
            rec.error = string.format("no attempts left (%d of %d used)%s", counted(rec), task.retries + 1,
              last and last.error and ("; last: " .. last.error) or "")
            ex.failure = ex.failure or { task = name, state = "failed", error = rec.error }
            ex.say(string.format("  %-16s failed: %s", name, rec.error))
            save(ex, name)
          else
            start_attempt(ex, name)
          end
        end
      end
    end
  end
  if ex.active == 0 and next(ex.timers) == nil then
    local pending
    for name, rec in pairs(ex.tasks) do
      if rec.state == "queued" or rec.state == "running" or rec.state == "retrying" then pending = name end
    end
    if pending and not ex.stopping then error("dag runner stalled with task " .. pending .. " " .. ex.tasks[pending].state) end
    ex.done = true
  end
end

local function stop(ex, why)
  if ex.stopping then return end
  ex.stopping = why
  for name, t in pairs(ex.timers) do
    close(t)
    ex.timers[name] = nil
    local rec = ex.tasks[name]
    rec.state, rec.error, rec.next_attempt = "interrupted", "stopped by " .. why, nil
    save(ex, name)
  end
  for name, p in pairs(ex.procs) do
    push_line(ex, name, "--- stopped by " .. why .. " ---")
    terminate(ex, p)
  end
  pump(ex)
end

-- Runs the tasks of one prepared run to the end; returns status, reason.
local function execute(ex)
  ex.flush = uv.new_timer()
  ex.flush:start(1000, 1000, function()
    for name in pairs(ex.dirty) do save(ex, name) end
  end)
  local ok, err = pcall(function()
    pump(ex)
    while not ex.done do uv.run("once") end
  end)
  if not ok then
    -- A bug in the runner: stop the tasks before giving up.
    stop(ex, "runner error")
    while ex.active > 0 do uv.run("once") end
  end
  close(ex.flush)
  for name in pairs(ex.dirty) do save(ex, name) end
  local run = ex.run
  run.finished = now()
  if not ok then
    run.status, run.reason = "interrupted", "runner error: " .. tostring(err)
  elseif ex.stopping then
    run.status, run.reason = "interrupted", "stopped by " .. ex.stopping
  elseif ex.failure then
    local f = ex.failure
    run.status = "failed"
    run.reason = f.state == "timed_out" and ("task " .. f.task .. " " .. f.error)
      or ("task " .. f.task .. " failed: " .. f.error)
  else
    run.status = "success"
  end
  hist.finish_run(ex.st, ex.dag, run)
  if not ok then error(err, 0) end
  return run.status, run.reason
end

--- Runs a DAG (a loaded DAG or a file path) for its slots. opts: slots
-- ({ {ts, date} }, else date / from, to / now as in daghistory.slots),
-- rerun, keep_going, trigger ("manual", "scheduled", "backfill"), quiet,
-- echo (task output lines too), say (function(line), default print), home.
-- Returns { runs = { {date, run_id, status, reason, seconds} }, failed = n },
-- or nil, message, code ("busy" when another runner holds the DAG).
function M.run(dag, opts)
  opts = opts or {}
  if type(dag) == "string" then
    local d, err, code = dagmod.load(dag)
    if not d then return nil, err, code end
    dag = d
  end
  if not dagmod.is_dag(dag) then error("dag.run: expected a DAG or a DAG file", 2) end
  if not dag.file then error("dag.run: load the DAG from its file (tycho.dag.load): tasks run in child processes", 2) end
  local slots, serr, scode = opts.slots
  if not slots then
    slots, serr, scode = hist.slots(dag, opts)
    if not slots then return nil, serr, scode end
  end
  local st, oerr = require("tycho.core.store").open(opts.home)
  if not st then return errors.fail("unavailable", oerr) end
  local locked, lerr, lcode = hist.lock(st, dag)
  if not locked then return nil, lerr, lcode end
  local say = opts.quiet and function() end or opts.say or print
  local ex
  local stopped
  local signals = {}
  for _, sig in ipairs { "sigint", "sigterm" } do
    local h = uv.new_signal()
    h:start(sig, function()
      stopped = sig:upper()
      if ex and not ex.done then stop(ex, stopped) end
    end)
    signals[#signals + 1] = h
  end
  local summary = { runs = {}, failed = 0 }
  local ok, err = pcall(function()
    for _, slot in ipairs(slots) do
      if stopped then break end
      local run, tasks, prev = hist.prepare(st, dag, slot, opts)
      if not run then
        local why = tasks == "done" and "already succeeded" or "failed before (the scheduler does not retry it)"
        say(string.format("%s %s: %s (run %s)%s", dag.name, slot.date, why, prev.run_id,
          tasks == "done" and "; --rerun runs it again" or ""))
        summary.runs[#summary.runs + 1] = { date = slot.date, run_id = prev.run_id, status = prev.status, skipped = true }
      else
        local ran = 0
        for _, rec in pairs(tasks) do if rec.state == "queued" then ran = ran + 1 end end
        say(string.format("%s %s: run %s%s, %d of %d tasks to run", dag.name, slot.date, run.run_id,
          run.resumes and " resumed" or "", ran, #dag.order))
        ex = { dag = dag, st = st, run = run, tasks = tasks, procs = {}, timers = {}, dirty = {}, active = 0,
               home = opts.home or internal.home, say = say, echo = opts.echo }
        if stopped then ex.stopping = stopped end
        local status, reason = execute(ex)
        local took = run.finished - run.started
        say(string.format("%s %s: %s in %s%s", dag.name, slot.date, status, secs(took),
          reason and (" (" .. reason .. ")") or ""))
        summary.runs[#summary.runs + 1] = { date = slot.date, run_id = run.run_id, status = status, reason = reason,
                                            seconds = took }
        if status ~= "success" then
          summary.failed = summary.failed + 1
          if not opts.keep_going then break end
        end
      end
    end
  end)
  for _, h in ipairs(signals) do close(h) end
  hist.unlock(st, dag)
  uv.run("nowait")
  if not ok then error(err, 0) end
  summary.stopped = stopped
  return summary
end

-- ---- the task's side -----------------------------------------------------------------

local SKIP = {}

-- Dies with the runner (Linux): a task never outlives the process that
-- watches its timeout. false when the runner is gone already.
local function watch_parent(parent)
  libc.die_with_parent()
  return uv.os_getppid() == parent
end

--- `tycho dag _task FILE TASK RUN_ID ATTEMPT [RUNNER_PID]`: one attempt of
-- one task, in its own process. Reports {attempt, ok, output | error |
-- skipped} under the run's result key; exit 0 when the task succeeded.
function M.task_main(file, tname, run_id, attempt, parent)
  attempt, parent = tonumber(attempt), tonumber(parent)
  if not (file and tname and run_id and attempt) then
    io.stderr:write("usage: tycho dag _task FILE TASK RUN_ID ATTEMPT [RUNNER_PID]\n")
    return 2
  end
  if parent and not watch_parent(parent) then return 1 end
  io.stdout:setvbuf("line")
  local dag, err = dagmod.load(file)
  if not dag then
    io.stderr:write("tycho dag: ", err, "\n")
    return 1
  end
  local task = dag.tasks[tname]
  if not task then
    io.stderr:write("tycho dag: no task '", tname, "' in dag ", dag.name, "\n")
    return 1
  end
  local st = assert(require("tycho.core.store").open())
  local run, outputs = st:view(function(tx)
    local outs = {}
    for dep in pairs(dag:ancestors(tname)) do
      local r = tx:get_json(DB, K.task(dag.name, run_id, dep))
      if r and r.output ~= nil then outs[dep] = r.output end
    end
    return tx:get_json(DB, K.run(dag.name, run_id)), outs
  end)
  if not run then
    io.stderr:write("tycho dag: no run '", run_id, "' of dag ", dag.name, "\n")
    return 1
  end
  local function report(r)
    r.attempt = attempt
    st:update(function(tx) tx:put_json(DB, K.result(dag.name, run_id, tname), r) end)
  end
  local ctx = { dag = dag.name, task = tname, date = run.date, ts = run.ts, run_id = run_id, attempt = attempt,
                home = internal.home, dir = dag.dir, file = dag.file, outputs = outputs }
  function ctx.log(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    io.stdout:write(table.concat(parts, " "), "\n")
  end
  function ctx.skip(why) error(setmetatable({ reason = tostring(why or "skipped") }, SKIP), 2) end
  local trace
  local ok, out = xpcall(task.run, function(e)
    if getmetatable(e) ~= SKIP then
      -- The user's frames only: the runner's own end the traceback.
      trace = debug.traceback(tostring(e), 2):gsub("\n%s*%[C%]: in function 'xpcall'.*$", "")
    end
    return e
  end, ctx)
  io.stdout:flush()
  if not ok then
    if getmetatable(out) == SKIP then
      report { ok = true, skipped = out.reason }
      return 0
    end
    io.stderr:write(trace or tostring(out), "\n")
    report { ok = false, error = tostring(out) }
    return 1
  end
  local encodable, text = pcall(json.encode, out)
  if not encodable then
    report { ok = false, error = "the task's return value is not JSON: " .. tostring(text) }
    return 1
  end
  if #text > hist.OUTPUT_LIMIT then
    report { ok = false, error = string.format("the task's return value is %d bytes of JSON (at most %d: keep "
      .. "outputs small, write data to files or the feature store)", #text, hist.OUTPUT_LIMIT) }
    return 1
  end
  report { ok = true, output = out }
  return 0
end

return M
