--- Aggregates over the runs' sort index (registry/runs.lua) for the
-- console's Runs page: runs grouped by a parameter with each metric's mean
-- and standard deviation, and tuning studies (one search's trials in order,
-- with the best score so far). Groups come from the aggregates kept with
-- the index (registry/run_aggregates.lua) for all runs or one kind, from
-- the index entries for a model's or a study's: no run record is decoded.
--
--   run_stats.groups { by = "params.depth", metrics = { "auc" }, model = "spam" }
--   --> { by, runs, without, left_out, metrics = { "auc" },
--         groups = { { label = "6", value = 6, count = 12, metrics = { auc = { n, mean, std, min, max } } } } }
--   run_stats.studies { limit = 50 } --> { total, studies = { { study, trials, model, metric, best, at } } }
--   run_stats.study(id)              --> { study, model, metric, higher_is_better, total, trials, best }
local json = require "tycho.util.json"
local keys = require "tycho.util.keys"
local errors = require "tycho.util.errors"
local options = require "tycho.util.options"
local runs = require "tycho.registry.runs"
local agg = require "tycho.registry.run_aggregates"
local metrics = require "tycho.ml.metrics"

local M = {}
local I = runs.index
-- More distinct numbers than MAX_GROUPS fall into BINS equal-width bins;
-- more distinct strings keep the MAX_GROUPS most frequent.
local MAX_GROUPS, BINS, MAX_METRICS, MAX_TRIALS, MAX_STUDIES = 50, 10, 8, 2000, 200
-- The newest runs whose metric names make the default metrics.
local SAMPLE = 200

local function empty(t) return #t > 0 and t or json.empty_array end

local function decode(typed)
  if typed:byte(1) == 1 then return (keys.unpack("f64", typed:sub(2))) end
  return (keys.unpack("s", typed:sub(2)))
end

local function id_of(v) return v:match("^[^%z]*") end

local function value_of(values, typed)
  local e = values[typed]
  if not e then
    e = { count = 0, stats = {} }
    values[typed] = e
  end
  return e
end

