--- The console's features page beyond /v1/features: views found across
-- teams, and who reads a view and serves it.
--
--   GET /v1/features:search?q=words&owner=&tag=&limit=50&offset=0
--                                      fs:search: a page of views, each
--                                      feature with the same name in another
--                                      view flagged, and the owners matched
--   GET /v1/features/{view}/lineage    the view -> the registered versions
--                                      (pipelines) that read it -> the
--                                      endpoints serving them, per worker
--
-- Lineage is read when asked, never kept: the registry's versions name the
-- views they read (feature refs, training data), and every serving worker
-- writes what it hosts to the home (serving_routes.lua), so a moved alias
-- or a stopped server shows at once.
local json = require "tycho.util.json"
local serving_routes = require "tycho.serve.serving_routes"
local registry_routes = require "tycho.serve.registry_routes"
local query = require "tycho.serve.query"

local M = {}

local function search(app, http, req)
  local q = req.query
  local function text(name) return q[name] ~= "" and q[name] or nil end
  local doc, err, code = http.feature_store(app):search { q = text("q"), owner = text("owner"), tag = text("tag"),
    limit = query.integer(http, q, "limit", 50), offset = query.integer(http, q, "offset", 0) }
  if not doc then http.fail(err, code) end
  return doc
end

-- Every serving slot that has a version loaded: { worker, hosted, slot }.
local function slots(workers)
  local out = {}
  for _, w in ipairs(workers) do
    for _, m in ipairs(w.models) do
      for _, s in ipairs(type(m.slots) == "table" and m.slots or {}) do
        if type(s.version) == "string" then out[#out + 1] = { worker = w, hosted = m.name, slot = s } end
      end
    end
  end
  return out
end

-- The versions loaded anywhere: { model = { version = true } }.
local function served(all)
  local out = {}
  for _, x in ipairs(all) do
    out[x.slot.model] = out[x.slot.model] or {}
    out[x.slot.model][x.slot.version] = true
  end
  return out
end

-- The readers grouped by model: { { name, versions = { reader... } } }.
local function by_model(readers)
  local out, index = {}, {}
  for _, r in ipairs(readers) do
    if not index[r.name] then
      out[#out + 1] = { name = r.name, versions = {} }
      index[r.name] = out[#out]
    end
    table.insert(index[r.name].versions, r)
  end
  return out
end

local function endpoints(all, readers)
  local reads, out = {}, {}
  for _, r in ipairs(readers) do reads[r.name .. "\0" .. r.version] = true end
  for _, x in ipairs(all) do
    local s, w = x.slot, x.worker
    if reads[s.model .. "\0" .. s.version] then
      out[#out + 1] = { hosted = x.hosted, slot = s.slot, model = s.model, alias = s.alias, version = s.version,
                        port = w.port, worker = w.worker, alive = w.alive,
                        route = "/v1/models/" .. x.hosted .. ":predict" }
    end
  end
  return out
end

local function lineage(app, http, req)
  local fs = http.feature_store(app)
  local v, err, code = fs:view(req.params.view)
  if not v then http.fail(err, code) end
  local all = slots(serving_routes.workers(fs.store))
  local readers = registry_routes.registry(app, http):readers(v.name, served(all))
  local models, eps = by_model(readers), endpoints(all, readers)
  return { view = v.name, entity = v.entity, owner = v.owner or json.null,
           models = #models > 0 and models or json.empty_array, endpoints = #eps > 0 and eps or json.empty_array }
end

--- Adds the routes to app (http: the router module, for its errors).
function M.add(app, http)
  app:get("/v1/features:search", function(req) return search(app, http, req) end)
  app:get("/v1/features/{view}/lineage", function(req) return lineage(app, http, req) end)
end

return M
