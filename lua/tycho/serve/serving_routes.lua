--- The console's serving page: what each worker hosts, and the traffic of
-- every version it serves.
--
--   GET /v1/serving                    the workers (alive or not seen for a
--                                      while), each hosted model's slots:
--                                      main, canary (percent), shadow,
--                                      experiment variants (weight), with the
--                                      alias followed and the version loaded
--   GET /v1/serving/{model}?window=1h&buckets=60
--                                      per version and role: req/s, errors and
--                                      p50 / p99 latency per slice of the
--                                      window, from the prediction log
--
-- Workers are separate processes behind one port, so none can answer for
-- the others: each writes its own state to the home's `workers` database
-- (M.start) when it changes and every 30 s, keyed by port and worker
-- index, and the route reads them all. A worker whose state is older than
-- 90 s is reported gone (stopped, or killed and not restarted).
local uv = require "luv"
local experiments = require "tycho.experiments"
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local monitor = require "tycho.monitor"
local query = require "tycho.serve.query"
local timeutil = require "tycho.util.timeutil"

local M = {}

local DB = "workers"
local BEAT_US = 30e6
local STALE_SECONDS = 90
-- Records read by one answer: a home's (port, worker) pairs, which only a
-- change of port or of worker count adds to.
local MAX_WORKERS = 256

local function store(app, http)
  if app.home then return app.home end
  local st, err = require("tycho.core.store").open()
  if not st then http.error(503, "store_unavailable", err) end
  return st
end

