--- `tycho dag run | status | list` (and the hidden `_task` of each task
-- attempt). Exit codes: 0 ok, 1 a run did not succeed or an error, 2 usage.
local dagmod = require "tycho.dag.define"
local hist = require "tycho.dag.history"
local dagrun = require "tycho.dag.run"

local out = require "tycho.cli.output"
local json = require "tycho.util.json"

local M = {}

local USAGE = [==[
usage: tycho dag run FILE [--date D | --from D --to D] [--rerun] [--keep-going] [--verbose] [--quiet]
       tycho dag status FILE|NAME [--limit N] [--json]
       tycho dag list [--json]]==]

local function usage(msg)
  if msg then io.stderr:write("tycho dag: ", msg, "\n") end
  io.stderr:write(USAGE, "\n")
  return 2
end

local function fail(msg)
  io.stderr:write("tycho dag: ", msg, "\n")
  return 1
end

-- FILE and options: "--name value" for the names in with_value, bare flags
-- for those in flags. Returns positional list, options, or nil and a message.
local function parse(args, with_value, flags)
  local pos, opts, i = {}, {}, 1
  while args[i] do
    local a = args[i]
    if with_value[a] then
      if args[i + 1] == nil then return nil, a .. " needs a value" end
      opts[with_value[a]] = args[i + 1]
      i = i + 2
    elseif flags[a] then
      opts[flags[a]] = true
      i = i + 1
    elseif a:sub(1, 1) == "-" and #a > 1 then
      return nil, "unknown option '" .. a .. "'"
    else
      pos[#pos + 1] = a
      i = i + 1
    end
  end
  return pos, opts
end

local function run_cmd(args)
  local pos, opts = parse(args, { ["--date"] = "date", ["--from"] = "from", ["--to"] = "to" },
    { ["--rerun"] = "rerun", ["--keep-going"] = "keep_going", ["--scheduled"] = "scheduled", ["--quiet"] = "quiet",
      ["--verbose"] = "echo" })
  if not pos then return usage(opts) end
  if #pos ~= 1 then return usage(#pos == 0 and "run needs a DAG FILE" or "unexpected argument '" .. pos[2] .. "'") end
  if opts.date and (opts.from or opts.to) then return usage("give --date or --from/--to, not both") end
  if (opts.from or opts.to) and not (opts.from and opts.to) then return usage("a backfill needs both --from and --to") end
  local dag, err = dagmod.load(pos[1])
  if not dag then return fail(err) end
  local slots, serr = hist.slots(dag, opts)
  if not slots then return fail(serr) end
  opts.slots = slots
  opts.trigger = opts.scheduled and "scheduled" or (opts.from and "backfill") or "manual"
  local summary, rerr = dagrun.run(dag, opts)
  if not summary then return fail(rerr) end
  if summary.stopped then return 1 end
  for _, r in ipairs(summary.runs) do
    if not r.skipped and r.status ~= "success" then return 1 end
  end
  return 0
end

local function utc(t) return t and os.date("!%Y-%m-%d %H:%M:%S", math.floor(t)) or "-" end

local function print_run(run)
  local took = run.finished and run.started and (run.finished - run.started) or nil
  print(string.format("%-22s %-12s %-10s %-20s %s", run.run_id, run.status, run.trigger or "-", utc(run.started),
    dagrun.secs(took)))
  if run.reason then print("  reason: " .. run.reason) end
  print(string.format("  %-18s %-16s %8s  %s", "TASK", "STATE", "ATTEMPTS", "DURATION"))
  for _, t in ipairs(run.tasks) do
    local note = t.carried and ("  (kept from run " .. t.carried .. ")") or ""
    if t.state == "retrying" and t.next_attempt then note = "  (next attempt at " .. utc(t.next_attempt) .. ")" end
    print(string.format("  %-18s %-16s %8d  %s%s", t.task, t.state, t.attempts or 0, dagrun.secs(t.duration), note))
    if hist.FAILED[t.state] or t.state == "interrupted" or t.state == "retrying" or t.state == "running" then
      if t.error then print("    error: " .. t.error) end
      if t.state ~= "upstream_failed" then
        local log = t.log or {}
        for i = math.max(1, #log - 14), #log do print("    | " .. log[i]) end
      end
    elseif t.state == "skipped" and t.reason then
      print("    skipped: " .. t.reason)
    end
  end
end

local function status_cmd(args)
  local pos, opts = parse(args, { ["--limit"] = "limit" }, { ["--json"] = "json" })
  if not pos then return usage(opts) end
  if #pos ~= 1 then return usage("status needs a DAG FILE or name") end
  local limit = tonumber(opts.limit or 10)
  if not limit or limit < 1 or limit % 1 ~= 0 then return usage("--limit needs a whole number >= 1") end
  local name, file = pos[1], nil
  local f = io.open(pos[1])
  if f then
    f:close()
    local dag, err = dagmod.load(pos[1])
    if not dag then return fail(err) end
    name, file = dag.name, dag.file
  end
  local st, serr = require("tycho.core.store").open()
  if not st then return fail(serr) end
  local rec, _, lock = hist.state(st, name)
  if not rec then
    if file then
      if opts.json then return out.json({ name = name, file = file, runs = json.empty_array }) end
      print("dag " .. name .. " (" .. file .. "): no runs in this home")
      return 0
    end
    return fail("no dag '" .. name .. "' has run in this home (tycho dag list shows those that have)")
  end
  if opts.json then
    local runs = hist.history(name, { store = st, limit = limit })
    local running = lock and hist.alive(lock.pid, lock.pstart) and lock or nil
    return out.json({ name = name, schedule = rec.schedule, file = rec.file or file, running = running,
                      runs = #runs > 0 and runs or json.empty_array })
  end
  print(string.format("dag %s, schedule %s (UTC), file %s", name, rec.schedule or "none", rec.file or file or "-"))
  if lock and hist.alive(lock.pid, lock.pstart) then
    print(string.format("running now: pid %d, run %s, since %s", lock.pid, tostring(lock.run_id or "-"), utc(lock.since)))
  end
  local runs = hist.history(name, { store = st, limit = limit })
  print("")
  print(string.format("%-22s %-12s %-10s %-20s %s", "RUN", "STATUS", "TRIGGER", "STARTED (UTC)", "DURATION"))
  for i, run in ipairs(runs) do
    if i > 1 then print("") end
    print_run(run)
  end
  return 0
end

local function list_cmd(args)
  local pos, opts = parse(args, {}, { ["--json"] = "json" })
  if not pos then return usage(opts) end
  if #pos > 0 then return usage("list takes no arguments") end
  local dags, err = hist.list()
  if not dags then return fail(err) end
  if opts.json then return out.json({ dags = #dags > 0 and dags or json.empty_array }) end
  if #dags == 0 then
    print("no dag has run in this home")
    return 0
  end
  print(string.format("%-20s %-16s %-22s %-12s %-20s %s", "DAG", "SCHEDULE", "LAST RUN", "STATUS", "STARTED (UTC)",
    "FILE"))
  for _, d in ipairs(dags) do
    print(string.format("%-20s %-16s %-22s %-12s %-20s %s", d.name, d.schedule or "-", d.last_run or "-",
      d.last_status or "-", utc(d.last_started), d.file or "-"))
  end
  return 0
end

--- Entry of `tycho dag SUBCOMMAND ...`; returns the exit code.
function M.main(sub, ...)
  local args = { ... }
  if sub == "run" then return run_cmd(args) end
  if sub == "status" then return status_cmd(args) end
  if sub == "list" then return list_cmd(args) end
  if sub == "_task" then return dagrun.task_main(...) end
  if sub == nil or sub == "help" or sub == "--help" then return usage() end
  return usage("unknown subcommand '" .. tostring(sub) .. "'")
end

return M
