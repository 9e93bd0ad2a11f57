--- The registry over HTTP, built into every app: what the CLI's `tycho
-- models` shows and does, for the console and for scripts. Promotions go
-- through Registry:promote, so an alias's stored policy holds here as on
-- every other path; a refusal is 403 with every reason. The model page's
-- plots read GET /v1/registry/models/{name}/versions/{version}/evaluation
-- (the holdout evaluation stored at registration) and
-- GET /v1/registry/models/{name}/compare?a=V&b=V (two versions side by side).
local json = require "tycho.util.json"
local registry = require "tycho.registry"

local M = {}

-- The registry of the app's home (the worker's one handle, app.home), or
-- of this process's home.
local function open(app, http)
  if app.registry then return app.registry end
  local reg, err = registry.open({ store = app.home })
  if not reg then http.error(503, "store_unavailable", err) end
  app.registry = reg
  return reg
end

--- The registry of the app's home, opened once per worker (503 when the
-- home cannot be opened).
M.registry = open

-- A version's stored holdout evaluation, or null and why there is none.
local function evaluation(app, http, req)
  local name, version = req.params.name, req.params.version
  local ev, msg, code = open(app, http):evaluation(name, version)
  if ev == nil then http.fail(msg, code) end
  if not ev then
    return { name = name, version = version, evaluation = json.null,
             note = "no holdout evaluation was stored with this version (registered without a holdout, "
               .. "or before versions kept one)" }
  end
  return { name = name, version = version, evaluation = ev }
end

-- Two versions side by side (Registry:compare): ?a=VERSION&b=VERSION.
local function compare(app, http, req)
  local a, b = req.query.a, req.query.b
  if not a or a == "" or not b or b == "" then
    http.error(400, "bad_request", "name two versions or aliases: ?a=1.0.0&b=1.1.0")
  end
  local doc, msg, code = open(app, http):compare(req.params.name, a, b)
  if not doc then http.fail(msg, code) end
  doc.name = req.params.name
  for i = 1, 2 do doc.evaluations[i] = doc.evaluations[i] or json.null end
  return doc
end

local function model_of(http, reg, name)
  local versions, err, code = reg:versions(name)
  if not versions then http.fail(err, code) end
  local policies, aliases = {}, {}  -- empty tables encode as {}
  for _, v in ipairs(versions) do
    local meta = reg:get(name, v.version)
    v.aliases = #meta.aliases > 0 and meta.aliases or json.empty_array
    for _, a in ipairs(meta.aliases) do aliases[a] = v.version end
  end
  for alias in pairs(aliases) do policies[alias] = reg:policy(name, alias) or json.null end
  local history = reg:history(name)
  return { name = name, versions = versions, aliases = aliases,
           policies = policies,
           history = #history > 0 and history or json.empty_array }
end

local function promote(app, http, req)
  local body = req:json()
  if type(body) ~= "table" or type(body.version) ~= "string" then
    http.error(400, "bad_request", 'expected {"version": "1.2.0"} (with "force": true and "reason", or "approved_by")')
  end
  local name, alias = req.params.name, req.params.alias
  local ok, msg, code, reasons = open(app, http):promote(name, body.version, alias, {
    force = body.force == true, reason = type(body.reason) == "string" and body.reason or nil,
    approved_by = type(body.approved_by) == "string" and body.approved_by or nil })
  if ok then return { name = name, alias = alias, version = body.version, forced = body.force == true } end
  if reasons then return 403, { error = { code = "forbidden", message = msg, reasons = reasons } } end
  http.fail(msg, code)
end

local function put_policy(app, http, req)
  local body = req:json()
  if body ~= json.null and type(body) ~= "table" then http.error(400, "bad_request", "expected a policy object or null") end
  local stored, msg, code = open(app, http):policy(req.params.name, req.params.alias, body ~= json.null and body or false)
  if stored == nil then http.fail(msg, code) end
  return { name = req.params.name, alias = req.params.alias, policy = stored or json.null }
end

-- Promotion requests: the body's strings, bounded by the registry.
local function request_opts(req, http)
  local body = req.body ~= "" and req:json() or {}
  if type(body) ~= "table" then http.error(400, "bad_request", 'expected {"by": "...", "reason": "..."}') end
  return body, { by = type(body.by) == "string" and body.by or nil,
                 reason = type(body.reason) == "string" and body.reason or nil }
end

local function refused_or_failed(http, msg, code, reasons)
  if reasons then return 403, { error = { code = "forbidden", message = msg, reasons = reasons } } end
  http.fail(msg, code)
end

local function add_requests(app, http)
  app:get("/v1/registry/models/{name}/requests", function(req)
    local list, msg, code = open(app, http):requests(req.params.name)
    if not list then http.fail(msg, code) end
    return { name = req.params.name, requests = #list > 0 and list or json.empty_array }
  end)
  app:post("/v1/registry/models/{name}/aliases/{alias}/requests", function(req)
    local body, opts = request_opts(req, http)
    if type(body.version) ~= "string" then http.error(400, "bad_request", 'expected {"version": "1.2.0", "by", "reason"}') end
    local r, msg, code, reasons = open(app, http):request(req.params.name, body.version, req.params.alias, opts)
    if not r then return refused_or_failed(http, msg, code, reasons) end
    return 201, r
  end)
  for _, verb in ipairs({ "approve", "reject" }) do
    app:post("/v1/registry/models/{name}/requests/{id}/" .. verb, function(req)
      local _, opts = request_opts(req, http)
      local r, msg, code, reasons = open(app, http)[verb](open(app, http), req.params.name, req.params.id, opts)
      if not r then return refused_or_failed(http, msg, code, reasons) end
      return r
    end)
  end
end

--- Adds the routes to app (http: the router module, for its errors).
function M.add(app, http)
  app:get("/v1/registry/models", function() return { models = open(app, http):list() } end)
  app:get("/v1/registry/models/{name}", function(req) return model_of(http, open(app, http), req.params.name) end)
  app:get("/v1/registry/models/{name}/aliases/{alias}/policy", function(req)
    local p, msg, code = open(app, http):policy(req.params.name, req.params.alias)
    if p == nil then http.fail(msg, code) end
    return { name = req.params.name, alias = req.params.alias, policy = p or json.null }
  end)
  app:put("/v1/registry/models/{name}/aliases/{alias}/policy", function(req) return put_policy(app, http, req) end)
  app:post("/v1/registry/models/{name}/aliases/{alias}", function(req) return promote(app, http, req) end)
  app:post("/v1/registry/models/{name}/aliases/{alias}/rollback", function(req)
    local body = req.body ~= "" and req:json() or {}
    local reason = type(body) == "table" and type(body.reason) == "string" and body.reason or nil
    local version, msg, code = open(app, http):rollback(req.params.name, req.params.alias, { reason = reason })
    if not version then http.fail(msg, code) end
    return { name = req.params.name, alias = req.params.alias, version = version }
  end)
  add_requests(app, http)
  app:get("/v1/registry/models/{name}/versions/{version}/evaluation", function(req) return evaluation(app, http, req) end)
  app:get("/v1/registry/models/{name}/compare", function(req) return compare(app, http, req) end)
end

return M
