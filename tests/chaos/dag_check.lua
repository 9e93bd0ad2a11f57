-- Chaos fixture: what a killed `tycho dag run` of dag.lua left, and whether
-- the rerun resumed it properly.
--
--   tycho --home H run tests/chaos/dag_check.lua pre MARKS DATE > PRE
--       (after the kill, before the rerun) one line per task: "TASK STATE STARTS
--       DONES" (its state in the latest run of DATE, its "start" and "done"
--       marker counts),
--       then "# run STATUS" and "# pids P..." (attempts recorded as running)
--   tycho --home H run tests/chaos/dag_check.lua post MARKS DATE PRE
--       (after the rerun) checks: one run of DATE, status success, every task
--       success with a "done" marker; a task that had succeeded before the
--       rerun did not start again; any other task started exactly once more
--       (also one whose attempt had finished its work when the runner died,
--       before its success was recorded: tasks run at least once, and that
--       case is counted as "finished unrecorded").
--       Exit 0 when consistent, 3 when not ("INCONSISTENT: ..." on stdout).
local hist = require "tycho.daghistory"
local common = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")

local TASKS = { "prepare", "left", "right", "join", "publish" }
local mode, marks, date = arg[1], arg[2], arg[3]
assert((mode == "pre" or mode == "post") and marks and date, "usage: dag_check.lua pre|post MARKS DATE [PRE]")

local function markers(task)
  local starts, dones = 0, 0
  local f = io.open(marks .. "/" .. task .. ".log")
  if f then
    for line in f:lines() do
      if line:match("^start ") then starts = starts + 1 elseif line:match("^done ") then dones = dones + 1 end
    end
    f:close()
  end
  return starts, dones
end

local runs = assert(hist.history("chaos", { limit = 100 }))
local of_date = {}
for _, r in ipairs(runs) do if r.date == date then of_date[#of_date + 1] = r end end
local latest = of_date[1]
local state = {}
for _, t in ipairs(latest and latest.tasks or {}) do state[t.task] = t end

if mode == "pre" then
  for _, name in ipairs(TASKS) do
    local starts, dones = markers(name)
    print(string.format("%s %s %d %d", name, state[name] and state[name].state or "none", starts, dones))
  end
  -- Task attempts the dead runner had running: they must die with it.
  local pids = {}
  for _, name in ipairs(TASKS) do
    if state[name] and state[name].state == "running" and state[name].pid then pids[#pids + 1] = state[name].pid end
  end
  common.say("# run ", latest and latest.status or "none")
  common.say("# pids ", table.concat(pids, " "))
  return
end

local problems = {}
local function bad(fmt, ...) problems[#problems + 1] = string.format(fmt, ...) end
local before = {}
for line in io.lines((assert(arg[4], "post needs the PRE file"))) do
  local name, st, starts, dones = line:match("^(%S+) (%S+) (%d+) (%d+)$")
  if name then before[name] = { state = st, starts = tonumber(starts), dones = tonumber(dones) } end
end
if #of_date ~= 1 then bad("%d runs of %s (want 1: the interrupted one resumed)", #of_date, date) end
if not latest or latest.status ~= "success" then
  bad("run of %s is %s (%s)", date, latest and latest.status or "missing", latest and tostring(latest.reason) or "")
end
local resumed, redone = 0, 0
for _, name in ipairs(TASKS) do
  local starts, dones = markers(name)
  local b = before[name] or { state = "none", starts = 0, dones = 0 }
  local t = state[name]
  if not t or t.state ~= "success" then bad("task %s is %s", name, t and t.state or "missing") end
  if dones < 1 then bad("task %s never finished (no done marker)", name) end
  if b.state == "success" then
    if starts ~= b.starts then bad("task %s had succeeded, yet started again (%d -> %d starts)", name, b.starts, starts) end
  else
    resumed = resumed + 1
    -- Its work had finished, but the runner died before recording it: run
    -- again (at least once; allowed, counted).
    if b.dones > 0 then redone = redone + 1 end
    if starts ~= b.starts + 1 then
      bad("task %s (%s before the rerun) started %d more times, want 1", name, b.state, starts - b.starts)
    end
  end
end
common.say(string.format("rerun: run %s %s, %d of %d tasks run again (%d had finished unrecorded), resumes %s", date,
  latest and latest.status or "-", resumed, #TASKS, redone, tostring(latest and latest.resumes)))
if #problems > 0 then
  common.say("INCONSISTENT: " .. table.concat(problems, "; "))
  os.exit(3)
end
common.say("consistent")
