--- Monitoring of served models: the prediction log joined with outcomes.
--
--   local m = tycho.monitor.summary("spam", { window = "1h" })
--   m.versions[1].metrics.accuracy, m.versions[1].drift.psi_max
--
-- Per model version (and role: live or shadow) in the window: volume,
-- latency p50/p99, errors, online metrics from outcomes joined by
-- prediction id (binary: accuracy, AUC, log loss; multiclass: accuracy;
-- regression: RMSE, MAE), and drift of every input and of the output
-- against the training reference in the version's artifact: PSI over the
-- reference's decile bins and the two-sample Kolmogorov-Smirnov test
-- against its reference sample. A feature drifts when PSI > psi (0.2) or
-- the KS p-value < alpha (0.05) divided by the number of features tested
-- (Bonferroni: a model with 50 inputs would otherwise alarm on noise).
-- Inputs are logged for a sample of predictions (serving's sample_every);
-- drift needs min_samples (100) of them: below that, PSI's noise alone
-- (about (bins - 1) / n) nears the 0.2 threshold.
local json = require "tycho.util.json"
local entries = require "tycho.monitor.entry"
local keys = require "tycho.util.keys"
local log_apply = require "tycho.monitor.log_apply"
local metrics = require "tycho.ml.metrics"
local rollup = require "tycho.monitor.rollup"
local stats = require "tycho.experiments.stats"
local timeutil = require "tycho.util.timeutil"

local M = {}

-- Training facts of a version, loaded once per process (artifacts are
-- immutable): task, classes, reference.
local facts_cache = {}
local function facts(name, version)
  local key = name .. "\0" .. tostring(version)
  local f = facts_cache[key]
  if f == nil then
    local reg = require("tycho.registry").open()
    local pipe = reg and reg:load(name, version)
    f = pipe and { task = pipe.model.task, classes = pipe.model.classes, reference = pipe.reference or {} } or false
    facts_cache[key] = f
  end
  return f or nil
end

local function online_metrics(f, rows)
  local n = #rows
  if n == 0 or not f then return {} end
  if f.task == "regression" then
    local y, p = {}, {}
    for i, r in ipairs(rows) do y[i], p[i] = tonumber(r.outcome) or 0 / 0, tonumber(r.output.prediction) or 0 / 0 end
    return { rmse = metrics.rmse(y, p), mae = metrics.mae(y, p) }
  end
  local hits = 0
  for _, r in ipairs(rows) do
    if tostring(r.output.prediction) == tostring(r.outcome) then hits = hits + 1 end
  end
  local out = { accuracy = hits / n }
  if f.task == "binary" and f.classes then
    local y, p, both = {}, {}, {}
    local positive = tostring(f.classes[2])
    for i, r in ipairs(rows) do
      y[i] = tostring(r.outcome) == positive and 1 or 0
      p[i] = tonumber(r.output.probability) or 0.5
      both[y[i]] = true
    end
    out.log_loss = metrics.log_loss(y, p)
    if both[0] and both[1] then out.auc = metrics.auc(y, p) end
  end
  return out
end

local function drift_of(ref, values, opts, tests)
  if not ref then return nil end
  if #values < opts.min_samples then
    local d = { samples = #values, status = "insufficient" }
    if opts.histograms then
      d.histogram = { edges = ref.edges, reference = ref.counts, live = select(2, stats.psi(ref.edges, ref.counts, values)) }
    end
    return d
  end
  local psi, live = stats.psi(ref.edges, ref.counts, values)
  local d = { samples = #values, psi = psi }
  if opts.histograms then d.histogram = { edges = ref.edges, reference = ref.counts, live = live } end
  if ref.sample and #ref.sample > 0 then
    local ks = stats.ks_2samp(values, ref.sample)
    d.ks, d.ks_p_value = ks.statistic, ks.p_value
  end
  d.drifted = psi > opts.psi or (d.ks_p_value ~= nil and d.ks_p_value < opts.alpha / tests)
  return d
end

local function output_value(f, out)
  if type(out) ~= "table" then return nil end
  if f and (f.task == "binary" or f.task == "multiclass") then return tonumber(out.probability) end
  return tonumber(out.prediction)
end

local function summarize(name, g, opts)
  local f = facts(name, g.version)
  local s = { version = g.version, role = g.role, volume = g.volume, errors = g.errors, latency_ms = g.latency_ms,
              outcomes = #g.joined, metrics = online_metrics(f, g.joined), series = g.series }
  local ref = f and f.reference or {}
  local drift = { features = {}, psi_max = 0, drifted = {}, samples = #g.inputs }
  local names = {}
  for c in pairs(ref.inputs or {}) do names[#names + 1] = c end
  table.sort(names)
  for _, c in ipairs(names) do
    local values = {}
    for _, row in ipairs(g.inputs) do
      local v = tonumber(row[c])
      if v and v == v then values[#values + 1] = v end
    end
    local d = drift_of(ref.inputs[c], values, opts, #names)
    drift.features[c] = d
    if d and d.psi then
      drift.psi_max = math.max(drift.psi_max, d.psi)
      if d.drifted then drift.drifted[#drift.drifted + 1] = c end
    end
  end
  local outs = {}
  for _, o in ipairs(g.outputs) do
    local v = output_value(f, o)
    if v then outs[#outs + 1] = v end
  end
  drift.output = drift_of(ref.output, outs, opts, 1) or json.null
  s.drift = drift
  if not f then s.error = "version " .. tostring(g.version) .. " is not in the registry" end
  return s
end

-- Version order, newest first: "1.0.10" after "1.0.9".
local function newer(a, b)
  local pa, pb = {}, {}
  for n in tostring(a):gmatch("%d+") do pa[#pa + 1] = tonumber(n) end
  for n in tostring(b):gmatch("%d+") do pb[#pb + 1] = tonumber(n) end
  for i = 1, math.max(#pa, #pb) do
    if (pa[i] or -1) ~= (pb[i] or -1) then return (pa[i] or -1) > (pb[i] or -1) end
  end
  return tostring(a) > tostring(b)
end

--- One stored prediction log entry (a value of the `predictions` table) as
-- a table, or nil: for scripts that read the log themselves.
M.decode_entry = entries.decode

-- The group of version and role in groups (made on first use, with the
-- fields that neither the rollups nor the entries may fill).
local function group(groups, order, version, role)
  local id = tostring(version) .. "\0" .. role
  local g = groups[id]
  if not g then
    g = { version = tostring(version), role = role, volume = 0, errors = 0,
          latency_ms = { p50 = json.null, p99 = json.null }, joined = {}, inputs = {}, outputs = {} }
    groups[id], order[#order + 1] = g, id
  end
  return g
end

-- Outputs, sampled inputs and joined outcomes of model `name` from the
-- log's own entries between from_us and now, newest first and at most
-- max_records of them (of any model: the bound is on the work); returns
-- whether the bound cut the window short, and then the time (µs) of the
-- oldest entry read.
local function read_entries(tx, name, from_us, now, max_records, groups, order)
  if max_records <= 0 then return false end
  local count, last = 0, nil
  for k, raw in tx:scan("predictions", { from = keys.pack("i64", from_us), to = keys.pack("i64", now + 1),
                                         reverse = true }) do
    count = count + 1
    if count > max_records then return true, (keys.unpack("i64", last)) end
    last = k
    local e = entries.decode(raw)
    if e and e.model == name then
      local g = group(groups, order, e.version, e.role or "live")
      if e.output ~= nil then g.outputs[#g.outputs + 1] = e.output end
      if type(e.inputs) == "table" then g.inputs[#g.inputs + 1] = e.inputs end
      local oc = e.output ~= nil and tx:get("outcomes", e.id)
      if oc then g.joined[#g.joined + 1] = { output = e.output, outcome = json.decode(oc).outcome } end
    end
  end
  return false
end

--- The summary of model `name` over opts.window (a duration, default "1h")
-- ending at opts.now (µs, default now). Volume, errors and p50 / p99
-- latency (from log-spaced bins, within 2.2 %) come from the log's rollups
-- (monitor/rollup.lua): the window is read in whole seconds, minutes or
-- hours (periods of at most a 60th of it), the last one holding now,
-- `from` the start of the first. Drift, outputs and online metrics come
-- from the entries themselves: the newest opts.max_records (200000; 0
-- reads none) of the window, a bound on the work of one call; `truncated`
-- says the bound cut the window short, `sampled_from` where. opts: psi,
-- alpha, min_samples, buckets (a count: each version also gets `series`,
-- its volume, errors and p50 / p99 latency per slice; the summary's
-- `bucket_seconds` and `t`, each slice's middle in epoch seconds, say
-- which slices: at most `buckets`, each a whole number of periods),
-- histograms (drift entries keep reference and live bin counts).
-- On the home that applies a cluster's feedback stream, `feedback` counts
-- the feedback every node accepted, since the home began applying it:
-- { joined, unmatched (no such prediction arrived in time), duplicate }.
function M.summary(name, opts)
  opts = opts or {}
  local window = timeutil.duration(opts.window or "1h")
  local now = opts.now or timeutil.now()
  local o = { psi = opts.psi or 0.2, alpha = opts.alpha or 0.05, min_samples = opts.min_samples or 100,
              histograms = opts.histograms }
  local span = rollup.span(window, now, opts.buckets)
  local st = opts.store or assert(require("tycho.core.store").open())
  local groups, order, feedback = {}, {}, nil
  local truncated, sampled_from = st:view(function(tx)
    for _, t in ipairs(rollup.traffic(tx, name, span, opts.buckets ~= nil)) do
      local g = group(groups, order, t.version, t.role)
      g.volume, g.errors, g.latency_ms, g.series = t.volume, t.errors, t.latency_ms, t.series
    end
    feedback = log_apply.counts(tx)
    return read_entries(tx, name, span.from * 1e6, now, opts.max_records or 200000, groups, order)
  end)
  local versions = {}
  for _, id in ipairs(order) do
    local g = groups[id]
    -- Entries the rollups do not count (logged before rollups were kept).
    if opts.buckets and not g.series then g.series = rollup.no_series(span.buckets) end
    versions[#versions + 1] = summarize(name, g, o)
  end
  table.sort(versions, function(a, b)
    if a.version ~= b.version then return newer(a.version, b.version) end
    return a.role < b.role
  end)
  local s = { model = name, window = opts.window or "1h", from = timeutil.format(span.from * 1e6),
              to = timeutil.format(now), truncated = truncated, versions = versions,
              sampled_from = sampled_from and timeutil.format(sampled_from) or nil, feedback = feedback }
  if opts.buckets then
    s.bucket_seconds, s.t = span.width, {}
    for b = 1, span.buckets do s.t[b] = span.from + (b - 0.5) * span.width end
  end
  return s
end

local fmt = require("tycho.util.pretty").number

--- The summary as a readable table (the CLI and the REPL print this).
function M.format(s)
  local lines = { string.format("model %s, window %s (%s .. %s)%s", s.model, s.window, s.from, s.to,
    s.truncated and ", drift and metrics from " .. s.sampled_from .. " on" or "") }
  if s.feedback then
    lines[#lines + 1] = string.format("feedback of every node: %d joined, %d unmatched, %d duplicate",
      s.feedback.joined, s.feedback.unmatched, s.feedback.duplicate)
  end
  if #s.versions == 0 then
    lines[#lines + 1] = "no predictions in the window"
    return table.concat(lines, "\n")
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = string.format("%-10s %-7s %8s %6s %9s %9s %8s  %s", "VERSION", "ROLE", "VOLUME", "ERRORS",
    "P50 MS", "P99 MS", "OUTCOMES", "METRICS")
  for _, v in ipairs(s.versions) do
    local ms = {}
    for k, x in pairs(v.metrics) do ms[#ms + 1] = string.format("%s=%.4g", k, x) end
    table.sort(ms)
    lines[#lines + 1] = string.format("%-10s %-7s %8d %6d %9s %9s %8d  %s", v.version, v.role, v.volume, v.errors,
      fmt(v.latency_ms.p50, "%.3f"), fmt(v.latency_ms.p99, "%.3f"), v.outcomes, table.concat(ms, " "))
  end
  for _, v in ipairs(s.versions) do
    local d = v.drift
    lines[#lines + 1] = ""
    lines[#lines + 1] = string.format("drift of %s (%s), %d sampled inputs: max PSI %.3f; drifted: %s; output: %s",
      v.version, v.role, d.samples, d.psi_max, #d.drifted > 0 and table.concat(d.drifted, ", ") or "none",
      type(d.output) == "table" and (d.output.drifted and "drifted" or d.output.status or "stable") or "-")
    local names = {}
    for f in pairs(d.features) do names[#names + 1] = f end
    table.sort(names, function(a, b) return (d.features[a].psi or -1) > (d.features[b].psi or -1) end)
    lines[#lines + 1] = string.format("  %-24s %8s %8s %10s", "FEATURE", "PSI", "KS", "KS P")
    local function row(name, f)
      if type(f) ~= "table" then return end
      lines[#lines + 1] = string.format("  %-24s %8s %8s %10s%s", name, fmt(f.psi, "%.3f"), fmt(f.ks, "%.3f"),
        fmt(f.ks_p_value, "%.3g"), f.drifted and "  DRIFT" or (f.status and ("  " .. f.status) or ""))
    end
    row("(output)", d.output)
    local shown, waiting = 0, 0
    for _, name in ipairs(names) do
      local f = d.features[name]
      if f.status == "insufficient" then
        waiting = waiting + 1
      elseif shown < 10 then
        shown = shown + 1
        row(name, f)
      end
    end
    if shown < #names - waiting then lines[#lines + 1] = string.format("  ... %d more", #names - waiting - shown) end
    if waiting > 0 then
      lines[#lines + 1] = string.format("  %d inputs wait for more sampled values (%d so far)", waiting, d.samples)
    end
  end
  return table.concat(lines, "\n")
end

--- Prints a model's summary (for the REPL): tycho.monitor.show("spam", "1h").
function M.show(name, window)
  print(M.format(M.summary(name, { window = window })))
end

--- The summary as the HTTP route answers it: empty lists stay lists.
function M.to_json(summary)
  local out = {}
  for k, v in pairs(summary) do out[k] = v end
  local versions = {}
  for i, v in ipairs(summary.versions) do
    local c = {}
    for k, x in pairs(v) do c[k] = x end
    c.drift = {}
    for k, x in pairs(v.drift) do c.drift[k] = x end
    if #c.drift.drifted == 0 then c.drift.drifted = json.empty_array end
    if not next(c.drift.features) then c.drift.features = json.empty_array end
    if not next(c.metrics) then c.metrics = json.null end
    versions[i] = c
  end
  out.versions = #versions > 0 and versions or json.empty_array
  return out
end

local function drift_rows(features)
  local rows = {}
  for fname, d in pairs(features) do
    local row = { feature = fname }
    for k, v in pairs(d) do row[k] = v end
    rows[#rows + 1] = row
  end
  -- Most drifted first: PSI, then KS; features still waiting for samples last.
  table.sort(rows, function(a, b)
    local pa, pb = a.psi or -1, b.psi or -1
    if pa ~= pb then return pa > pb end
    if (a.ks or -1) ~= (b.ks or -1) then return (a.ks or -1) > (b.ks or -1) end
    return a.feature < b.feature
  end)
  return rows
end

--- What the console's monitoring page draws for model `name`: per version
-- and role, the summary's figures, its volume, errors and p50 / p99
-- latency per slice of the window (opts.buckets, default 60, at most 500:
-- see summary for how many and how wide), and its drift table (features
-- sorted by PSI, then KS) with each feature's and the output's reference
-- and live bin counts. Aggregated on the server: never a raw series.
-- opts: those of summary.
function M.dashboard(name, opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.buckets = math.max(1, math.min(500, math.floor(tonumber(opts.buckets) or 60)))
  o.histograms = true
  local s = M.summary(name, o)
  local versions = {}
  for i, v in ipairs(s.versions) do
    local sr = v.series
    versions[i] = { version = v.version, role = v.role, volume = v.volume, errors = v.errors, latency_ms = v.latency_ms,
      outcomes = v.outcomes, metrics = next(v.metrics) and v.metrics or json.null, error = v.error,
      series = { t = s.t, volume = sr.volume, errors = sr.errors, p50_ms = sr.p50_ms, p99_ms = sr.p99_ms },
      drift = { samples = v.drift.samples, psi_max = v.drift.psi_max,
                drifted = #v.drift.drifted > 0 and v.drift.drifted or json.empty_array,
                features = next(v.drift.features) and drift_rows(v.drift.features) or json.empty_array,
                output = v.drift.output } }
  end
  return { model = s.model, window = s.window, from = s.from, to = s.to, truncated = s.truncated,
           sampled_from = s.sampled_from, bucket_seconds = s.bucket_seconds,
           versions = #versions > 0 and versions or json.empty_array }
end

--- The figures of the live version an alert rule sees: the summary's
-- entry for `version` (or the busiest live one) with the model name.
function M.current(summary, version)
  local pick
  for _, v in ipairs(summary.versions) do
    if v.role == "live" and (version == nil and (not pick or v.volume > pick.volume) or v.version == version) then
      pick = v
    end
  end
  if not pick then
    return { model = summary.model, volume = 0, errors = 0, metrics = {}, drift = { psi_max = 0, drifted = {},
             features = {} }, latency_ms = {} }
  end
  local m = {}
  for k, v in pairs(pick) do m[k] = v end
  m.model, m.window = summary.model, summary.window
  return m
end

return M
