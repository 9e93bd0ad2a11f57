--- Trainings started from the console: a record per job in the home's
-- `train_jobs` database, and the child process that does the work
-- (ml/train/child.lua).
--
--   local job, err, code = jobs.start(spec, { max = 2 })   -- spec: ml/train/spec.lua's check
--   jobs.get(job.id)  --> { id, status, stage, progress, spec, run, version, metrics, error, log = {lines} }
--   jobs.list { limit = 20 }
--
-- A job is queued, then running (its child took it), then succeeded or
-- failed; one whose process is gone reads as interrupted. At most opts.max
-- jobs are queued or running at once, counted inside the write that adds
-- the next, so two servers on one home cannot both pass the bound. The
-- child is `tycho --home HOME run HOME/train/child.lua ID`: the script is
-- the same for every job (it calls the module) and the spec comes from the
-- record, so no request text ever becomes Lua source. Its output goes to
-- HOME/train/ID.log; readers get the log's tail with the record.
local uv = require "luv"
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"
local timeutil = require "tycho.util.timeutil"
local internal = require "tycho.internal"
local store_mod = require "tycho.core.store"
local hist = require "tycho.dag.history"

local M = {}
local DB = "train_jobs"
local LOG_LINES, LOG_BYTES, MAX_LIST = 40, 16384, 200
-- (The module named apart: the child runs it, this module does not need it.)
local CHILD_MODULE = "tycho.ml.train.child"
local CHILD = 'require("' .. CHILD_MODULE .. '").main(...)\n'
-- A queued job whose child has not been seen yet counts as live this long.
local STARTING = 60
local counter = 0

local function open(opts)
  local st, err = store_mod.from(opts)
  if not st then return errors.fail("unavailable", err) end
  return st
end

local function dir_of(st) return st.path .. "/train" end
local function log_path(st, id) return dir_of(st) .. "/" .. id .. ".log" end

-- Whether a job holds one of the slots: queued or running, with a process.
local function live(job, now)
  if job.status == "running" then return hist.alive(job.pid, job.pstart) end
  if job.status == "queued" then
    if job.pid then return hist.alive(job.pid) end
    return now - (job.created or 0) < STARTING
  end
  return false
end

-- The last lines of a job's output.
local function log_tail(st, id)
  local f = io.open(log_path(st, id), "rb")
  if not f then return json.empty_array end
  local size = f:seek("end")
  f:seek("set", math.max(0, size - LOG_BYTES))
  local text = f:read("*a") or ""
  f:close()
  local lines = {}
  for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line:gsub("\r", "") end
  if size > LOG_BYTES then table.remove(lines, 1) end  -- cut mid-line
  while #lines > LOG_LINES do table.remove(lines, 1) end
  return #lines > 0 and lines or json.empty_array
end

-- A record as readers see it: a job whose process is gone is interrupted.
local function shown(job, now)
  if (job.status == "running" or job.status == "queued") and not live(job, now) then
    job.status, job.error = "interrupted", job.error or "its process is gone"
  end
  job.pstart = nil
  return job
end

--- One job with the tail of its output, or nil, message, "not_found".
-- opts: store or home.
function M.get(id, opts)
  local st, err, code = open(opts)
  if not st then return nil, err, code end
  -- (the id names the log file too: only ids this module makes)
  local job = type(id) == "string" and id:match("^%d+%-%d+%-%d+$") and #id <= 64
    and st:view(function(tx) return tx:get_json(DB, id) end)
  if not job then return errors.fail("not_found", "no training job '" .. tostring(id) .. "'") end
  job = shown(job, hist.now())
  job.log = log_tail(st, id)
  return job
end

