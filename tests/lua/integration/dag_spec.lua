-- DAGs: cron schedules, checks at load, and `tycho dag run` with its
-- retries, timeouts, skips, backfills, lock, resume and catch-up.
local testing = require "tycho.testing"
local cron = require "tycho.cron"
local dagmod = require "tycho.dag"
local hist = require "tycho.daghistory"
local timeutil = require "tycho.timeutil"

local FIX = "tests/lua/fixtures/dags/"

local function at(text) return timeutil.parse(text) / 1e6 end
local function iso(ts) return ts and os.date("!%Y-%m-%dT%H:%M:%SZ", ts) end

describe("cron schedules", function()
  local function slots(expr, from, n)
    local s = assert(cron.parse(expr))
    local out, t = {}, at(from)
    for i = 1, n do
      t = s:next(t)
      out[i] = iso(t)
    end
    return out
  end

  it("reads fields, lists, ranges, steps and names", function()
    assert.same({ "2026-01-02T17:45:00Z", "2026-01-05T09:00:00Z", "2026-01-05T09:15:00Z" },
      slots("*/15 9-17 * * mon-fri", "2026-01-02T17:40:00Z", 3))  -- a Friday
    assert.same({ "2026-03-01T00:05:00Z", "2026-03-01T00:25:00Z", "2026-03-01T00:45:00Z", "2026-07-01T00:05:00Z" },
      slots("5-59/20 0 1 Mar,jul *", "2026-01-01T00:00:00Z", 4))
    assert.same({ "2026-01-01T06:30:00Z", "2026-01-01T18:30:00Z", "2026-01-02T06:30:00Z" },
      slots("30 6,18 * * *", "2026-01-01T00:00:00Z", 3))
    assert.same({ "2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z" }, slots("0 0 * * 7", "2026-01-01T00:00:00Z", 2))
    assert.same({ "2028-02-29T12:00:00Z" }, slots("0 12 29 2 *", "2024-03-01T00:00:00Z", 1))
  end)

  it("matches either day field when both are restricted, both when one starts with *", function()
    -- The 13th of any month or any Friday.
    assert.same({ "2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z", "2026-01-16T00:00:00Z" },
      slots("0 0 13 * 5", "2026-01-01T00:00:00Z", 4))
    -- */2 counts as unrestricted: odd days of the month that are Mondays.
    assert.same({ "2026-01-05T00:00:00Z", "2026-01-19T00:00:00Z", "2026-02-09T00:00:00Z" },
      slots("0 0 */2 * 1", "2026-01-01T00:00:00Z", 3))
  end)

  it("knows the shortcuts and @every", function()
    local from = "2026-05-17T10:20:30Z"
    assert.same({ "2026-05-17T11:00:00Z" }, slots("@hourly", from, 1))
    assert.same({ "2026-05-18T00:00:00Z" }, slots("@daily", from, 1))
    assert.same({ "2026-05-24T00:00:00Z" }, slots("@weekly", from, 1))
    assert.same({ "2026-06-01T00:00:00Z" }, slots("@monthly", from, 1))
    assert.same({ "2027-01-01T00:00:00Z" }, slots("@yearly", from, 1))
    assert.same({ "2026-05-17T10:20:32Z", "2026-05-17T10:20:34Z" }, slots("@every 2s", from, 2))
    assert.same({ "2026-05-17T10:30:00Z" }, slots("@every 15m", from, 1))
  end)

  it("finds the latest slot at or before a time and the next one after it", function()
    local s = assert(cron.parse("0 3 * * *"))
    assert.equal("2026-01-05T03:00:00Z", iso(s:prev(at("2026-01-05T03:00:00Z"))))
    assert.equal("2026-01-04T03:00:00Z", iso(s:prev(at("2026-01-05T02:59:59Z"))))
    assert.equal("2026-01-06T03:00:00Z", iso(s:next(at("2026-01-05T03:00:00Z"))))
    assert.equal("2025-12-31T03:00:00Z", iso(s:prev(at("2026-01-01T00:00:00Z"))))
    local q = assert(cron.parse("0 0 1 */3 *"))
    assert.equal("2026-04-01T00:00:00Z", iso(q:prev(at("2026-06-30T23:59:00Z"))))
    local e = assert(cron.parse("@every 2s"))
    assert.equal(at("2026-01-01T00:00:10Z"), e:prev(at("2026-01-01T00:00:11Z")))
    assert.equal(at("2026-01-01T00:00:12Z"), e:next(at("2026-01-01T00:00:10Z")))
  end)

  it("refuses bad expressions, naming the field", function()
    local cases = {
      ["0 25 * * *"] = "hour field '25': 25 is out of range 0-23",
      ["61 * * * *"] = "minute field '61'",
      ["* * * *"] = "expected 5 fields",
      ["0 0 * foo *"] = "month field 'foo'",
      ["0 0 * * 1-9"] = "day-of-week field '1-9'",
      ["*/0 * * * *"] = "step '0'",
      ["0 0 5-1 * *"] = "runs backwards",
      ["0 0 30 2 *"] = "never matches",
      ["@fortnightly"] = "unknown shortcut",
      ["@every soon"] = "bad duration 'soon'",
    }
    for expr, why in pairs(cases) do
      local s, err, code = cron.parse(expr)
      assert.is_nil(s, expr)
      assert.matches("bad cron expression '" .. expr .. "'", err, 1, true)
      assert.matches(why, err, 1, true)
      assert.equal("invalid", code, expr)
    end
    local _, derr, dcode = cron.duration("soon")
    assert.matches("bad duration 'soon'", derr, 1, true)
    assert.equal("invalid", dcode)
  end)

  it("labels slots with dates for daily-or-coarser schedules, timestamps otherwise", function()
    local t = at("2026-01-05T03:00:00Z")
    assert.is_true(assert(cron.parse("0 3 * * *")):daily())
    assert.equal("2026-01-05", assert(cron.parse("0 3 * * *")):label(t))
    assert.equal("2026-01-05", assert(cron.parse("@weekly")):label(t))
    assert.equal("2026-01-05T03:00:00Z", assert(cron.parse("0 */6 * * *")):label(t))
    assert.equal("2026-01-05T03:00:00Z", assert(cron.parse("@every 2s")):label(t))
  end)
end)

