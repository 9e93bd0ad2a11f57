--- Run tracking (like MLflow's): every pipeline fit, evaluation and tuning
-- trial is recorded in the home's `runs` database under a time-ordered id.
--   tycho.runs.list { model = "gbt", kind = "fit", sort = "auc", limit = 10 }
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local timeutil = require "tycho.util.timeutil"
local pretty = require "tycho.util.pretty"
local errors = require "tycho.util.errors"

local M = {}
local store, counter = nil, 0

local function open()
  if not store then
    local st, err = require("tycho.core.store").open()
    if not st then return errors.fail("unavailable", err) end
    store = st
  end
  return store
end

--- Records a run: { kind, model, params, metrics, seconds, data }. Returns
-- its id. Failures to record never break training: they return nil, err,
-- "unavailable".
function M.record(run)
  local st, err, code = open()
  if not st then return nil, err, code end
  counter = counter + 1
  local now = timeutil.now()
  local id = string.format("%d-%d-%d", now, require("luv").os_getpid(), counter)
  run.id, run.at = id, timeutil.format(now)
  local ok, perr = pcall(function()
    st:put("runs", keys.pack("i64 s", now, id), json.encode(run))
  end)
  if not ok then return errors.fail("unavailable", tostring(perr)) end
  return id
end

-- The columns a list of runs prints with: who and when, then every metric
-- and every parameter that any of them has.
local function columns_of(list)
  local columns, metric_names, param_names, seen = { "id", "kind", "model", "seconds" }, {}, {}, {}
  for _, r in ipairs(list) do
    for _, part in ipairs { { r.metrics, metric_names, "metrics." }, { r.params, param_names, "params." } } do
      for k, v in pairs(type(part[1]) == "table" and part[1] or {}) do
        if type(k) == "string" and type(v) ~= "table" and not seen[part[3] .. k] then
          seen[part[3] .. k] = true
          part[2][#part[2] + 1] = part[3] .. k
        end
      end
    end
  end
  table.sort(metric_names)
  table.sort(param_names)
  for _, c in ipairs(metric_names) do columns[#columns + 1] = c end
  for _, c in ipairs(param_names) do columns[#columns + 1] = c end
  return columns
end

--- Runs, newest first, filtered by model and kind; sort by a metric name
-- (best first: higher for scores, lower for losses) or "seconds".
function M.list(opts)
  opts = opts or {}
  local st, err, code = open()
  if not st then return nil, err, code end
  local out = {}
  st:view(function(tx)
    for _, v in tx:scan("runs", { reverse = true }) do
      local r = json.decode(v)
      if r and (not opts.model or r.model == opts.model) and (not opts.kind or r.kind == opts.kind) then
        out[#out + 1] = r
      end
    end
  end)
  if opts.sort then
    local lower = opts.sort == "seconds" or not require("tycho.ml.metrics").higher_is_better(opts.sort)
    local function value(r)
      if opts.sort == "seconds" then return r.seconds end
      return type(r.metrics) == "table" and r.metrics[opts.sort] or nil
    end
    table.sort(out, function(a, b)
      local va, vb = value(a), value(b)
      if va == nil then return false end
      if vb == nil then return true end
      if lower then return va < vb end
      return va > vb
    end)
  end
  if opts.limit then
    for i = #out, opts.limit + 1, -1 do out[i] = nil end
  end
  return pretty.as_table(out, columns_of(out))
end

return M
