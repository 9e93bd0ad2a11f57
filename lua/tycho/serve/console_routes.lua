--- The web console, built into every app: the read routes its pages use
-- beside those of registry_routes.lua and http.lua, and the pages
-- themselves under /ui/.
--
--   GET /v1/runs?limit=50&offset=0&sort=metrics.auc&order=desc&model=spam&kind=fit&study=S
--   GET /v1/runs?cursor=...            the next page by time (newest first)
--   GET /v1/runs/{id}                  one run
--   GET /v1/runs:compare?ids=A,B       runs side by side, with what differs
--   GET /v1/runs:groups, /v1/studies    runs_routes.lua: group-by with mean ± std,
--                                      tuning studies' best score by trial
--   GET|POST /v1/train                 train_routes.lua: trainings started from
--                                      the console as child processes
--   GET /v1/features:duplicates?threshold=0.99&view=V
--   GET /v1/features:search?q=&owner=&tag=&limit=50&offset=0, and
--   GET /v1/features/{view}/lineage   feature_routes.lua: views across teams,
--                                      who reads a view and serves them
--   GET /v1/monitor/{model}?window=1h&buckets=60
--                                      per version: volume, errors, p50/p99 per
--                                      slice of the window, drift table with
--                                      reference and live histograms
--   GET /v1/experiments/{name}/timeline?window=30d&buckets=60
--                                      cumulative lift with its interval and
--                                      each variant's share of new units per
--                                      slice, units and exposures per day
--   GET /v1/serving, /v1/serving/{model}?window=1h&buckets=60
--                                      serving_routes.lua: what each worker
--                                      hosts, traffic per version and role
--   GET /ui/                           the console (one page; #/runs, #/models/NAME, ...)
--   GET /ui/assets/{file}              its bundle (console.js, console.css)
--
-- Reads need no token. The pages are a bundle (console/, esbuild) that the
-- build embeds in the tycho binary (console/embed.cmake) and the worker
-- serves from memory; a tycho built without node holds none, and /ui/ says
-- the console was not built.
-- Every /ui/ answer carries a Content-Security-Policy that allows only the
-- bundle's own script and style: no inline script, nothing from elsewhere.
local experiments = require "tycho.experiments"
local internal = require "tycho.internal"
local query = require "tycho.serve.query"
local runs = require "tycho.registry.runs"

local M = {}

M.CSP = table.concat({ "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
  "connect-src 'self'", "font-src 'self'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'" }, "; ")

local function ui_headers(content_type)
  return { ["Content-Type"] = content_type, ["Content-Security-Policy"] = M.CSP,
           ["X-Content-Type-Options"] = "nosniff", ["Referrer-Policy"] = "no-referrer",
           ["X-Frame-Options"] = "DENY", ["Cache-Control"] = "no-cache" }
end

-- The embedded files, copied out of the binary once per worker (only
-- those it holds: names asked for in vain are not kept).
local embedded = {}

--- The console's file `name` (console.js, console.css) as embedded in the
-- binary, or nil.
function M.asset(name)
  local body = embedded[name] or internal.console_asset(name)
  embedded[name] = body
  return body
end

--- True when this tycho holds the console (it was built with node).
function M.built() return M.asset("console.js") ~= nil end

local function escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
                                         ["'"] = "&#39;" }))
end

local PAGE = [[<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tycho console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/assets/console.css">
<script type="module" src="/ui/assets/console.js"></script>
</head><body><div id="app"><p class="loading">Loading the console…</p></div>
<noscript>The Tycho console needs JavaScript; the same data is at /v1/runs, /v1/registry/models and /v1/features.</noscript>
</body></html>
]]

local NOT_BUILT = [[<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tycho console: not built</title></head><body>
<h1>The console was not built</h1>
<p>This tycho (%s) holds no console: it was built without <code>node</code> and
<code>npm</code>, or its bundle failed to build (the build printed why). Install them and
build again (<code>bash .ci/build</code>, or <code>cmake --build BUILD_DIR</code> after
<code>cmake</code> found them): the console is then embedded in the binary.</p>
<p>The JSON API answers without it: <a href="/v1/runs">/v1/runs</a>,
<a href="/v1/registry/models">/v1/registry/models</a>, <a href="/v1/features">/v1/features</a>.</p>
</body></html>
]]

local TYPES = { js = "text/javascript; charset=utf-8", css = "text/css; charset=utf-8" }

