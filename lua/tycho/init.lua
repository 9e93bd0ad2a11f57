--- tycho: the public Lua API. Submodules load on first use, so `require "tycho"`
-- costs nothing in a worker that only serves one route.
--
-- Error convention (whole API): misuse (wrong argument types, calling a
-- method on the wrong object) raises `error(msg, 2)`; expected failures (not
-- found, bad input, a busy port) return `nil, message, code`.
local internal = require "tycho.internal"

local M = { version = internal.version }

local submodules = {
  store = "tycho.core.store", keys = "tycho.util.keys", http = "tycho.serve.http",
  json = "tycho.util.json", pretty = "tycho.util.pretty", frame = "tycho.frame",
  models = "tycho.ml.models", metrics = "tycho.ml.metrics", tune = "tycho.ml.tune", features = "tycho.features",
  runs = "tycho.registry.runs", registry = "tycho.registry", automl = "tycho.ml.automl", dag = "tycho.dag",
  cron = "tycho.dag.cron", experiments = "tycho.experiments", monitor = "tycho.monitor",
  stats = "tycho.experiments.stats", xgboost = "tycho.ml.xgboost",
}

--- The data home of this process (`--home`, `TYCHO_HOME` or ./tycho-data).
function M.home() return internal.home end

--- tycho.pipeline{...} builds a pipeline; tycho.pipeline.load(path) and the
-- rest of tycho.pipeline are reachable through it too.
M.pipeline = setmetatable({}, {
  __index = function(_, k) return require("tycho.ml.pipeline")[k] end,
  __call = function(_, def) return require("tycho.ml.pipeline").new(def) end,
})
M.step = setmetatable({}, { __index = function(_, k) return require("tycho.ml.pipeline").step[k] end })

--- A new HTTP app; see tycho.http.
function M.app(opts) return require("tycho.serve.http").app(opts) end

-- What `tycho` shows in the REPL: every module with the first line of its
-- documentation (read from the source; nothing is loaded).
local function listing()
  local doc = require "tycho.util.doc"
  local names = {}
  for name in pairs(submodules) do names[#names + 1] = name end
  for _, name in ipairs { "pipeline", "step", "app", "home", "version" } do names[#names + 1] = name end
  table.sort(names)
  local lines = { "tycho " .. M.version .. " — modules and functions (help(tycho.NAME) tells more):" }
  for _, name in ipairs(names) do
    local line = submodules[name] and doc.first_line(submodules[name])
      or (name == "pipeline" and "tycho.pipeline{features, request, steps, model, post}: a trainable pipeline")
      or (name == "step" and "tycho.step.NAME{...}: pipeline steps (fill_missing, standardize, onehot, lua, ...)")
      or (name == "app" and "tycho.app(opts): a new HTTP app for tycho serve")
      or (name == "home" and "tycho.home(): this process's data home")
      or (name == "version" and ("the version, " .. M.version)) or ""
    lines[#lines + 1] = string.format("  %-12s %s", name, line)
  end
  return table.concat(lines, "\n")
end

return setmetatable(M, {
  __tostring = listing,
  __names = function()
    local names = {}
    for name in pairs(submodules) do names[#names + 1] = name end
    return names
  end,
  __index = function(t, name)
    local path = submodules[name]
    if not path then return nil end
    local mod = require(path)
    rawset(t, name, mod)
    return mod
  end,
})
