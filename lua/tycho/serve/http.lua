--- HTTP apps: routes with path parameters, JSON in and out, and the worker
-- glue behind `tycho serve`.
--
--   local app = tycho.app()
--   app:get("/hello/{name}", function(req) return { hello = req.params.name } end)
--   return app
--
-- A handler gets req (method, path, params, query, headers, body, peer,
-- req:json()) and returns one of:
--   table                       200, sent as JSON
--   status, table_or_string     JSON (table) or text (string) with that status
--   status, headers, body       as given (body: string, or table sent as JSON)
--   nothing                     204
-- http.error(status, code, message) (or a failing req:json()) answers with
-- the JSON error {"error": {"code", "message"}} of DESIGN.md.
--
-- A handler that must wait (feedback answered after its group commit) calls
-- req:defer(), returns, and later calls reply(fn, ...): fn(...) runs like a
-- handler and its result (or raised error) is the response.
--
-- With a cluster, each request runs in a coroutine of its own
-- (tycho.core.suspend): a read of the cluster's online store then waits
-- for its replies while the worker answers other requests, and the
-- request is answered when its handler returns.
local ffi = require "ffi"
local internal = require "tycho.internal"
local json = require "tycho.util.json"
local doc = require "tycho.util.doc"
local protocols = require "tycho.serve.protocols"
local cluster_health = require "tycho.serve.cluster_health"
local errors = require "tycho.util.errors"
local suspend = require "tycho.core.suspend"
local http_direct = require "tycho.core.http"
local online_answer_json  -- features/online's, loaded with the feature store (not at start-up)
local monotonic = require("tycho.core.base").monotonic
local observe  -- defined with the metrics below

local M = {}

local JSON_HEADERS = { ["Content-Type"] = "application/json" }
M.JSON_HEADERS = JSON_HEADERS  -- answers a handler writes as JSON text itself
local TEXT_HEADERS = { ["Content-Type"] = "text/plain; charset=utf-8" }
local HTTP_ERROR = {}  -- metatable marking errors raised by M.error

--- Raises an HTTP error that the app turns into a JSON error response.
function M.error(status, code, message)
  error(setmetatable({ status = status, code = code, message = message }, HTTP_ERROR), 2)
end

--- Raises the HTTP error for an expected failure (message, code from
-- tycho.util.errors): the one place a code becomes a status.
function M.fail(message, code)
  local status = errors.STATUS[code]
  error(setmetatable({ status = status or 400, code = status and code or "bad_request", message = message }, HTTP_ERROR), 2)
end

-- A message that came from a Lua error carries where it was raised
-- ("/checkout/lua/tycho/x.lua:574: "): the client gets the message, never
-- the server's file layout.
local function without_positions(message)
  if type(message) ~= "string" or not message:find(".lua:", 1, true) then return message end
  return (message:gsub("[^%s\"']*%.lua:%d+: ", ""))
end

-- A 503 says "not now": the client may ask again (a cluster node failing
-- over is back within seconds), and Retry-After says when.
local RETRY_HEADERS = { ["Content-Type"] = "application/json", ["Retry-After"] = "1" }

local function error_response(status, code, message)
  return status, status == 503 and RETRY_HEADERS or JSON_HEADERS,
    json.encode({ error = { code = code, message = without_positions(message) } })
end

local function hex_char(h) return string.char(tonumber(h, 16)) end

-- Percent-decoding. No closure here: creating one per call (every path
-- parameter of every request) stopped LuaJIT's trace.
local function unescape(s)
  if not s:find("%", 1, true) then return s end
  return (s:gsub("%%(%x%x)", hex_char))
end

local function parse_query(qs)
  local q = {}
  if qs == "" then return q end  -- no loop to leave at once (most requests)
  for pair in qs:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = unescape(k:gsub("+", " "))
    q[k] = unescape(v:gsub("+", " "))
  end
  return q
end

local Request = {}
Request.__index = Request

--- The body decoded as JSON; a 400 error response when it is not JSON.
function Request:json()
  if self._json == nil then
    local v, err = json.decode(self.body)
    if v == nil then M.error(400, "bad_json", err or "empty body") end
    self._json = v
  end
  return self._json
end

--- Answers this request later: returns reply(fn, ...), to be called once.
-- What the handler itself returns is then ignored (an error it raises is
-- still answered at once).
function Request:defer()
  self._token = self._token or internal.http_defer()
  self._deferred = true
  return function(fn, ...) self._reply(self, internal.xpcall(fn, ...)) end
end

