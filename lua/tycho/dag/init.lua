--- tycho.dag: DAGs of tasks with dependencies, retries, timeouts and a cron
-- schedule. `tycho.dag { ... }` defines one (dag/define.lua tells the
-- fields); the rest of the subsystem sits beside it: running one (run.lua),
-- its history and lock (history.lua), the scheduler of `tycho serve`
-- (sched.lua), the command line (cli.lua) and cron expressions (cron.lua).
local define = require "tycho.dag.define"
local run = require "tycho.dag.run"
local history = require "tycho.dag.history"
local sched = require "tycho.dag.sched"
local cli = require "tycho.dag.cli"

local M = { new = define.new, is_dag = define.is_dag, load = define.load }

--- Runs a DAG file (or loaded DAG) for logical dates: see dag/run.lua.
function M.run(dag, opts) return run.run(dag, opts) end

--- Recent runs of a DAG (name or loaded DAG), newest logical date first.
function M.history(dag, opts) return history.history(dag, opts) end

--- A scheduler for `tycho serve`: see dag/sched.lua.
function M.scheduler(paths, opts) return sched.new(paths, opts) end

--- `tycho dag ...` (the command line): see dag/cli.lua.
function M.cli(...) return cli.main(...) end

-- Calling it defines a DAG, with errors pointing at the caller's line.
return setmetatable(M, { __call = getmetatable(define).__call })