describe("dag files", function()
  it("are refused with a cycle, naming it", function()
    local dag, err, ecode = dagmod.load(FIX .. "cycle.lua")
    assert.is_nil(dag)
    assert.matches("dag cycle: cycle: prepare -> train -> evaluate -> prepare", err, 1, true)
    assert.equal("invalid", ecode)
    local _, merr, mcode = dagmod.load(FIX .. "no_such_dag.lua")
    assert.matches("no_such_dag.lua", merr, 1, true)
    assert.equal("not_found", mcode)
    local code, _, stderr = testing.run({ "dag", "run", FIX .. "cycle.lua" })
    assert.equal(1, code)
    assert.matches("cycle: prepare -> train -> evaluate -> prepare", stderr, 1, true)
  end)

  it("are refused with an unknown dependency or a bad schedule", function()
    local _, err = dagmod.load(FIX .. "unknown_dep.lua")
    assert.matches("task train: unknown dependency 'extarct' (tasks: extract, train)", err, 1, true)
    _, err = dagmod.load(FIX .. "bad_cron.lua")
    assert.matches("dag bad_cron: schedule: bad cron expression '0 25 * * *': hour field", err, 1, true)
    assert.matches("fixtures/dags/bad_cron.lua: ", err, 1, true)  -- the DAG file
  end)

  it("are refused with bad durations, unknown fields and self-dependencies", function()
    local function refused(tasks, extra)
      local def = { name = "x", tasks = tasks }
      for k, v in pairs(extra or {}) do def[k] = v end
      local ok, err = pcall(dagmod.new, def)
      assert.is_false(ok)
      return err
    end
    local run = function() end
    assert.matches("task t: retry_delay: bad duration 'soon'", refused({ t = { run = run, retry_delay = "soon" } }), 1, true)
    assert.matches("task t: timeout: bad duration", refused({ t = { run = run, timeout = "10 parsecs" } }), 1, true)
    assert.matches("task t: unknown field 'retires'", refused({ t = { run = run, retires = 2 } }), 1, true)
    assert.matches("unknown field 'shedule'", refused({ t = { run = run } }, { shedule = "@daily" }), 1, true)
    assert.matches("task t: run must be a function", refused({ t = {} }), 1, true)
    assert.matches("cycle: t -> t", refused({ t = { run = run, after = { "t" } } }), 1, true)
    assert.matches("start: ", refused({ t = { run = run } }, { start = "yesterday" }), 1, true)
  end)

  it("get their name from the file and their tasks in dependency order", function()
    local dag = assert(dagmod.load(FIX .. "basic.lua"))
    assert.equal("basic", dag.name)
    assert.same({ "extract", "features", "stats", "train" }, dag.order)
    assert.same({ extract = true, features = true, stats = true }, dag:ancestors("train"))
    assert.same({ features = true, stats = true, train = true }, dag:descendants("extract"))
    assert.equal("2026-01-05", dag:label(at("2026-01-05T03:00:00Z")))
  end)
end)