-- A hosted model's slots as the page shows them: what each follows, the
-- version it has loaded (or why not), and what it takes of the traffic.
local function slots_of(h)
  local out = {}
  local function add(slot, model, alias, extra)
    local live = h.live[slot]
    local s = { slot = slot, model = model, alias = alias, version = live and live.version or json.null,
                error = h.errors[slot] }
    for k, v in pairs(extra or {}) do s[k] = v end
    out[#out + 1] = s
  end
  add("main", h.name, h.alias)
  if h.canary then add("canary", h.name, h.canary.alias, { percent = h.canary.percent or 0 }) end
  if h.shadow then add("shadow", h.name, h.shadow.alias) end
  for _, v in ipairs(h.experiment and h.experiment.variants or {}) do
    local model, alias = experiments.parse_model_ref(v.model)
    add("variant:" .. v.name, model, alias, { weight = v.weight })
  end
  return out
end

-- What this worker hosts, and a signature of it that changes when a slot
-- loads another version or fails.
local function hosted_state(app)
  local models, sig = {}, {}
  for name, h in pairs(app.hosted) do
    local slots = slots_of(h)
    models[#models + 1] = { name = name, ready = h:ready(), experiment = h.experiment and h.experiment.name or nil,
                            slots = slots }
    for _, s in ipairs(slots) do sig[#sig + 1] = table.concat({ name, s.slot, tostring(s.version), s.error or "" }, "\0") end
  end
  table.sort(models, function(a, b) return a.name < b.name end)
  table.sort(sig)
  return models, table.concat(sig, "\1")
end

--- Publishes this worker's hosted models and slots to the home (opts: the
-- worker's, port and worker index) at once, whenever they change (checked
-- every second) and every 30 s, in the prediction log's group commit.
function M.start(app, opts)
  if not app.commit_log or not next(app.hosted) then return end
  local key = keys.pack("u32 u32", opts.port or 0, opts.worker or 0)
  local started = timeutil.format(timeutil.now())
  local last_sig, last_at, failed = nil, 0, false
  local function beat()
    local models, sig = hosted_state(app)
    local now = timeutil.now()
    if sig == last_sig and now - last_at < BEAT_US then return end
    last_sig, last_at = sig, now
    local body = json.encode { port = opts.port, worker = opts.worker, pid = uv.os_getpid(), started_at = started,
                               seen_at = now, models = models }
    app.commit_log(function(tx) tx:put(DB, key, body) end, function(ok, err)
      -- Once per outage: the home refusing writes is reported by the log too.
      if not ok and not failed then io.stderr:write("tycho serve: worker state: ", tostring(err), "\n") end
      failed = not ok
    end)
  end
  beat()
  local timer = uv.new_timer()
  timer:start(1000, 1000, beat)
  timer:unref()
end

local function by_liveness(a, b)
  if a.alive ~= b.alive then return a.alive end
  if a.port ~= b.port then return (a.port or 0) < (b.port or 0) end
  return (a.worker or 0) < (b.worker or 0)
end

--- Every worker's last state in the home's store st, alive first: { port,
-- worker, pid, started_at, seen_at, seen_seconds_ago, alive, models = { {
-- name, ready, experiment, slots } } } (also what the features page's
-- lineage reads: which versions are served where).
function M.workers(st)
  local now = timeutil.now()
  local workers = {}
  st:view(function(tx)
    for _, raw in tx:scan(DB, { limit = MAX_WORKERS }) do
      local ok, w = pcall(json.decode, raw)
      if ok and type(w) == "table" and tonumber(w.seen_at) then
        local age = (now - w.seen_at) / 1e6
        w.seen_at, w.seen_seconds_ago, w.alive = timeutil.format(w.seen_at), math.max(0, age), age < STALE_SECONDS
        w.models = type(w.models) == "table" and w.models or {}
        if #w.models == 0 then w.models = json.empty_array end
        workers[#workers + 1] = w
      end
    end
  end)
  table.sort(workers, by_liveness)
  return workers
end

-- Every worker's last state, alive first, and the models any of them (or
-- this app) hosts.
local function serving(app, http)
  local workers, names = M.workers(store(app, http)), {}
  for name in pairs(app.hosted) do names[name] = true end
  for _, w in ipairs(workers) do
    for _, m in ipairs(w.models) do names[m.name] = true end
  end
  local models = {}
  for name in pairs(names) do models[#models + 1] = name end
  table.sort(models)
  return { workers = #workers > 0 and workers or json.empty_array, models = #models > 0 and models or json.empty_array,
           stale_seconds = STALE_SECONDS }
end

-- One version's figures over `seconds` and per slice of `width` seconds.
local function version_traffic(v, seconds, width)
  local sr = v.series
  local req_s = {}
  for b, n in ipairs(sr.volume) do req_s[b] = n / width end
  return { version = v.version, role = v.role, volume = v.volume, errors = v.errors, req_s = v.volume / seconds,
           latency_ms = v.latency_ms, series = { req_s = req_s, errors = sr.errors, p50_ms = sr.p50_ms, p99_ms = sr.p99_ms } }
end

-- A model's traffic per version and role, from the prediction log's
-- rollups through monitor.summary (no entry read: drift is not shown here).
local function traffic(app, http, req)
  local _, window = query.window(http, req.query, "window", "1h", 90)
  local buckets = query.buckets(http, req.query)
  if app.flush_log then app.flush_log() end
  local ok, s = pcall(monitor.summary, req.params.model, { window = window, buckets = buckets, max_records = 0,
    store = store(app, http) })
  if not ok then http.error(500, "internal", tostring(s)) end
  local versions, seconds = {}, s.bucket_seconds * #s.t  -- the whole periods read
  for i, v in ipairs(s.versions) do versions[i] = version_traffic(v, seconds, s.bucket_seconds) end
  return { model = s.model, window = s.window, from = s.from, to = s.to, bucket_seconds = s.bucket_seconds, t = s.t,
           versions = #versions > 0 and versions or json.empty_array }
end

--- Adds the serving page's routes to app (http: the router module).
function M.add(app, http)
  app:get("/v1/serving", function() return serving(app, http) end)
  app:get("/v1/serving/{model}", function(req) return traffic(app, http, req) end)
end

return M