local function page()
  if not M.built() then
    return 200, ui_headers("text/html; charset=utf-8"), NOT_BUILT:format(escape(internal.exe or "?"))
  end
  return 200, ui_headers("text/html; charset=utf-8"), PAGE
end

local function asset(http, file)
  local ext = file:match("%.(%a+)$")
  local body = ext and TYPES[ext] and M.asset(file)
  if not body then http.error(404, "not_found", "no console asset '" .. file .. "'") end
  return 200, ui_headers(TYPES[ext]), body
end

local function integer(http, q, name)
  if q[name] == nil or q[name] == "" then return nil end
  local n = tonumber(q[name])
  if not n then http.error(400, "bad_request", name .. " must be an integer") end
  return n
end

local function runs_page(http, req)
  local q = req.query
  local function text(name) return q[name] ~= "" and q[name] or nil end
  local page_, err, code = runs.page { model = text("model"), kind = text("kind"), study = text("study"),
    sort = text("sort"),
    order = text("order"), cursor = text("cursor"), limit = integer(http, q, "limit"),
    offset = integer(http, q, "offset") }
  if not page_ then http.fail(err, code) end
  return page_
end

local function compare(http, req)
  local ids = {}
  for id in (req.query.ids or ""):gmatch("[^,]+") do ids[#ids + 1] = id end
  if #ids < 2 or #ids > 50 then http.error(400, "bad_request", "ids names 2 to 50 runs: ?ids=ID,ID") end
  local doc, err, code = runs.compare(ids)
  if not doc then http.fail(err, code) end
  return doc
end

local feature_store
local function duplicates(http, req)
  if not feature_store then
    local fs, err = require("tycho.features").open()
    if not fs then http.error(503, "store_unavailable", err) end
    feature_store = fs
  end
  local threshold = tonumber(req.query.threshold or "0.99")
  if not threshold or threshold <= 0 or threshold > 1 then
    http.error(400, "bad_request", "threshold is a number in (0, 1]")
  end
  local view = req.query.view ~= "" and req.query.view or nil
  local list, err, code = feature_store:duplicates { threshold = threshold, view = view }
  if not list then http.fail(err, code) end
  return { threshold = threshold, view = view, duplicates = #list > 0 and list or require("tycho.util.json").empty_array }
end

local function monitor_dashboard(app, http, req)
  local _, window = query.window(http, req.query, "window", "1h", 90)
  local buckets = query.buckets(http, req.query)
  if app.flush_log then app.flush_log() end
  local done, doc = pcall(require("tycho.monitor").dashboard, req.params.model, { window = window, buckets = buckets,
    max_records = app.limits and app.limits.monitor_records or nil })
  if not done then http.error(500, "internal", tostring(doc)) end
  return doc
end

-- An experiment's results over time (Experiment:timeline): the app's
-- declared one, or one stored in the home by another app.
local function experiment_timeline(app, http, req)
  local window = query.window(http, req.query, "window", "30d", 365)
  local buckets = query.buckets(http, req.query)
  local e = app.experiments[req.params.name]
  if not e then
    local err, code
    e, err, code = experiments.load(req.params.name)
    if not e then http.fail(err, code) end
  end
  if app.flush_log then app.flush_log() end
  return e:timeline { window = window, buckets = buckets }
end

local function redirect() return 302, { Location = "/ui/", ["Content-Type"] = "text/plain" }, "see /ui/\n" end

--- Adds the console's routes to app (http: the router module, for its errors).
function M.add(app, http)
  app:get("/v1/runs", function(req) return runs_page(http, req) end)
  app:get("/v1/runs:compare", function(req) return compare(http, req) end)
  app:get("/v1/runs/{id}", function(req)
    local r, err, code = runs.get(req.params.id)
    if not r then http.fail(err, code) end
    return r
  end)
  app:get("/v1/features:duplicates", function(req) return duplicates(http, req) end)
  app:get("/v1/monitor/{model}", function(req) return monitor_dashboard(app, http, req) end)
  app:get("/v1/experiments/{name}/timeline", function(req) return experiment_timeline(app, http, req) end)
  require("tycho.serve.dag_routes").add(app, http)
  require("tycho.serve.runs_routes").add(app, http)
  require("tycho.serve.train_routes").add(app, http)
  require("tycho.serve.feature_routes").add(app, http)
  require("tycho.serve.serving_routes").add(app, http)
  app:get("/", redirect)
  app:get("/ui", redirect)
  app:get("/ui/", page)
  app:get("/ui/assets/{file}", function(req) return asset(http, req.params.file) end)
end

return M