describe("tycho dag", function()
  local home
  before_each(function() home = testing.tmpdir() end)
  after_each(function() testing.rmrf(home) end)

  local function tycho(...) return testing.run({ "--home", home, ... }, { timeout = 20000 }) end

  local function history(name)
    local st = assert(require("tycho.store").open(home))
    local runs = hist.history(name, { store = st, limit = 100 })
    local rec, _, lock = hist.state(st, name)
    st:close()
    return runs, rec, lock
  end

  local function tasks_of(run)
    local out = {}
    for _, t in ipairs(run.tasks) do out[t.task] = t end
    return out
  end

  local function states(run)
    local out = {}
    for _, t in ipairs(run.tasks) do out[t.task] = t.state end
    return out
  end

  local function leftover(pattern)
    local p = io.popen("pgrep -f '" .. pattern .. "' 2>/dev/null")
    local out = p:read("*a")
    p:close()
    return out ~= ""
  end
  -- A killed process is gone a moment after its signal, not at once (on a
  -- loaded machine, under ASan, pgrep could still see it): wait, bounded.
  local function gone(pattern)
    return testing.run_until(function() return not leftover(pattern) end, 5000)
  end

  it("runs tasks in dependency order and passes their outputs downstream", function()
    local code, out, err = tycho("dag", "run", FIX .. "basic.lua", "--date", "2026-01-05")
    assert.equal(0, code, err)
    assert.matches("basic 2026-01-05: success", out, 1, true)
    local runs = history("basic")
    assert.equal(1, #runs)
    local run = runs[1]
    assert.same({ "2026-01-05", "2026-01-05", "success", "manual" }, { run.run_id, run.date, run.status, run.trigger })
    assert.equal(at("2026-01-05T03:00:00Z"), run.ts)  -- the day's 03:00 slot
    local t = tasks_of(run)
    assert.same({ n = 80, stats = 41, rows = 40 }, t.train.output)
    assert.same({ rows = 40, date = "2026-01-05", ts = run.ts, run_id = "2026-01-05", dag = "basic", home = home },
      t.extract.output)
    local log = table.concat(t.extract.log, "\n")
    assert.matches("extracting for 2026-01-05", log, 1, true)
    assert.matches("printed by extract", log, 1, true)
    for _, task in ipairs(run.tasks) do assert.equal(1, task.attempts) end
    assert.is_true(t.extract.finished <= t.features.started and t.stats.finished <= t.train.started)
  end)

  it("does not run a logical date twice by accident, only with --rerun", function()
    assert.equal(0, (tycho("dag", "run", FIX .. "basic.lua", "--date", "2026-01-05")))
    local code, out = tycho("dag", "run", FIX .. "basic.lua", "--date", "2026-01-05")
    assert.equal(0, code)
    assert.matches("already succeeded (run 2026-01-05); --rerun runs it again", out, 1, true)
    assert.equal(1, #history("basic"))
    assert.equal(0, (tycho("dag", "run", FIX .. "basic.lua", "--date", "2026-01-05", "--rerun")))
    local runs = history("basic")
    assert.equal(2, #runs)
    assert.equal("2026-01-05#2", runs[1].run_id)
    assert.equal(1, tasks_of(runs[1]).extract.attempts)
  end)

  it("retries a failing task and records every attempt", function()
    local code, out, err = tycho("dag", "run", FIX .. "flaky.lua", "--date", "2026-02-01")
    assert.equal(0, code, out .. err)
    assert.matches("attempt 1 of 3 failed: .*transient failure 1; retry in 0.10s", out)
    local t = tasks_of(history("flaky")[1])
    assert.equal("success", t.flaky.state)
    assert.equal(3, t.flaky.attempts)
    local seen = {}
    for i, a in ipairs(t.flaky.history) do seen[i] = a.attempt .. ":" .. a.state end
    assert.same({ "1:failed", "2:failed", "3:success" }, seen)
    assert.matches("transient failure 2", t.flaky.history[2].error, 1, true)
    assert.equal(3, t.after_flaky.output)
    assert.is_true(t.flaky.history[2].started - t.flaky.history[1].started >= 0.1)
  end)

  it("kills a task that hangs past its timeout, with what it started, and fails after its retries", function()
    local started = hist.now()
    local code, out = tycho("dag", "run", FIX .. "hang.lua", "--date", "2026-02-01")
    assert.equal(1, code)
    assert.is_true(hist.now() - started < 5, "took " .. (hist.now() - started))
    assert.matches("hang 2026-02-01: failed", out, 1, true)
    local run = history("hang")[1]
    assert.equal("task hang timed out after 0.40s", run.reason)
    local t = tasks_of(run)
    assert.same({ "timed_out", 2, "upstream_failed" }, { t.hang.state, t.hang.attempts, t.after_hang.state })
    assert.equal("timed_out", t.hang.history[1].state)
    assert.matches("hanging on attempt 2", table.concat(t.hang.log, "\n"), 1, true)
    assert.is_true(gone("^sleep 30$"))
  end)

  it("skips the dependents of a failed task and says which task failed", function()
    local code = tycho("dag", "run", FIX .. "failing.lua", "--date", "2026-02-01")
    assert.equal(1, code)
    local run = history("failing")[1]
    assert.equal("failed", run.status)
    assert.matches("^task broken failed: .*failing.lua:%d+: the input table is empty$", run.reason)
    assert.same({ load = "success", broken = "failed", report = "upstream_failed", publish = "upstream_failed",
                  side = "success" }, states(run))
    local t = tasks_of(run)
    assert.equal("upstream task broken failed", t.publish.error)
    assert.equal(0, t.report.attempts)
    local _, out = tycho("dag", "status", FIX .. "failing.lua")
    assert.matches("reason: task broken failed", out, 1, true)
    assert.matches("report%s+upstream_failed%s+0", out)
    assert.matches("| .*the input table is empty", out)
    assert.matches("stack traceback", out, 1, true)
  end)

  it("records a task killed by a signal, or returning what JSON cannot hold, as failed", function()
    local file = testing.write(home .. "/crashy.lua", [[
      local tycho = require "tycho"
      return tycho.dag { name = "crashy", tasks = {
        killed = { run = function() os.execute("kill -KILL " .. require("luv").os_getpid()) end },
        unjson = { run = function() return { f = print } end },
        exits = { run = function() os.exit(3) end },
      } }]])
    assert.equal(1, (tycho("dag", "run", file, "--date", "2026-01-01")))
    local t = tasks_of(history("crashy")[1])
    assert.same({ "failed", "killed by signal 9" }, { t.killed.state, t.killed.error })
    assert.equal("failed", t.unjson.state)
    assert.matches("the task's return value is not JSON", t.unjson.error, 1, true)
    assert.equal("exited with code 3", t.exits.error)
  end)

  it("gives a failed date run again new attempts, keeping what succeeded", function()
    assert.equal(1, (tycho("dag", "run", FIX .. "failing.lua", "--date", "2026-02-01")))
    assert.equal(1, (tycho("dag", "run", FIX .. "failing.lua", "--date", "2026-02-01")))
    local runs = history("failing")
    assert.same({ "2026-02-01#2", "2026-02-01" }, { runs[1].run_id, runs[2].run_id })
    local t = tasks_of(runs[1])
    assert.equal("2026-02-01", t.load.carried)
    assert.equal(1, t.broken.attempts)
  end)

  it("backfills dates in order, stopping at a failed date unless --keep-going", function()
    local code, out = tycho("dag", "run", FIX .. "basic.lua", "--from", "2026-01-01", "--to", "2026-01-03")
    assert.equal(0, code)
    local a, b, c = out:find("2026-01-01: success", 1, true), out:find("2026-01-02: success", 1, true),
      out:find("2026-01-03: success", 1, true)
    assert.is_true(a < b and b < c)
    local runs = history("basic")
    assert.same({ "2026-01-03", "2026-01-02", "2026-01-01" }, { runs[1].date, runs[2].date, runs[3].date })
    assert.is_true(runs[3].finished <= runs[2].started and runs[2].finished <= runs[1].started)
    assert.equal("backfill", runs[1].trigger)
    -- Overlapping backfill: done dates are left alone.
    code, out = tycho("dag", "run", FIX .. "basic.lua", "--from", "2026-01-03", "--to", "2026-01-04")
    assert.equal(0, code)
    assert.matches("2026-01-03: already succeeded", out, 1, true)
    assert.equal(4, #history("basic"))

    assert.equal(1, (tycho("dag", "run", FIX .. "failing.lua", "--from", "2026-01-01", "--to", "2026-01-03")))
    assert.equal(1, #history("failing"))
    assert.equal(1, (tycho("dag", "run", FIX .. "failing.lua", "--from", "2026-01-02", "--to", "2026-01-03",
      "--keep-going")))
    assert.equal(3, #history("failing"))
  end)

  it("refuses a second runner of a DAG while one runs, naming its pid and run", function()
    local first = testing.spawn({ "--home", home, "dag", "run", FIX .. "slow.lua", "--date", "2026-03-01" },
      { env = { "DAG_SLEEP=30" } })
    local running = testing.run_until(function()
      local runs = history("slow")
      return runs[1] and tasks_of(runs[1]).slow.state == "running"
    end, 10000)
    assert.is_true(running, first.stderr())
    local code, _, err = tycho("dag", "run", FIX .. "slow.lua", "--date", "2026-03-02")
    assert.equal(1, code)
    assert.matches("dag slow is already running (pid " .. first.pid .. ", run 2026-03-01, since ", err, 1, true)
    -- The scheduler does not start it either.
    local sched = dagmod.scheduler({ FIX .. "slow.lua" }, { home = home })
    local args, why, due_code = sched:due(assert(dagmod.load(FIX .. "slow.lua")), at("2026-03-05T12:00:00Z"))
    assert.is_nil(args)
    assert.equal("running (pid " .. first.pid .. ")", why)
    assert.equal("busy", due_code)
    sched.st:close()
    -- SIGTERM: the run is interrupted, its task stopped, the lock released.
    first:kill("sigterm")
    assert.equal(1, (first:wait(10000)))
    local runs, _, lock = history("slow")
    assert.equal("interrupted", runs[1].status)
    assert.equal("stopped by SIGTERM", runs[1].reason)
    assert.equal("interrupted", tasks_of(runs[1]).slow.state)
    assert.is_nil(lock)
    assert.is_true(gone("^sleep 30$"))
  end)

  it("does not count an attempt stopped by the runner's shutdown against the retries", function()
    local env = { "DAG_SLEEP=30", "DAG_RETRIES=0" }
    local first = testing.spawn({ "--home", home, "dag", "run", FIX .. "slow.lua", "--date", "2026-03-07" }, { env = env })
    assert.is_true(testing.run_until(function()
      local runs = history("slow")
      return runs[1] and runs[1].run_id == "2026-03-07" and tasks_of(runs[1]).slow.state == "running"
    end, 10000), first.stderr())
    first:kill("sigterm")
    assert.equal(1, (first:wait(10000)))
    -- No retries, and the one attempt was stopped by us: the resumed run still gets one.
    local resumed = testing.spawn({ "--home", home, "dag", "run", FIX .. "slow.lua", "--date", "2026-03-07" },
      { env = { "DAG_RETRIES=0" } })
    assert.equal(0, (resumed:wait(20000)), resumed.stderr())
    local runs = history("slow")
    local t = tasks_of(runs[1])
    assert.same({ "2026-03-07", "success" }, { runs[1].run_id, runs[1].status })
    assert.same({ 2, 1 }, { t.slow.attempts, t.slow.stopped_attempts })
    assert.same({ "interrupted", "success" }, { t.slow.history[1].state, t.slow.history[2].state })
  end)

  it("takes over a dead runner's lock, marks its run interrupted and resumes it", function()
    local first = testing.spawn({ "--home", home, "dag", "run", FIX .. "slow.lua", "--date", "2026-03-01" },
      { env = { "DAG_SLEEP=30" } })
    assert.is_true(testing.run_until(function()
      local runs = history("slow")
      return runs[1] and tasks_of(runs[1]).slow.state == "running"
    end, 10000))
    first:kill("sigkill")
    first:wait(5000)
    local runs = history("slow")
    assert.equal("interrupted", runs[1].status)  -- as status shows it: the runner is gone
    local _, out = tycho("dag", "status", "slow")
    assert.matches("runner pid " .. first.pid .. " is gone", out, 1, true)
    local code, out2, err = tycho("dag", "run", FIX .. "slow.lua", "--date", "2026-03-01")
    assert.equal(0, code, err)
    assert.matches("run 2026-03-01 resumed, 1 of 2 tasks to run", out2, 1, true)
    runs = history("slow")
    assert.equal(1, #runs)
    assert.same({ "2026-03-01", "success", 1 }, { runs[1].run_id, runs[1].status, runs[1].resumes })
    local t = tasks_of(runs[1])
    assert.equal(1, t.quick.attempts)  -- succeeded before: not run again
    assert.equal(2, t.slow.attempts)   -- the interrupted attempt counts
    assert.same({ "interrupted", "success" }, { t.slow.history[1].state, t.slow.history[2].state })
    assert.equal("runner pid " .. first.pid .. " died", t.slow.history[1].error)
    assert.equal("qs", t.slow.output)
    assert.is_true(gone("^sleep 30$"))
  end)

  it("catches up after downtime with one run, or every missed slot with catchup = true", function()
    local function write_dag(name, catchup, start)
      return testing.write(home .. "/" .. name .. ".lua", string.format([[
        local tycho = require "tycho"
        return tycho.dag { name = %q, schedule = "0 3 * * *", catchup = %s, start = %s,
          tasks = { only = { run = function(ctx) return ctx.date end } } }]], name, tostring(catchup),
        start and string.format("%q", start) or "nil"))
    end
    local files = { once = write_dag("once", false), all = write_dag("all", true),
                    fresh = write_dag("fresh", true, "2026-01-02") }
    for _, name in ipairs { "once", "all" } do
      assert.equal(0, (tycho("dag", "run", files[name], "--date", "2026-01-01")))
    end
    local log = {}
    local sched = dagmod.scheduler({ files.once, files.all, files.fresh },
      { home = home, now = function() return at("2026-01-04T12:00:00Z") end,
        log = function(line) log[#log + 1] = line end })
    sched:tick()
    assert.is_true(testing.run_until(function() return not sched:busy() end, 20000), table.concat(log, "\n"))
    local function dates(name)
      local out = {}
      local runs = history(name)
      for i = #runs, 1, -1 do out[#out + 1] = runs[i].date .. ":" .. runs[i].status end
      return out, runs
    end
    assert.same({ "2026-01-01:success", "2026-01-04:success" }, dates("once"))
    local all, runs = dates("all")
    assert.same({ "2026-01-01:success", "2026-01-02:success", "2026-01-03:success", "2026-01-04:success" }, all)
    assert.equal("scheduled", runs[1].trigger)
    assert.is_true(runs[3].finished <= runs[2].started)
    assert.same({ "2026-01-02:success", "2026-01-03:success", "2026-01-04:success" }, dates("fresh"))
    -- Nothing more is due until the next slot.
    sched:tick()
    assert.is_false(sched:busy())
    assert.equal(nil, (sched:due(assert(dagmod.load(files.once)), at("2026-01-04T12:00:00Z"))))
    assert.same({ "--date", "2026-01-05" }, sched:due(assert(dagmod.load(files.once)), at("2026-01-05T03:00:00Z")))
    sched.st:close()
  end)

  it("lists DAGs and answers usage errors with exit 2", function()
    local code, out = tycho("dag", "list")
    assert.equal(0, code)
    assert.matches("no dag has run", out, 1, true)
    assert.equal(0, (tycho("dag", "run", FIX .. "flaky.lua", "--date", "2026-01-01", "--quiet")))
    code, out = tycho("dag", "list")
    assert.equal(0, code)
    assert.matches("flaky%s+@daily%s+2026%-01%-01%s+success", out)
    assert.matches("fixtures/dags/flaky.lua", out, 1, true)
    local function usage(...)
      local c, _, err = tycho("dag", ...)
      assert.equal(2, c, err)
      return err
    end
    assert.matches("run needs a DAG FILE", usage("run"))
    assert.matches("not both", usage("run", FIX .. "basic.lua", "--date", "2026-01-01", "--from", "2026-01-01"))
    assert.matches("needs both --from and --to", usage("run", FIX .. "basic.lua", "--from", "2026-01-01"), 1, true)
    assert.matches("unknown option '--dat'", usage("run", FIX .. "basic.lua", "--dat", "2026-01-01"), 1, true)
    assert.matches("unknown subcommand 'frobnicate'", usage("frobnicate"), 1, true)
    assert.matches("--limit needs a whole number", usage("status", "basic", "--limit", "0"), 1, true)
    local _, err
    code, _, err = tycho("dag", "run", FIX .. "basic.lua", "--date", "someday")
    assert.equal(1, code)
    assert.matches("--date: not an ISO-8601 time", err, 1, true)
    local slots, serr, scode = hist.slots(assert(dagmod.load(FIX .. "basic.lua")), { date = "someday" })
    assert.is_nil(slots)
    assert.matches("--date: not an ISO-8601 time", serr, 1, true)
    assert.equal("invalid", scode)
    assert.same({ nil, "no such date: '2026-02-30'", "invalid" }, { timeutil.parse("2026-02-30") })
    code, _, err = tycho("dag", "status", "nothing-here")
    assert.equal(1, code)
    assert.matches("no dag 'nothing-here'", err, 1, true)
  end)
end)
