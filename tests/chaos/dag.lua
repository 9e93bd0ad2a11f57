-- Chaos fixture: a small DAG whose tasks leave marker lines and take a
-- little time; tests/chaos/run.sh kills its runner with SIGKILL mid-run and
-- runs it again.
--
--   prepare -> (left, right) -> join -> publish
--
-- Each attempt appends "start TASK ATTEMPT PID" to $CHAOS_MARKS/TASK.log,
-- sleeps CHAOS_TASK_MS (250 ms), appends "done TASK ATTEMPT PID" and returns.
-- retries = 1: an attempt that was running when its runner died counts
-- against the task's retries (dagrun.lua), so the resumed run needs one more.
local tycho = require "tycho"
local uv = require "luv"

local function mark(name, what, ctx)
  local dir = assert(os.getenv("CHAOS_MARKS"), "CHAOS_MARKS is not set")
  local f = assert(io.open(dir .. "/" .. name .. ".log", "a"))
  f:write(string.format("%s %s %d %d\n", what, name, ctx.attempt, uv.os_getpid()))
  f:close()
end

local function task(name, after)
  return { after = after, retries = 1, retry_delay = "0s", run = function(ctx)
    mark(name, "start", ctx)
    uv.sleep(tonumber(os.getenv("CHAOS_TASK_MS") or "250"))
    mark(name, "done", ctx)
    return { task = name, attempt = ctx.attempt }
  end }
end

return tycho.dag {
  name = "chaos", schedule = "@daily",
  tasks = {
    prepare = task("prepare"),
    left = task("left", { "prepare" }),
    right = task("right", { "prepare" }),
    join = task("join", { "left", "right" }),
    publish = task("publish", { "join" }),
  },
}
