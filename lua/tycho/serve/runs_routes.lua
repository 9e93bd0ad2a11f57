--- Aggregates of the runs for the console's Runs page (registry/run_stats.lua):
--
--   GET /v1/runs:groups?by=params.depth&metrics=auc,log_loss&model=M&kind=K&study=S
--                                  runs grouped by a parameter (or model, kind):
--                                  count and each metric's mean, std, min, max
--   GET /v1/studies?limit=50&offset=0
--                                  tuning studies (a search's trials), newest first
--   GET /v1/studies/{id}           one study's trials in order, with the best so far
--
-- Reads, no token. Every answer is computed from the runs' index in the
-- home, bounded: at most 50 groups (10 bins for many numbers), 8 metrics,
-- 2,000 trials.
local run_stats = require "tycho.registry.run_stats"
local query = require "tycho.serve.query"

local M = {}

local function text(q, name) return q[name] ~= nil and q[name] ~= "" and q[name] or nil end

local function groups(http, req)
  local q = req.query
  local names
  if text(q, "metrics") then
    names = {}
    for m in q.metrics:gmatch("[^,]+") do names[#names + 1] = m end
  end
  local doc, err, code = run_stats.groups { by = text(q, "by"), metrics = names, model = text(q, "model"),
                                            kind = text(q, "kind"), study = text(q, "study") }
  if not doc then http.fail(err, code) end
  return doc
end

--- Adds the routes to app (http: the router module, for its errors).
function M.add(app, http)
  app:get("/v1/runs:groups", function(req) return groups(http, req) end)
  app:get("/v1/studies", function(req)
    local doc, err, code = run_stats.studies { limit = query.integer(http, req.query, "limit"),
                                               offset = query.integer(http, req.query, "offset") }
    if not doc then http.fail(err, code) end
    return doc
  end)
  app:get("/v1/studies/{id}", function(req)
    local doc, err, code = run_stats.study(req.params.id)
    if not doc then http.fail(err, code) end
    return doc
  end)
end

return M