-- Typed value -> { count, stats = { metric -> stats } }, from the stored
-- aggregates of a large scope.
local function from_aggregates(tx, scope, field, names)
  local wanted = {}
  for _, n in ipairs(names) do wanted[keys.pack("s", n)] = n end
  local prefix = agg.prefix(scope, field)
  local values = {}
  for k, v in tx:scan(I.db, { prefix = prefix }) do
    local typed, metric = agg.split(k, #prefix + 1)
    if metric == agg.RUNS then value_of(values, typed).count = agg.parse(v).n
    elseif wanted[metric] then value_of(values, typed).stats[wanted[metric]] = agg.parse(v) end
  end
  return values
end

-- The same from the index entries of a scope (of the kind, when one is
-- left to check): the field's entries say each run's value, each metric's
-- entries its score.
local function from_entries(tx, scope, kind, field, names)
  local prefix = I.prefix(scope, field)
  local values, of = {}, {}
  for k, v in tx:scan(I.db, { prefix = prefix }) do
    local id, k_ = I.entry(v)
    if not kind or k_ == kind then
      local e = value_of(values, agg.round_typed((agg.split(k, #prefix + 1))))
      e.count, of[id] = e.count + 1, e
    end
  end
  for _, name in ipairs(names) do
    local mprefix = I.prefix(scope, "metrics." .. name)
    local at = #mprefix + 1
    for k, v in tx:scan(I.db, { prefix = mprefix }) do
      local e = k:byte(at) == 1 and of[id_of(v)]
      if e then
        e.stats[name] = e.stats[name] or agg.new_stats()
        agg.observe(e.stats[name], (keys.unpack("f64", k:sub(at + 1, at + 8))))
      end
    end
  end
  return values
end

local function new_group(label, value) return { label = label, value = value, count = 0, stats = {} } end

local function fold(g, e)
  g.count = g.count + e.count
  for name, s in pairs(e.stats) do g.stats[name] = agg.merge(g.stats[name], s) end
end

-- Equal-width bins over numeric values.
local function bins(values)
  local lo, hi = math.huge, -math.huge
  for _, e in ipairs(values) do lo, hi = math.min(lo, e.value), math.max(hi, e.value) end
  local width = (hi - lo) / BINS
  local groups = {}
  for b = 1, BINS do
    local a, z = lo + (b - 1) * width, b == BINS and hi or lo + b * width
    groups[b] = new_group(string.format("[%.6g, %.6g%s", a, z, b == BINS and "]" or ")"))
    groups[b].lo, groups[b].hi = a, z
  end
  for _, e in ipairs(values) do fold(groups[math.min(BINS, 1 + math.floor((e.value - lo) / width))], e) end
  local kept = {}
  for _, g in ipairs(groups) do if g.count > 0 then kept[#kept + 1] = g end end
  return kept, 0
end

-- The groups of the distinct values: one per value, bins for many
-- numbers, the most frequent for many strings. Returns the groups and how
-- many runs no group took.
local function make_groups(by_typed)
  local values, numeric = {}, true
  for typed, e in pairs(by_typed) do
    if e.count > 0 then
      e.typed, e.value = typed, decode(typed)
      values[#values + 1] = e
      numeric = numeric and type(e.value) == "number"
    end
  end
  if numeric and #values > MAX_GROUPS then return bins(values) end
  local left_out = 0
  if #values > MAX_GROUPS then
    table.sort(values, function(a, b) return a.count > b.count or (a.count == b.count and a.typed < b.typed) end)
    for i = #values, MAX_GROUPS + 1, -1 do left_out, values[i] = left_out + values[i].count, nil end
  end
  table.sort(values, function(a, b) return a.typed < b.typed end)
  local groups = {}
  for i, e in ipairs(values) do
    groups[i] = new_group(type(e.value) == "number" and string.format("%.6g", e.value) or e.value, e.value)
    fold(groups[i], e)
  end
  return groups, left_out
end

-- The metric names of the scope's newest runs (the "at" entries list each
-- run's fields), sorted, at most MAX_METRICS.
local function recent_metrics(tx, scope, kind)
  local seen, names = {}, {}
  local n = 0
  for _, v in tx:scan(I.db, { prefix = I.prefix(scope, "at"), reverse = true }) do
    local _, k_, rest = I.entry(v)
    if not kind or k_ == kind then
      for field in rest:gmatch("%z([^%z]+)") do
        local name = field:match("^metrics%.(.+)$")
        if name and not seen[name] then seen[name], names[#names + 1] = true, name end
      end
      n = n + 1
      if n >= SAMPLE then break end
    end
  end
  table.sort(names)
  for i = #names, MAX_METRICS + 1, -1 do names[i] = nil end
  return names
end

local function check_name(v, what)
  if type(v) ~= "string" or v == "" or #v > I.max_name or v:find("%z") then
    return errors.fail("invalid", what .. " is a name of 1 to " .. I.max_name .. " bytes")
  end
  return v
end

local function check_groups_opts(opts)
  local by = opts.by
  if type(by) ~= "string" or not (by:match("^params%..") or by == "model" or by == "kind") then
    return errors.fail("invalid", 'by is "params.NAME", "model" or "kind"')
  end
  for _, f in ipairs { { by, "by" }, { opts.model, "model" }, { opts.kind, "kind" }, { opts.study, "study" } } do
    if f[1] ~= nil then
      local ok, err, code = check_name(f[1], f[2])
      if not ok then return nil, err, code end
    end
  end
  if opts.study and opts.model then return errors.fail("invalid", "give study or model, not both") end
  if opts.metrics ~= nil then
    if type(opts.metrics) ~= "table" or #opts.metrics > MAX_METRICS then
      return errors.fail("invalid", "metrics is a list of at most " .. MAX_METRICS .. " names")
    end
    for _, m in ipairs(opts.metrics) do
      local ok, err, code = check_name(m, "a metric")
      if not ok then return nil, err, code end
    end
  end
  return true
end

local function summary(g, names)
  local out = {}
  for _, name in ipairs(names) do
    local s = g.stats[name]
    if s then out[name] = agg.summary(s) end
  end
  return { label = g.label, value = g.value, lo = g.lo, hi = g.hi, count = g.count, metrics = out }
end

--- Runs grouped by one field with their metrics' mean ± standard deviation.
-- opts: by ("params.NAME", "model" or "kind"), metrics (names; default the
-- metrics of the scope's newest runs, at most 8), model, kind, study
-- (filters, as runs.page takes them). Numbers group at 3 significant
-- digits; more than 50 distinct ones fall into 10 equal-width bins, more
-- than 50 strings keep the 50 most frequent (left_out counts the others'
-- runs); without counts the runs lacking the field.
-- Returns { by, runs, without, left_out, metrics, groups = { { label, value
-- (or lo, hi), count, metrics = { NAME = { n, mean, std, min, max } } } } },
-- or nil, message, "invalid" | "unavailable".
function M.groups(opts)
  opts = opts or {}
  local ok, err, code = check_groups_opts(opts)
  if not ok then return nil, err, code end
  local st, serr, scode = I.store()
  if not st then return nil, serr, scode end
  local scope, kind = I.scope_of(opts)
  return st:view(function(tx)
    local names = opts.metrics or recent_metrics(tx, scope, kind)
    local values
    if not kind and agg.kept(scope) then values = from_aggregates(tx, scope, opts.by, names)
    else values = from_entries(tx, scope, kind, opts.by, names) end
    local groups, left_out = make_groups(values)
    local grouped = 0
    for i, g in ipairs(groups) do
      grouped = grouped + g.count
      groups[i] = summary(g, names)
    end
    local total = tonumber(tx:get(I.db, I.count_key(scope)) or "0")
    if kind then total = nil end  -- the scope counts every kind
    return { by = opts.by, runs = grouped + left_out, without = total and total - grouped - left_out or nil,
             left_out = left_out, metrics = empty(names), groups = empty(groups) }
  end)
end

-- The prefix of every study's count key (its scope is "s:STUDY").
local STUDY_COUNTS = keys.pack("s", "c") .. keys.escape_string("s:")

-- The metric a study's trials are scored by: a tune trial has one (the
-- first by name when there are more).
local function metric_of(r)
  local best
  for k, v in pairs(type(r.metrics) == "table" and r.metrics or {}) do
    if type(v) == "number" and (not best or k < best) then best = k end
  end
  return best
end

-- The newest trial of a study and the best value of its metric.
local function study_brief(tx, study, trials)
  local scope = "s:" .. study
  local out = { study = study, trials = trials }
  for _, v in tx:scan(I.db, { prefix = I.prefix(scope, "at"), reverse = true, limit = 1 }) do
    local raw = tx:get("runs", I.run_key(id_of(v)))
    local r = raw and json.decode(raw)
    if r then
      out.model, out.at = r.model, r.at
      out.metric = metric_of(r)
    end
  end
  if out.metric then
    local prefix = I.prefix(scope, "metrics." .. out.metric)
    local scan = { prefix = prefix, reverse = metrics.higher_is_better(out.metric), limit = 1 }
    for k in tx:scan(I.db, scan) do
      if k:byte(#prefix + 1) == 1 then out.best = keys.unpack("f64", k:sub(#prefix + 2, #prefix + 9)) end
    end
  end
  return out
end

--- Tuning studies (the trials of one tune or automl search share a
-- study), newest first when their ids are tune's (they start with the
-- time). opts: limit (1..200, default 50), offset. Returns { total, offset,
-- studies = { { study, trials, model, metric, best, at } } }, or nil,
-- message, code.
function M.studies(opts)
  local limit, offset, code = options.page(opts or {}, 50, MAX_STUDIES)
  if not limit then return nil, offset, code end
  local st, err, scode = I.store()
  if not st then return nil, err, scode end
  return st:view(function(tx)
    local list, total = {}, 0
    for k, v in tx:scan(I.db, { prefix = STUDY_COUNTS, reverse = true }) do
      total = total + 1
      if total > offset and #list < limit then
        local _, scope = keys.unpack("s s", k)
        list[#list + 1] = study_brief(tx, scope:sub(3), tonumber(v))
      end
    end
    return { total = total, offset = offset, limit = limit, studies = empty(list) }
  end)
end

-- A study's trials in time order (at most MAX_TRIALS), decoded.
local function trials_of(tx, study)
  local list = {}
  for _, v in tx:scan(I.db, { prefix = I.prefix("s:" .. study, "at"), limit = MAX_TRIALS }) do
    local raw = tx:get("runs", I.run_key(id_of(v)))
    local r = raw and json.decode(raw)
    if r then list[#list + 1] = r end
  end
  return list
end

--- One tuning study: its trials in the order they ran (the first 2,000),
-- each with its score and the best score so far. Returns { study, model,
-- metric, higher_is_better, total, trials = { { n, id, at, score, best,
-- params, family, seconds } }, best (the best trial) }, or nil, message,
-- "not_found" | "invalid" | "unavailable".
function M.study(id)
  local ok, err, code = check_name(id, "study")
  if not ok then return nil, err, code end
  local st, serr, scode = I.store()
  if not st then return nil, serr, scode end
  local list, total = st:view(function(tx)
    return trials_of(tx, id), tonumber(tx:get(I.db, I.count_key("s:" .. id)) or "0")
  end)
  if #list == 0 then return errors.fail("not_found", "no study '" .. id .. "' in the runs") end
  local first = list[1]
  local metric = metric_of(first)
  local higher = metric == nil or metrics.higher_is_better(metric)
  local trials, best = {}, nil
  for n, r in ipairs(list) do
    local score = metric and type(r.metrics) == "table" and r.metrics[metric] or nil
    if type(score) == "number" and (not best or (higher and score > best.score) or (not higher and score < best.score)) then
      best = { n = n, id = r.id, score = score, params = r.params, family = r.family }
    end
    trials[n] = { n = n, id = r.id, at = r.at, score = score, best = best and best.score, params = r.params,
                  family = r.family, seconds = r.seconds }
  end
  return { study = id, model = first.model, metric = metric, higher_is_better = higher, total = total,
           trials = trials, best = best }
end

return M
