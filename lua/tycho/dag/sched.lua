--- The DAG scheduler of `tycho serve`: a once-a-second check, on the
-- worker's own loop, that starts due runs as child processes
-- (`tycho dag run FILE --date D --scheduled`), so a task that crashes or
-- hangs never touches the serving workers.
--
--   local sched = tycho.dag.scheduler({ "dags/retrain.lua" }, { base = app_dir })
--   sched:start()
--
-- Which runs start:
-- * Nothing while a run of the DAG is going (this scheduler's child, or any
--   live runner holding the DAG's lock: another server, a manual run).
-- * The latest due slot (the latest at or before now, not before `start`)
--   when it has no run yet; an interrupted run of it is resumed; a slot
--   that succeeded or failed is left alone.
-- * Catch-up after downtime: the slots missed since the last one that ran
--   are skipped, only the latest runs; with catchup = true every missed
--   slot runs, in order (at most opts.max_catchup, default 1000, the
--   latest). A DAG without history runs its latest due slot, or with
--   catchup and `start` every slot since start.
-- DAG files are reloaded when they change; a file that fails to load is
-- reported once per change and skipped. Children's output goes to the log
-- (default stderr), one line at a time, prefixed with the DAG's name.
local uv = require "luv"
local internal = require "tycho.internal"
local dagmod = require "tycho.dag.define"
local hist = require "tycho.dag.history"
local errors = require "tycho.util.errors"

local M = {}
local Scheduler = {}
Scheduler.__index = Scheduler

local function resolve(path, base)
  if path:sub(1, 1) == "/" or not base then return path end
  return base .. "/" .. path
end

--- A scheduler for DAG files (paths, or {path = ...} entries). opts: base
-- (directory of relative paths), home, store (the home, opened; else opened
-- at the first tick), interval (ms, default 1000), now
-- (function returning epoch seconds), log (function(line)), max_catchup.
function M.new(paths, opts)
  opts = opts or {}
  if type(paths) == "string" then paths = { paths } end
  if type(paths) ~= "table" then error("dag.scheduler: expected a list of DAG files", 2) end
  local self = setmetatable({
    entries = {}, interval = opts.interval or 1000, home = opts.home or internal.home, now = opts.now or hist.now,
    log = opts.log or function(line) io.stderr:write(line, "\n") end, max_catchup = opts.max_catchup or 1000,
    children = {}, st = opts.store,
  }, Scheduler)
  for _, p in ipairs(paths) do
    local path = type(p) == "table" and p.path or p
    if type(path) ~= "string" then error("dag.scheduler: a DAG file path must be a string", 2) end
    self.entries[#self.entries + 1] = { path = resolve(path, opts.base) }
  end
  return self
end

--- Loads every DAG file once: true, or nil, the first error and its code
-- (for a server that should refuse to start with a broken DAG).
function M.check(paths, opts)
  for _, e in ipairs(M.new(paths, opts).entries) do
    local dag, err, code = dagmod.load(e.path)
    if not dag then return nil, err, code end
  end
  return true
end

local function mtime(path)
  local st = uv.fs_stat(path)
  return st and (st.mtime.sec + st.mtime.nsec / 1e9) or nil
end

-- The entry's DAG, reloaded when its file changed; nil when it fails.
local function load(self, e)
  local m = mtime(e.path) or -1
  if e.dag and e.mtime == m then return e.dag end
  if e.failed == m then return nil end
  local dag, err = dagmod.load(e.path)
  e.mtime = m
  if not dag then
    e.failed, e.dag = m, nil
    self.log("tycho dag: " .. e.path .. ": " .. tostring(err))
    return nil
  end
  if not dag.schedule then self.log("tycho dag: " .. e.path .. ": dag " .. dag.name .. " has no schedule; not scheduled") end
  e.failed, e.dag = nil, dag
  return dag
end

local function store(self)
  if not self.st then self.st = assert(require("tycho.core.store").open(self.home)) end
  return self.st
end

--- What `dag run` arguments a DAG needs at epoch second now (e.g. {"--date",
-- "2026-01-05"}), or nil, why nothing is due and a code (invalid: no
-- schedule; unavailable: no slot yet; busy: a run is going; conflict: the
-- slot has run).
function Scheduler:due(dag, now)
  local s = dag.schedule
  if not s then return errors.fail("invalid", "no schedule") end
  local latest = s:prev(now)
  if not latest or (dag.start and latest < dag.start) then return errors.fail("unavailable", "no slot due yet") end
  local label = dag:label(latest)
  local rec, run, lock = hist.state(store(self), dag.name, label)
  if lock and hist.alive(lock.pid, lock.pstart) then return errors.fail("busy", "running (pid " .. lock.pid .. ")") end
  if run then
    if run.status == "success" or run.status == "failed" then return errors.fail("conflict", label .. " " .. run.status) end
    return { "--date", label }
  end
  if not dag.catchup then return { "--date", label } end
  local from
  if rec and rec.last_ts then from = s:next(rec.last_ts)
  elseif dag.start then from = s:next(dag.start - 1) end
  if not from or from >= latest then return { "--date", label } end
  local first, n = latest, 1
  while n < self.max_catchup do
    local p = s:prev(first - 1)
    if not p or p < from then break end
    first, n = p, n + 1
  end
  if first > from then
    self.log(string.format("tycho dag: %s: catching up only the latest %d slots, from %s", dag.name, n, dag:label(first)))
  end
  return { "--from", dag:label(first), "--to", label, "--keep-going" }
end

local function forward_lines(self, name, pipe, child)
  local partial = ""
  pipe:read_start(function(_, data)
    if data then
      partial = partial .. data
      for line in partial:gmatch("([^\n]*)\n") do self.log("[dag " .. name .. "] " .. line) end
      partial = partial:match("[^\n]*$")
      return
    end
    if partial ~= "" then self.log("[dag " .. name .. "] " .. partial) end
    pipe:close()
    child.open = child.open - 1
    if child.open == 0 and child.code then child.done() end
  end)
end

local function spawn(self, e, dag, args)
  local full = { "--home", self.home, "dag", "run", dag.file }
  for _, a in ipairs(args) do full[#full + 1] = a end
  full[#full + 1] = "--scheduled"
  local stdin, stdout, stderr = uv.new_pipe(false), uv.new_pipe(false), uv.new_pipe(false)
  local child = { open = 2, args = args }
  function child.done()
    if child.handle and not child.handle:is_closing() then child.handle:close() end
    self.children[child] = nil
    e.child = nil
    if child.code ~= 0 then
      self.log(string.format("tycho dag: %s: scheduled run (%s) exited with %s", dag.name, table.concat(args, " "),
        child.signal ~= 0 and ("signal " .. child.signal) or ("code " .. child.code)))
    end
  end
  local handle, pid = uv.spawn(internal.exe, { args = full, stdio = { stdin, stdout, stderr } }, function(code, signal)
    child.code, child.signal = code, signal
    if child.open == 0 then child.done() end
  end)
  stdin:close()
  if not handle then
    stdout:close()
    stderr:close()
    self.log("tycho dag: " .. dag.name .. ": cannot start a run: " .. tostring(pid))
    return
  end
  child.handle, child.pid = handle, pid
  e.child = child
  self.children[child] = true
  forward_lines(self, dag.name, stdout, child)
  forward_lines(self, dag.name, stderr, child)
end

--- One check of every DAG at epoch second now (default: the clock).
function Scheduler:tick(now)
  if self.stopped then return end
  now = now or self.now()
  for _, e in ipairs(self.entries) do
    if not e.child then
      local ok, err = pcall(function()
        local dag = load(self, e)
        if not dag then return end
        local args = self:due(dag, now)
        if args then spawn(self, e, dag, args) end
      end)
      if not ok then self.log("tycho dag: " .. e.path .. ": " .. tostring(err)) end
    end
  end
end

--- True while a run this scheduler started is going.
function Scheduler:busy() return next(self.children) ~= nil end

--- Checks every interval on the loop. The timer never keeps a draining
-- worker alive; on SIGTERM / SIGINT the runs in progress are asked to stop
-- (they mark their runs interrupted) and the worker waits for them.
function Scheduler:start()
  if self.timer then return self end
  self.timer = uv.new_timer()
  self.timer:start(0, self.interval, function() self:tick() end)
  self.timer:unref()
  self.signals = {}
  for _, sig in ipairs { "sigterm", "sigint" } do
    local h = uv.new_signal()
    h:start(sig, function() self:stop() end)
    h:unref()
    self.signals[#self.signals + 1] = h
  end
  return self
end

--- Stops checking and sends SIGTERM to the runs in progress.
function Scheduler:stop()
  self.stopped = true
  if self.timer and not self.timer:is_closing() then self.timer:close() end
  for _, h in ipairs(self.signals or {}) do
    if not h:is_closing() then h:close() end
  end
  for child in pairs(self.children) do
    if child.code == nil then uv.process_kill(child.handle, "sigterm") end
  end
end

return M