-- Route patterns: "/v1/models/{name}:predict" -> Lua pattern and names.
local function compile_route(path)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    error("route path must be a string starting with '/'", 3)
  end
  local names, pattern, pos = {}, { "^" }, 1
  while true do
    local s, e, name = path:find("{([%a_][%w_]*)}", pos)
    local literal = path:sub(pos, (s or 0) - 1)
    pattern[#pattern + 1] = literal:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
    if not s then break end
    names[#names + 1] = name
    pattern[#pattern + 1] = "([^/]+)"
    pos = e + 1
  end
  pattern[#pattern + 1] = "$"
  return table.concat(pattern), names
end

local App = {}
App.__index = App

--- The feature store of the app's home (the worker's handle, app.home),
-- opened on first use (after fork) and kept with the app; 503 when the
-- home cannot be opened.
function M.feature_store(app)
  if app.feature_store then return app.feature_store end
  local fs, err = require("tycho.features").open({ store = app.home })
  if not fs then M.error(503, "store_unavailable", err) end
  app.feature_store = fs
  return fs
end

--- Bounds on one request's work, so that it stays small next to the
-- other requests on its worker (a predict of a million instances held one
-- for 47 s): `items` bounds instances per predict, entity keys per online
-- read, rows per push and entries per feedback or events request;
-- `features` the references per online read; `monitor_records` the
-- prediction-log entries (newest first) one monitor request reads for
-- drift and online metrics (its volume and latency come from the log's
-- rollups, whatever the window holds); `trainings` the
-- console's trainings running at once (each a process, 503 past it);
-- `backfill_runs` the dates one backfill request may queue.
-- tycho.app{ limits = {...} } changes them.
M.DEFAULT_LIMITS = { items = 10000, features = 1000, monitor_records = 10000, trainings = 2, backfill_runs = 100 }

--- Answers 413 when a request asks for more than limit `what` allows.
function M.check_count(app, n, what, noun)
  local limit = app.limits[what]
  if n > limit then
    M.error(413, "too_large", string.format("%d %s in one request; the limit is %d (tycho.app{limits = {%s = ...}})",
      n, noun, limit, what))
  end
end

local MAX_REF_BYTES = 256

-- The plain Feast read body, read by C into offsets (rows_json.feast):
-- the features array's text names refs the general path has read and
-- checked before, kept per app. The body's tables are then the entities'
-- alone; lua-cjson and the finite check over every value took a third of a
-- one-entity read. What is kept is bounded in texts and in bytes (a text's
-- whitespace is the client's to choose): a text longer than
-- FEAST_TEXT_MAX is never kept, and past FEAST_REFS_MAX texts or
-- FEAST_REFS_BYTES bytes all are forgotten at once.
local rows_json = require("tycho.core.base").rows_json
local FEAST_KEYS, FEAST_REFS_MAX, FEAST_TEXT_MAX, FEAST_REFS_BYTES = 1024, 1024, 64 * 1024, 4 * 1024 * 1024
local feast_read, feast_keys = rows_json.feast_read(), rows_json.feast_keys(FEAST_KEYS)
local char_ptr = ffi.typeof("const char*")

-- The features' text of a body rows_json.feast read, or nil.
local function features_text(body, n)
  if n < 1 then return nil end
  -- (Not a tail call: a trace cannot return from a tail-called ffi.string.)
  local text = ffi.string(ffi.cast(char_ptr, body) + feast_read.features_at, feast_read.features_len)
  return text
end

-- Entity key i of a body rows_json.feast read: a number or a string.
local function feast_key(p, i)
  local k = feast_keys[i]
  if k.kind == rows_json.NUMBER then return k.number end
  local text = ffi.string(p + k.at, k.len)  -- (not a tail call: see features_text)
  return text
end

-- The entities of a body rows_json.feast read with n keys: { join_key = {k, ...} }.
-- One key (the usual read) takes no loop: a loop that runs once per call
-- is left on its first turn while LuaJIT settles, and its trace with it.
local function feast_entities(body, n)
  local p = ffi.cast(char_ptr, body)
  local list = n == 1 and { feast_key(p, 0) } or {}
  if n > 1 then
    for i = 0, n - 1 do list[i + 1] = feast_key(p, i) end
  end
  return { [ffi.string(p + feast_read.join_key_at, feast_read.join_key_len)] = list }
end

-- The general path: the body decoded and checked; its refs remembered
-- under text when the fast reading had them (a frozen copy: the body is
-- the handler's, and reads resolve a frozen list without joining it).
local function feast_general(app, req, text)
  local body = req:json()
  if type(body) ~= "table" or type(body.features) ~= "table" or type(body.entities) ~= "table" then
    M.error(400, "bad_request", 'expected {"features": ["view:feature", ...], "entities": {"key": [...]}}')
  end
  M.check_count(app, #body.features, "features", "feature references")
  for i, ref in ipairs(body.features) do
    if type(ref) ~= "string" or #ref == 0 or #ref > MAX_REF_BYTES then
      M.error(400, "bad_request", string.format("features[%d] must be a 'view:feature' string of 1 to %d bytes",
        i, MAX_REF_BYTES))
    end
  end
  local total = 0
  for key, list in pairs(body.entities) do
    if type(key) ~= "string" or type(list) ~= "table" then
      M.error(400, "bad_request", 'entities must map a join key to a list of keys: {"user_id": ["a", "b"]}')
    end
    for i, v in ipairs(list) do
      if type(v) ~= "string" and type(v) ~= "number" then
        M.error(400, "bad_request", string.format("entities.%s[%d] must be a string or a number", key, i))
      end
    end
    total = total + #list
  end
  M.check_count(app, total, "items", "entity keys")
  if text and #text <= FEAST_TEXT_MAX then
    if app.feast_refs_n >= FEAST_REFS_MAX or app.feast_refs_bytes + #text > FEAST_REFS_BYTES then
      app.feast_refs, app.feast_refs_n, app.feast_refs_bytes = {}, 0, 0
    end
    -- (Loaded here: the feature store is not loaded at start-up.)
    local frozen = require("tycho.features.refs").frozen(body.features)
    app.feast_refs[text], app.feast_refs_n, app.feast_refs_bytes = frozen, app.feast_refs_n + 1,
      app.feast_refs_bytes + #text
  end
  return body.features, body.entities, body.full_feature_names
end

-- A plain Feast body read by C: the remembered refs of its features array
-- (nil when that text was not seen, or the body is not plain), its number
-- of entity keys and the array's text.
local function feast_known(app, body)
  local n = rows_json.feast(body, #body, feast_read, feast_keys, FEAST_KEYS)
  local text = features_text(body, n)
  return text and app.feast_refs[text], n, text
end

-- The answer's JSON text, or nil, message, code.
local function online_answer(app, refs, entities, full_names)
  -- The worker's last answer is overwritten when the shape repeats: it is
  -- encoded before the next request runs, and serving allocates less.
  -- (Not while requests may wait: two would share it.)
  local into = not suspend.enabled and app.online_answer or nil
  local res, err, code = M.feature_store(app):online(refs, entities, { into = into })
  if not res then return nil, err, code end
  if not suspend.enabled then app.online_answer = res end
  online_answer_json = online_answer_json or require("tycho.features.online").answer_json
  -- Feast answers bare feature names unless full names are asked for.
  local text = online_answer_json(res, full_names)
  return text
end

-- Feast feature server: POST /get-online-features.
local function get_online_features(app, req)
  local body = req.body or ""
  local refs, n, text = feast_known(app, body)
  local entities, full_names
  if refs then
    M.check_count(app, n, "items", "entity keys")
    entities, full_names = feast_entities(body, n), feast_read.full_names == 1
  else
    refs, entities, full_names = feast_general(app, req, text)
  end
  local answer, err, code = online_answer(app, refs, entities, full_names)
  if not answer then M.fail(err, code) end
  return 200, JSON_HEADERS, answer
end

-- The same read as a direct route (App:direct_routes): a known plain body
-- within the app's limits, or nil for the route to read, refuse or report.
local function feast_direct(app, body)
  local refs, n = feast_known(app, body)
  if not refs or n > app.limits.items then return nil end
  local answer = online_answer(app, refs, feast_entities(body, n), feast_read.full_names == 1)
  return answer
end

-- Feast feature server: POST /push.
local function push(app, req)
  local body = req:json()
  local view = type(body) == "table" and (body.push_source_name or body.view)
  if type(view) ~= "string" or type(body.df) ~= "table" then
    M.error(400, "bad_request", 'expected {"push_source_name": "view", "df": {"column": [...]}, "to": "online"}')
  end
  for _, column in pairs(body.df) do
    if type(column) == "table" then M.check_count(app, #column, "items", "rows") end
  end
  local report, err, code = M.feature_store(app):push(view, body.df, body.to)
  if not report then M.fail(err, code) end
  local issues = {}
  for i, is in ipairs(report.issues) do issues[i] = { row = is.line, reason = is.reason } end
  local out = { landed = report.landed, rejected = report.rejected, issues = issues }
  if report.landed == 0 and report.rejected > 0 then return 400, out end
  return out
end

--- A new app. opts.builtin = false leaves out the built-in routes.
function M.app(opts)
  local limits = {}
  for k, v in pairs(M.DEFAULT_LIMITS) do limits[k] = v end
  for k, v in pairs(opts and opts.limits or {}) do
    if M.DEFAULT_LIMITS[k] == nil then error("tycho.app: unknown limit '" .. tostring(k) .. "'", 2) end
    if type(v) ~= "number" or v < 1 or v ~= math.floor(v) then
      error("tycho.app: limit " .. k .. " must be a positive integer", 2)
    end
    limits[k] = v
  end
  local app = setmetatable({ routes = {}, builtin_routes = {}, middleware = {}, opts = opts or {}, hosted = {},
                             experiments = {}, alerts = {}, limits = limits,
                             metrics = { requests = {}, latency = {}, predictions = {} },
                             feast_refs = {}, feast_refs_n = 0, feast_refs_bytes = 0 }, App)
  app.schedules = {}  -- DAG files run by worker 0 (App:schedule)
  if app.opts.builtin ~= false then
    -- Built-in routes are searched after the app's own, which may replace them.
    app.adding_builtins = true
    app:get("/v2/health/live", function() return { live = true } end)
    app:get("/v2/health/ready", function()
      for name, h in pairs(app.hosted) do
        if not h:ready() then return 503, { ready = false, model = name, error = h.errors.main } end
      end
      local cluster = cluster_health.status()
      if cluster and not cluster.reachable then return 503, { ready = false, cluster = cluster } end
      return { ready = true, cluster = cluster }
    end)
    app:get("/v1/models", function()
      local list = {}
      for _, h in pairs(app.hosted) do list[#list + 1] = h:describe() end
      table.sort(list, function(a, b) return a.name < b.name end)
      return { models = #list > 0 and list or json.empty_array }
    end)
    app:get("/v1/models/{name}", function(req)
      local h = app.hosted[req.params.name] or M.error(404, "not_found", "no hosted model '" .. req.params.name .. "'")
      return h:describe()
    end)
    app.predict_handler = function(req) return protocols.predict(app, M, req) end
    -- Not read-only: it writes the prediction log and experiment exposures.
    app:post("/v1/models/{name}:predict", app.predict_handler)
    app:get("/metrics", function() return 200, { ["Content-Type"] = "text/plain; version=0.0.4" }, M.prometheus(app) end)
    require("tycho.serve.watch").add(app, M)
    require("tycho.serve.registry_routes").add(app, M)
    require("tycho.serve.console_routes").add(app, M)
    protocols.add(app, M)
    app.adding_builtins = nil
    app.feast_handler = function(req) return get_online_features(app, req) end
    app:post("/get-online-features", app.feast_handler, { read_only = true })
    app:get("/v1/features", function() return { views = M.feature_store(app):list() } end)
    app:get("/v1/features/{view}", function(req)
      local fs = M.feature_store(app)
      local v, msg, code = fs:view(req.params.view)
      if not v then M.fail(msg, code) end
      return { name = v.name, version = v.version, entity = v.entity, join_key = v.join_key, ttl = v.ttl,
               owner = v.owner, tags = v.tags, description = v.description, quality = assert(fs:quality(v.name)) }
    end)
    app:post("/push", function(req) return push(app, req) end)
  end
  return app
end

--- Whether v is an app made by tycho.app().
function M.is_app(v) return getmetatable(v) == App end

local MUTATING = { POST = true, PUT = true, PATCH = true, DELETE = true }

--- Adds a route; method is an HTTP method name, path may hold {params}.
-- On a server with a token, POST, PUT, PATCH and DELETE need it; opts.read_only
-- marks one that changes nothing (no token), opts.writes a GET that does
-- (token).
function App:route(method, path, handler, opts)
  if type(handler) ~= "function" then error("route handler must be a function", 2) end
  local pattern, names = compile_route(path)
  local list = self.adding_builtins and self.builtin_routes or self.routes
  method = method:upper()
  local writes = opts and opts.writes or (MUTATING[method] and not (opts and opts.read_only))
  list[#list + 1] = { method = method, path = path, pattern = pattern,
                      names = names, handler = handler, writes = writes and true or false }
  return self
end

for _, verb in ipairs { "get", "post", "put", "delete", "patch" } do
  App[verb] = doc.same_as(function(self, path, handler, opts) return self:route(verb, path, handler, opts) end,
    "function App:" .. verb .. "(path, handler, opts)\n"
      .. "Adds a " .. verb:upper() .. " route: app:route(\"" .. verb .. "\", path, handler, opts).")
end

--- Adds middleware: fn(req, next) returns what a handler returns, usually
-- by calling next(req).
function App:use(fn)
  if type(fn) ~= "function" then error("middleware must be a function", 2) end
  self.middleware[#self.middleware + 1] = fn
  return self
end

--- Hosts a registered model by alias: app:model("spam", { alias = "production",
-- canary = { alias = "staging", percent = 5 }, shadow = { alias = "staging" } }).
function App:model(name, opts)
  self.hosted[name] = require("tycho.serve.hosted").host(name, opts)
  return self
end

--- Runs a DAG file on its schedule: the first worker starts due runs as
-- child processes (tycho.dagsched). A relative path is relative to the app
-- file; a DAG that fails to load fails the app.
function App:schedule(path)
  if type(path) ~= "string" then error("app:schedule: expected a DAG file path", 2) end
  local dir = debug.getinfo(2, "S").source:match("^@(.*)/[^/]*$")
  local file = (path:sub(1, 1) == "/" or not dir) and path or (dir .. "/" .. path)
  local ok, err = require("tycho.dag.sched").check({ file })
  if not ok then error("app:schedule: " .. err, 2) end
  self.schedules[#self.schedules + 1] = { path = file }
  return self
end

--- Declares an experiment (see tycho.experiments). When its variants name
-- models, the predict route of the control's model splits traffic by it.
function App:experiment(def)
  local experiments = require "tycho.experiments"
  local e = experiments.define(def)
  if self.experiments[e.name] then error("experiment '" .. e.name .. "' is declared twice", 2) end
  local with_model = 0
  for _, v in ipairs(e.variants) do if v.model then with_model = with_model + 1 end end
  if with_model > 0 and with_model < #e.variants then
    error("experiment " .. e.name .. ": either every variant names a model or none does", 2)
  end
  if with_model > 0 then
    local model, alias = experiments.parse_model_ref(e:control().model)
    for _, h in pairs(self.hosted) do
      if h.experiment then error("experiment " .. e.name .. ": model " .. h.name .. " already has an experiment", 2) end
    end
    self.hosted[model] = self.hosted[model] or require("tycho.serve.hosted").host(model, { alias = alias })
    self.hosted[model]:attach(e)
  end
  self.experiments[e.name] = e
  return self
end

--- The variant of a unit in experiment `name` for a handler (plain-data
-- variants): the variant table, and whether the unit is counted.
function App:assign(name, unit, req)
  local e = self.experiments[name] or error("no experiment '" .. tostring(name) .. "'", 2)
  return e:assign(unit, req)
end

--- Adds an alert rule, checked on a timer by the first worker:
-- { name, model, window = "1h", every = "1m", when = function(m) -> bool,
--   ["do"] = function(m) }. m is the monitor summary of the model's live
-- version (tycho.monitor.current). Or { name, view, every, when, do } on a
-- feature view's data quality: m is fs:quality(view), and `when` defaults
-- to "the view's expectations are not met" (#m.violations > 0). The action
-- runs when the condition becomes true, and again only after it was false
-- in between.
function App:alert(rule)
  if type(rule) ~= "table" or type(rule["do"]) ~= "function" then
    error("alert: expected { model = NAME or view = NAME, when = function(m), do = function(m) }", 2)
  end
  if rule.view ~= nil then
    if type(rule.view) ~= "string" then error("alert: view must name a feature view", 2) end
    rule.when = rule.when or function(q) return #q.violations > 0 end
  elseif type(rule.model) ~= "string" then
    error("alert: model must name a hosted model (or view a feature view)", 2)
  end
  if type(rule.when) ~= "function" then error("alert: when must be a function(m) -> bool", 2) end
  local timeutil = require "tycho.util.timeutil"
  self.alerts[#self.alerts + 1] = { name = rule.name or ("alert" .. (#self.alerts + 1)), model = rule.model,
    view = rule.view, window = rule.window or "1h", every = timeutil.duration(rule.every or "1m"), when = rule.when,
    action = rule["do"], firing = false, fired = 0, errors = 0 }
  return self
end

local function scan_routes(app, method, path)
  local allowed
  local routes = app.all_routes
  if not routes or #routes ~= #app.routes + #app.builtin_routes then
    routes = {}
    for _, r in ipairs(app.routes) do routes[#routes + 1] = r end
    for _, r in ipairs(app.builtin_routes) do routes[#routes + 1] = r end
    app.all_routes = routes
    app.route_cache, app.route_cache_size = {}, 0
  end
  for _, r in ipairs(routes) do
    local caps = { path:match(r.pattern) }
    if caps[1] then
      if r.method == method or (method == "HEAD" and r.method == "GET") then
        local hit = { route = r, names = r.names, values = {} }
        for i in ipairs(r.names) do hit.values[i] = unescape(caps[i]) end
        return hit
      end
      allowed = allowed or {}
      allowed[#allowed + 1] = r.method
    end
  end
  return nil, allowed
end

local ROUTE_CACHE_MAX = 1024

-- The route for method and path, and its parameters; or nil and the
-- methods the path allows. Hits are kept (up to ROUTE_CACHE_MAX paths, then
-- forgotten at once), so a steady stream of requests to a few paths finds
-- its route by one table lookup instead of a scan of every route's
-- pattern: no loop on the request path for LuaJIT to leave (the scan's
-- loop, left on its first iterations, stopped every trace through it).
-- Kept by method, then path: no string made to look one up.
local function find_route(app, method, path)
  local cache = app.route_cache
  local by_method = cache and #app.all_routes == #app.routes + #app.builtin_routes and cache[method]
  local hit = by_method and by_method[path]
  if not hit then
    local allowed
    hit, allowed = scan_routes(app, method, path)
    if not hit then return nil, allowed end
    if app.route_cache_size >= ROUTE_CACHE_MAX then app.route_cache, app.route_cache_size = {}, 0 end
    by_method = app.route_cache[method] or {}
    app.route_cache[method] = by_method
    by_method[path], app.route_cache_size = hit, app.route_cache_size + 1
  end
  -- A fresh params table per request (a handler may change its own).
  local names, values, params = hit.names, hit.values, {}
  if names[1] then params[names[1]] = values[1] end
  if names[2] then params[names[2]] = values[2] end
  for i = 3, #names do params[names[i]] = values[i] end
  return hit.route, params
end

local function to_response(status, a, b)
  if type(status) == "table" then return 200, JSON_HEADERS, json.encode(status) end
  if a == JSON_HEADERS and type(b) == "string" then return status, a, b end  -- written already (protocols.lua)
  if status == nil then return 204, {}, "" end
  if type(status) ~= "number" then error("handler returned a " .. type(status) .. ", not a status or table", 0) end
  if b ~= nil then
    local headers = {}
    for k, v in pairs(a or {}) do headers[k] = tostring(v) end
    if type(b) == "table" then
      headers["Content-Type"] = headers["Content-Type"] or "application/json"
      return status, headers, json.encode(b)
    end
    return status, headers, tostring(b or "")
  end
  if type(a) == "table" then return status, JSON_HEADERS, json.encode(a) end
  return status, TEXT_HEADERS, a == nil and "" or tostring(a)
end

-- Constant-time comparison, so response timing does not leak the token.
local function same_secret(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do diff = bit.bor(diff, bit.bxor(a:byte(i), b:byte(i))) end
  return diff == 0
end

--- The function the server calls per request: raw request table in,
-- status, headers, body out. token (optional) guards mutating routes.
function App:handler(token)
  local chain = function(req) return req.route.handler(req) end
  for i = #self.middleware, 1, -1 do
    local mw, inner = self.middleware[i], chain
    chain = function(req) return mw(req, inner) end
  end
  local function respond(ok, ...)
    if ok then return to_response(...) end
    local e = ...
    if getmetatable(e) == HTTP_ERROR then return error_response(e.status, e.code, e.message) end
    io.stderr:write("tycho: handler error: ", tostring(e), "\n")
    return error_response(500, "internal", "internal server error")
  end
  -- Metrics and the access log, once the response is known.
  local function record(req, name, status, body)
    local seconds = monotonic() - req._started
    observe(self.metrics, name, status, seconds)
    if self.access_log then
      self.access_log:write(json.encode({ time = os.time(), method = req.method, path = req.path,
        route = name, status = status, ms = seconds * 1000, bytes = #body, peer = req.peer }), "\n")
    end
  end
  local function reply(req, ok, ...)
    -- Unprotected here (no C pcall around a late answer): a result that is
    -- no response becomes a 500 instead of a connection left waiting.
    local rok, status, headers, body = pcall(respond, ok, ...)
    if not rok then
      io.stderr:write("tycho: handler error: ", tostring(status), "\n")
      status, headers, body = error_response(500, "internal", "internal server error")
    end
    record(req, req._name, status, body)
    internal.http_respond(req._token, status, headers, body)
  end
  -- A request's handler in its coroutine (suspend.run), and what answers
  -- it when it ends after waiting. xpcall, not internal.xpcall: a C call
  -- in between would keep it from waiting.
  local function with_traceback(e)
    if type(e) == "string" then return debug.traceback(e, 2) end
    return e
  end
  local function protected(req) return xpcall(chain, with_traceback, req) end
  -- (Apart from dispatch: a closure there would close its upvalues on every
  -- return, which LuaJIT does not compile, and the plain path would pay.)
  local function run_suspending(req)
    return suspend.run(protected, function(ok, a, b, c)
      if not (ok and req._deferred) then reply(req, ok, a, b, c) end
    end, req)
  end
  -- Routing, auth and the handler: status, headers, body, and the route's
  -- name for metrics and the access log; nothing for a deferred request.
  local function authorized(req)
    return not token or same_secret(req.headers.authorization or "", "Bearer " .. token)
  end
  local function unauthorized(name)
    local status, headers, body = error_response(401, "unauthorized", "this route needs Authorization: Bearer TOKEN")
    return status, headers, body, name
  end
  local function dispatch(req)
    local route, params = find_route(self, req.method, req.path)
    if not route then
      -- Without the token, a writing method learns nothing of the routes.
      if MUTATING[req.method] and not authorized(req) then return unauthorized("unrouted") end
      if params then
        local status, headers, body = error_response(405, "method_not_allowed",
          req.method .. " is not allowed on " .. req.path)
        return status, { ["Content-Type"] = headers["Content-Type"], Allow = table.concat(params, ", ") }, body,
          "unrouted"
      end
      local status, headers, body = error_response(404, "not_found", "no route for " .. req.method .. " " .. req.path)
      return status, headers, body, "unrouted"
    end
    local name = route.method .. " " .. route.path
    if route.writes and not authorized(req) then return unauthorized(name) end
    req.params, req.route, req._name, req._reply = params, route, name, reply
    req.query = parse_query(req.query_string)
    setmetatable(req, Request)
    local ok, a, b, c
    if suspend.enabled then
      local done
      done, ok, a, b, c = run_suspending(req)
      if not done then
        -- Waiting on the network: answered when the handler ends.
        req._token = req._token or internal.http_defer()
        return nil
      end
    else
      ok, a, b, c = internal.xpcall(chain, req)
    end
    if ok and req._deferred then return nil end
    local status, headers, body = respond(ok, a, b, c)
    return status, headers, body, name
  end
  return function(req)
    req._started = monotonic()
    local status, headers, body, name = dispatch(req)
    if status == nil then return end
    record(req, name, status, body)
    -- A handler that deferred and then raised: answered now, through its token.
    if req._token then internal.http_respond(req._token, status, headers, body) end
    return status, headers, body
  end
end

-- A model name that is its own path segment, byte for byte: the router
-- decodes percent-escapes, a direct route compares the raw path.
local PLAIN_NAME = "^[%w._~-]+$"

-- A direct route of method and path answered by answer(body, len) (the
-- request's bytes, tycho.core.http) -> text, true (answered from a
-- buffer) or nil, recorded in the metrics as the route there (whose
-- handler must be builtin: an app route that takes the path keeps it).
local function direct_route(app, list, method, path, builtin, answer)
  local route = find_route(app, method, path)
  if not (route and builtin and route.handler == builtin) then return end
  local metrics, route_name = app.metrics, route.method .. " " .. route.path
  list[#list + 1] = { method = method, path = path, fn = function()
    local started = monotonic()
    local text = answer(http_direct.direct_body())
    if text then observe(metrics, route_name, 200, monotonic() - started) end
    return text
  end }
end

--- The direct routes for core/lua/lua_http.c (the server answers them
-- without the request table or the router, and any body their fast path
-- does not take goes on to the route): each hosted model's KServe V1
-- `:predict` for full numeric instances (protocols.predict_direct), and
-- Feast's `/get-online-features` for a plain body whose features array
-- was seen before. None with middleware or an access log, which need the
-- request; no `:predict` with a token (it writes, so it checks the
-- token); no Feast read while reads may wait (a cluster's online store:
-- a direct route answers at once); none for a path an app route takes.
function App:direct_routes(token)
  local list = {}
  if #self.middleware > 0 or self.access_log then return list end
  for name in pairs(self.hosted) do
    if not token and type(name) == "string" and name:match(PLAIN_NAME) then
      direct_route(self, list, "POST", "/v1/models/" .. name .. ":predict", self.predict_handler,
        function(body, len) return protocols.predict_direct(self, name, body, len) end)
    end
  end
  if not suspend.enabled then
    direct_route(self, list, "POST", "/get-online-features", self.feast_handler,
      function(body, len) return feast_direct(self, ffi.string(body, len)) end)
  end
  return list
end

-- ---- metrics (Prometheus text format) ----------------------------------------------

local BUCKETS = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 }

-- The first bucket that holds seconds (nil past the last: +Inf only),
-- found without a loop: every request passes here, and a loop on the
-- request path is one more that a trace through it must leave. The counts
-- are per bucket; prometheus() adds them up into Prometheus' cumulative ones.
local B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12 = unpack(BUCKETS)
local function bucket_of(s)
  if s <= B6 then
    if s <= B3 then return s <= B1 and 1 or s <= B2 and 2 or 3 end
    return s <= B4 and 4 or s <= B5 and 5 or 6
  end
  if s <= B9 then return s <= B7 and 7 or s <= B8 and 8 or 9 end
  return s <= B10 and 10 or s <= B11 and 11 or s <= B12 and 12 or nil
end

-- "route\0status": the requests' counter key.
local request_key = require("tycho.util.memo").joined("\0", 4096)

observe = function(m, route, status, seconds)
  local rkey = request_key(route, status)
  m.requests[rkey] = (m.requests[rkey] or 0) + 1
  local h = m.latency[route]
  if not h then
    h = { counts = {}, sum = 0, n = 0 }
    for i = 1, #BUCKETS do h.counts[i] = 0 end
    m.latency[route] = h
  end
  local i = bucket_of(seconds)
  if i then h.counts[i] = h.counts[i] + 1 end
  h.sum, h.n = h.sum + seconds, h.n + 1
end

local function label(v) return (tostring(v):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" })) end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- The feature views' freshness and missing ratios (features/quality.lua),
-- when this worker has the feature store open.
local function feature_gauges(app, line)
  local ok, gauges = pcall(function() return M.feature_store(app):quality_gauges() end)
  if not ok then return end
  line("# HELP tycho_feature_freshness_seconds Age of the newest event stored in a feature view.")
  line("# TYPE tycho_feature_freshness_seconds gauge")
  for _, g in ipairs(gauges) do
    if g.freshness_seconds then
      line(string.format('tycho_feature_freshness_seconds{view="%s"} %.3f', label(g.view), g.freshness_seconds))
    end
  end
  line("# HELP tycho_feature_missing_ratio Share of a feature's stored values that are null.")
  line("# TYPE tycho_feature_missing_ratio gauge")
  for _, g in ipairs(gauges) do
    for _, name in ipairs(sorted_keys(g.missing)) do
      line(string.format('tycho_feature_missing_ratio{view="%s",feature="%s"} %.6f', label(g.view), label(name),
        g.missing[name]))
    end
  end
end

--- The app's metrics in the Prometheus exposition format (this worker's).
function M.prometheus(app)
  local m, out = app.metrics, {}
  local function line(s) out[#out + 1] = s end
  line("# HELP tycho_http_requests_total HTTP requests by route and status.")
  line("# TYPE tycho_http_requests_total counter")
  for _, k in ipairs(sorted_keys(m.requests)) do
    local route, status = k:match("^(.*)%z(%d+)$")
    line(string.format('tycho_http_requests_total{route="%s",status="%s"} %d', label(route), status, m.requests[k]))
  end
  line("# HELP tycho_http_request_duration_seconds Request handling time by route.")
  line("# TYPE tycho_http_request_duration_seconds histogram")
  for _, route in ipairs(sorted_keys(m.latency)) do
    local h = m.latency[route]
    local below = 0
    for i, b in ipairs(BUCKETS) do
      below = below + h.counts[i]
      line(string.format('tycho_http_request_duration_seconds_bucket{route="%s",le="%g"} %d', label(route), b, below))
    end
    line(string.format('tycho_http_request_duration_seconds_bucket{route="%s",le="+Inf"} %d', label(route), h.n))
    line(string.format('tycho_http_request_duration_seconds_sum{route="%s"} %.9f', label(route), h.sum))
    line(string.format('tycho_http_request_duration_seconds_count{route="%s"} %d', label(route), h.n))
  end
  line("# HELP tycho_predictions_total Predictions by model and version.")
  line("# TYPE tycho_predictions_total counter")
  for _, k in ipairs(sorted_keys(m.predictions)) do
    local model, version = k:match("^(.*)%z(.*)$")
    line(string.format('tycho_predictions_total{model="%s",version="%s"} %d', label(model), label(version), m.predictions[k]))
  end
  line("# HELP tycho_model_info Hosted model versions (1 = ready).")
  line("# TYPE tycho_model_info gauge")
  for _, name in ipairs(sorted_keys(app.hosted)) do
    local d = app.hosted[name]:describe()
    line(string.format('tycho_model_info{model="%s",version="%s"} %d', label(name),
      label(d.ready and d.version or "none"), d.ready and 1 or 0))
  end
  line("# HELP tycho_instances_missing_inputs_total Instances predicted with inputs neither the request nor the store had.")
  line("# TYPE tycho_instances_missing_inputs_total counter")
  for _, name in ipairs(sorted_keys(app.hosted)) do
    line(string.format('tycho_instances_missing_inputs_total{model="%s"} %d', label(name), app.hosted[name].with_missing))
  end
  line("# HELP tycho_instances_stale_inputs_total Instances predicted with stored features past their view's ttl.")
  line("# TYPE tycho_instances_stale_inputs_total counter")
  for _, name in ipairs(sorted_keys(app.hosted)) do
    line(string.format('tycho_instances_stale_inputs_total{model="%s"} %d', label(name), app.hosted[name].with_stale))
  end
  feature_gauges(app, line)
  require("tycho.serve.watch").prometheus(app, line, label)
  local statm = io.open("/proc/self/statm")
  local rss = statm and tonumber((statm:read("*l") or ""):match("^%d+%s+(%d+)")) or 0
  if statm then statm:close() end
  line("# HELP tycho_process_resident_memory_bytes Resident memory of this worker.")
  line("# TYPE tycho_process_resident_memory_bytes gauge")
  line(string.format("tycho_process_resident_memory_bytes %d", rss * 4096))
  line("# HELP tycho_lua_heap_bytes This worker's Lua heap, live and not yet collected.")
  line("# TYPE tycho_lua_heap_bytes gauge")
  line(string.format("tycho_lua_heap_bytes %d", collectgarbage("count") * 1024))
  return table.concat(out, "\n") .. "\n"
end

return M
