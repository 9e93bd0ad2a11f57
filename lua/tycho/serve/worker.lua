--- A serving worker's composition root: `tycho serve` (core/runtime/serve.c)
-- calls check_app once in the master, then worker() in each forked worker.
-- The worker opens the home once and hands it to what writes it (the
-- prediction log, the experiment watchers, the DAG scheduler); the app
-- itself (routes, hosted models, experiments) comes from serve/http.lua.
local uv = require "luv"
local internal = require "tycho.internal"
local store_mod = require "tycho.core.store"
local timeutil = require "tycho.util.timeutil"
local http = require "tycho.serve.http"
local suspend = require "tycho.core.suspend"
local log = require "tycho.serve.log"
local log_stream = require "tycho.monitor.log_stream"
local serving_routes = require "tycho.serve.serving_routes"
local watch = require "tycho.serve.watch"
local follow = require "tycho.serve.follow"
local catalog_follow = require "tycho.serve.catalog_follow"
local registry_shared = require "tycho.registry.shared"
local consume = require "tycho.serve.consume"
local dag = require "tycho.dag"

local M = {}

local function read_token(path)
  if not path or path == "" then return nil end
  local f, err = io.open(path)
  if not f then error("cannot read token file: " .. err, 0) end
  local token = f:read("*a"):match("^%s*(.-)%s*$")
  f:close()
  if token == "" then error("token file " .. path .. " is empty", 0) end
  return token
end

-- `tycho serve --model A --model B@staging` arrives as
-- "tycho:models=A,B@staging": an app that hosts those registered models.
local function models_app(list)
  local app = http.app()
  for ref in list:gmatch("[^,]+") do
    local name, alias = ref:match("^([^@]+)@?(.*)$")
    if not name then error("--model " .. ref .. ": expected NAME[@ALIAS]", 0) end
    app:model(name, { alias = alias ~= "" and alias or "production" })
  end
  return app
end

local function load_app(path)
  if path == "tycho:ui" then return http.app() end  -- `tycho ui`: the built-in routes and the console
  local list = path:match("^tycho:models=(.*)$")
  if list then return models_app(list) end
  local chunk, err = loadfile(path)
  if not chunk then error(err, 0) end
  local app = chunk()
  if not http.is_app(app) then
    error(path .. " must return an app (return tycho.app() with routes), got " .. type(app), 0)
  end
  return app
end

--- Called by the serve master before forking: fails early on a broken app
-- or token file.
function M.check_app(path, token_file, log_retention)
  load_app(path)
  read_token(token_file)
  if log_retention and log_retention ~= "" then timeutil.duration(log_retention) end
  return 0
end

--- One serving worker: loads the app and serves until SIGTERM drains it.
function M.worker(opts)
  -- Serving reads and writes the home at random: no readahead (store.lua).
  store_mod.defaults.random_access = true
  local app = load_app(opts.app)
  local home = assert(store_mod.open())
  app.home = home  -- what the built-in routes read and write (the registry's)
  local cluster = os.getenv("TYCHO_CLUSTER")
  if cluster and cluster ~= "" then
    -- Reads of the cluster's online store wait without holding the worker.
    suspend.enabled = os.getenv("TYCHO_SUSPEND") ~= "0"
    catalog_follow.start(home)  -- the cluster's feature catalog, copied in
    registry_shared.follow(home, cluster)  -- and its registry
  end
  local token = read_token(opts.token_file)
  opts.on_listen = nil
  if opts.access_log then
    -- One JSON line per request; line-buffered so workers' lines interleave whole.
    local f = opts.access_log == "-" and io.stderr or io.open(opts.access_log, "a")
    if not f then error("cannot open access log " .. opts.access_log, 0) end
    f:setvbuf("line")
    app.access_log = f
  end
  if next(app.experiments) then watch.start(app, home) end
  if next(app.hosted) or next(app.experiments) then
    local log_opts = app.opts.prediction_log or {}
    app.log_retain = timeutil.duration(opts.log_retention or log_opts.retain or "7d")
    local hook, has_work = watch.on_flush(app)
    -- With a cluster, every flush and feedback also go to the node that keeps the offline store.
    app.log_shipper = cluster and cluster ~= "" and log_stream.shipper(cluster) or nil
    app.log, app.flush_log, app.commit_log = log.prediction_log {
      store = home, retain = opts.log_retention or log_opts.retain, sample_every = log_opts.sample_every,
      interval_ms = log_opts.interval_ms, group_ms = log_opts.group_ms, group_max = log_opts.group_max,
      all_waiting = internal.http_all_waiting,
      on_flush = hook, has_work = has_work, ship = app.log_shipper and function(b) app.log_shipper:ship(b) end }
  end
  if opts.worker == 0 and #app.alerts > 0 then watch.start_alerts(app) end
  if next(app.hosted) then
    -- With a cluster, the aliases moved on other homes too (serve/follow.lua).
    if cluster and cluster ~= "" then follow.start(app, cluster) end
    -- Hosted models follow their aliases: checked every second, a moved
    -- alias loads the new version; one that fails keeps the old serving.
    for _, h in pairs(app.hosted) do h:refresh() end
    local timer = uv.new_timer()
    timer:start(1000, 1000, function()
      for _, h in pairs(app.hosted) do
        local ok, err = pcall(h.refresh, h)
        if not ok then io.stderr:write("tycho serve: refreshing ", h.name, ": ", tostring(err), "\n") end
      end
    end)
    timer:unref()
    serving_routes.start(app, opts)  -- what this worker hosts, for the console's serving page
  end
  if opts.worker == 0 and opts.offline_store then consume.start(app) end  -- the cluster's push streams, into home
  if opts.worker == 0 and #app.schedules > 0 then
    app.scheduler = dag.scheduler(app.schedules, { store = home }):start()
  end
  opts.direct = app:direct_routes(token)
  local ok, err = internal.http_serve(opts, app:handler(token))
  -- Drained: the predictions still buffered go to the log before the exit.
  if app.flush_log then app.flush_log() end
  if not ok then
    io.stderr:write("tycho serve: worker ", opts.worker, ": ", err, "\n")
    return false
  end
  return true
end

return M