--- The newest jobs first: opts.limit (1..200, default 50), store or home.
-- Returns a list (no log tails), or nil, message, code.
function M.list(opts)
  opts = opts or {}
  local limit = opts.limit or 50
  if type(limit) ~= "number" or limit < 1 or limit > MAX_LIST or limit % 1 ~= 0 then
    return errors.fail("invalid", "limit must be an integer from 1 to " .. MAX_LIST)
  end
  local st, err, code = open(opts)
  if not st then return nil, err, code end
  local now = hist.now()
  return st:view(function(tx)
    local out = {}
    for _, v in tx:scan(DB, { reverse = true, limit = limit }) do
      local job = json.decode(v)
      if job then out[#out + 1] = shown(job, now) end
    end
    return out
  end)
end

--- Changes fields of a job's record (patch: field -> value; json.null
-- removes one). For the child and the server that started it.
function M.update(id, patch, opts)
  local st, err, code = open(opts)
  if not st then return nil, err, code end
  return st:update(function(tx)
    local job = tx:get_json(DB, id)
    if not job then return errors.fail("not_found", "no training job '" .. tostring(id) .. "'") end
    for k, v in pairs(patch) do
      if v == json.null then job[k] = nil else job[k] = v end
    end
    tx:put_json(DB, id, job)
    return job
  end)
end

-- Adds a queued job unless max are live: its id, or nil, message, "busy".
local function enqueue(st, spec, max)
  counter = counter + 1
  local id = string.format("%d-%d-%d", timeutil.now(), uv.os_getpid(), counter)
  local now = hist.now()
  return st:update(function(tx)
    local n = 0
    for _, v in tx:scan(DB) do
      local job = json.decode(v)
      if job and live(job, now) then n = n + 1 end
    end
    if n >= max then
      return errors.fail("busy", string.format("%d trainings are running, the most this server allows at once", n))
    end
    tx:put_json(DB, id, { id = id, status = "queued", stage = "starting", spec = spec, created = now })
    return id
  end)
end

-- The child script (the same text for every job), written when missing:
-- its path, or nil, message, "unavailable".
local function child_script(st)
  local path = dir_of(st) .. "/child.lua"
  local f = io.open(path, "rb")
  local text = f and f:read("*a")
  if f then f:close() end
  if text ~= CHILD then
    local out, err = io.open(path, "wb")
    if not out then return errors.fail("unavailable", "cannot write the training script: " .. tostring(err)) end
    out:write(CHILD)
    out:close()
  end
  return path
end

-- A job whose child ended without saying how it went failed with this.
local function on_exit(st, id, code, signal)
  local job = st:view(function(tx) return tx:get_json(DB, id) end)
  if not job or (job.status ~= "queued" and job.status ~= "running") then return end
  local why = signal and signal ~= 0 and ("the training process was killed by signal " .. signal)
    or ("the training process exited with code " .. tostring(code))
  M.update(id, { status = "failed", error = why, finished = hist.now() }, { store = st })
end

local function spawn(st, id)
  local script, serr, scode = child_script(st)
  if not script then return nil, serr, scode end
  local fd, ferr = uv.fs_open(log_path(st, id), "w", 384)  -- 0600: the output may name data
  if not fd then return errors.fail("unavailable", "cannot write the training log: " .. tostring(ferr)) end
  local handle, pid
  handle, pid = uv.spawn(internal.exe, { args = { "--home", st.path, "run", script, id },
                                         stdio = { nil, fd, fd }, detached = true }, function(code, signal)
    on_exit(st, id, code, signal)
    if handle and not handle:is_closing() then handle:close() end
  end)
  uv.fs_close(fd)
  if not handle then return errors.fail("unavailable", "cannot start the training process: " .. tostring(pid)) end
  handle:unref()  -- a server stops without waiting for its trainings
  return pid
end

--- Starts a training of spec (checked by ml/train/spec.lua) as a child
-- process. opts: max (jobs queued or running at once, default 2), store or
-- home. Returns { id, status = "queued", pid }, or nil, message, "busy"
-- (max reached) | "unavailable".
function M.start(spec, opts)
  opts = opts or {}
  local st, err, code = open(opts)
  if not st then return nil, err, code end
  uv.fs_mkdir(dir_of(st), 448)  -- 0700; it may exist
  local id, qerr, qcode = enqueue(st, spec, opts.max or 2)
  if not id then return nil, qerr, qcode end
  local pid, serr, scode = spawn(st, id)
  if not pid then
    M.update(id, { status = "failed", error = serr, finished = hist.now() }, { store = st })
    return nil, serr, scode
  end
  M.update(id, { pid = pid }, { store = st })
  return { id = id, status = "queued", pid = pid }
end

return M
