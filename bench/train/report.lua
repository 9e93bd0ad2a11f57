--- Joins the records of bench/train/tycho.lua and bench/train/peer.py on
-- (dataset, model) and prints one comparison table with the issue's targets
-- marked met/missed; writes the joined rows as JSON.
--
--   build/tycho run bench/train/report.lua --tycho T.json --peer P.json [--out JOINED.json]
local json = require "tycho.json"

local function read_json(path)
  local f = assert(io.open(path), "cannot open " .. path)
  local text = f:read("*a")
  f:close()
  local v, err = json.decode(text)
  if type(v) ~= "table" then error(path .. ": " .. tostring(err), 0) end
  return v
end

local args = {}
do
  local i = 1
  while i <= #arg do
    local k = arg[i]:match("^%-%-(.+)$")
    if not k or arg[i + 1] == nil then error("usage: report.lua --tycho T.json --peer P.json [--out J.json]", 0) end
    args[k] = arg[i + 1]
    i = i + 2
  end
end
if not args.tycho or not args.peer then error("usage: report.lua --tycho T.json --peer P.json [--out J.json]", 0) end

local tycho_recs, peer_recs = read_json(args.tycho), read_json(args.peer)

-- Which peer is the reference for each family (and which are shown as extra lines).
local PEERS = { csv = { "pandas.read_csv" }, gbt = { "xgboost", "sklearn-hgb" }, forest = { "sklearn-rf" },
                logistic = { "sklearn-logistic" }, kmeans = { "sklearn-kmeans" } }
local REFERENCE = { csv = "pandas.read_csv", gbt = "xgboost", forest = "sklearn-rf", logistic = "sklearn-logistic",
                    kmeans = "sklearn-kmeans" }
local MODEL_ORDER = { "csv", "gbt", "forest", "logistic", "kmeans" }

local by_key, datasets, seen_ds = {}, {}, {}
local function index(r)
  by_key[r.dataset .. "|" .. r.model .. "|" .. r.peer] = r
  if not seen_ds[r.dataset] then seen_ds[r.dataset] = true datasets[#datasets + 1] = r.dataset end
end
for _, r in ipairs(tycho_recs) do index(r) end
for _, r in ipairs(peer_recs) do index(r) end

-- The headline metric of a record's task.
local function headline(model, r)
  if model == "csv" then return "rows/s" end
  if model == "kmeans" then return "inertia" end
  if r.task == "binary" then return "auc" end
  if r.task == "multiclass" then return "accuracy" end
  return "rmse"
end

local function fmt_value(metric, v)
  if v == nil then return "-" end
  if metric == "auc" or metric == "accuracy" then return string.format("%.4f", v) end
  if metric == "rows/s" then return string.format("%.0f", v) end
  return string.format("%.1f", v)
end

local function value_of(metric, r)
  if metric == "rows/s" then return r.rows_per_s end
  return r[metric]
end

-- Difference tycho - peer in the metric's natural unit.
local function diff_of(metric, t, p)
  if t == nil or p == nil then return nil, "-" end
  if metric == "auc" or metric == "accuracy" then
    local d = (t - p) * 100
    if math.abs(d) < 0.005 then d = 0 end
    return d, string.format("%+.2f pt", d)
  end
  if metric == "rows/s" then
    local d = t / p
    return d, string.format("%.2fx", d)
  end
  local d = (t / p - 1) * 100
  if math.abs(d) < 0.005 then d = 0 end
  return d, string.format("%+.2f%%", d)
end

local function ratio(a, b)
  if a == nil or b == nil or b == 0 then return nil end
  return a / b
end

local function mark(ok) return ok and "met" or "MISSED" end

-- Quality and cost targets (nil where the issue sets none for this line).
local function targets(model, peer, t, p)
  if peer ~= REFERENCE[model] or t.error or p.error then return nil, nil end
  local q, c
  local time_ratio = ratio(t.fit_seconds, p.fit_seconds)
  local function quality_points(metric, limit)
    local d = (t[metric] - p[metric]) * 100
    if math.abs(d) < 0.005 then d = 0 end
    return { rule = string.format("%s >= peer - %.1f pt", metric, limit), value = d, met = d >= -limit,
             text = string.format("%s (%s %+.2f pt)", mark(d >= -limit), metric == "accuracy" and "acc" or metric, d) }
  end
  local function quality_rel(metric, limit_pct)
    local d = (t[metric] / p[metric] - 1) * 100
    return { rule = string.format("%s <= peer + %g%%", metric, limit_pct), value = d, met = d <= limit_pct,
             text = string.format("%s (%s %+.2f%%)", mark(d <= limit_pct), metric, d) }
  end
  local function time_rule(limit)
    return { rule = string.format("fit seconds <= %.1fx peer", limit), value = time_ratio, met = time_ratio <= limit,
             text = string.format("%s (%.2fx, <= %.1fx)", mark(time_ratio <= limit), time_ratio, limit) }
  end
  if model == "gbt" then
    if t.task == "binary" then q = quality_points("auc", 0.5)
    elseif t.task == "multiclass" then q = quality_points("accuracy", 0.5)
    else q = quality_rel("rmse", 2) end
    c = time_rule(1.0)
  elseif model == "forest" then
    if t.task == "regression" then
      q = quality_rel("rmse", 2)
      q.rule = q.rule .. " (no forest rule for regression in the issue: gbt's 2% used)"
      q.text = q.text .. "*"
    else
      q = quality_points("accuracy", 1.0)
    end
    c = time_rule(0.5)
  elseif model == "logistic" then
    q = quality_points("accuracy", 0.3)
    c = time_rule(0.5)
  elseif model == "kmeans" then
    q = quality_rel("inertia", 1)
    c = time_rule(1.0)
  elseif model == "csv" then
    local r = t.rows_per_s / p.rows_per_s
    q = { rule = "rows/s >= 2x pandas", value = r, met = r >= 2,
          text = string.format("%s (%.2fx rows/s, >= 2x)", mark(r >= 2), r) }
    local m = t.delta_mb / t.frame_mb
    c = { rule = "delta_mb <= 1.5x frame bytes", value = m, met = m <= 1.5,
          text = string.format("%s (delta %.1f MB = %.2fx frame %.1f MB)", mark(m <= 1.5), t.delta_mb, m, t.frame_mb) }
  end
  return q, c
end

local rows, joined = {}, {}
local met, missed, missed_list = 0, 0, {}
for _, d in ipairs(datasets) do
  for _, model in ipairs(MODEL_ORDER) do
    local t = by_key[d .. "|" .. model .. "|tycho"]
    for _, peer in ipairs(PEERS[model]) do
      local p = by_key[d .. "|" .. model .. "|" .. peer]
      if t or p then
        local row = { dataset = d, model = model, peer = peer }
        if not t or not p or t.error or p.error then
          row.error = (not t and "no tycho record") or (not p and "no peer record") or t.error and ("tycho: " .. t.error)
            or ("peer: " .. p.error)
          rows[#rows + 1] = { d, model, peer, "ERROR", row.error, "", "", "", "", "", "", "", "", "" }
        else
          local metric = headline(model, t)
          local tv, pv = value_of(metric, t), value_of(metric, p)
          local dv, dtext = diff_of(metric, tv, pv)
          local fr = ratio(t.fit_seconds, p.fit_seconds)
          local q, c = targets(model, peer, t, p)
          row.metric, row.tycho, row.peer_value, row.diff, row.diff_text = metric, tv, pv, dv, dtext
          row.fit_seconds_tycho, row.fit_seconds_peer, row.fit_ratio = t.fit_seconds, p.fit_seconds, fr
          row.delta_mb_tycho, row.delta_mb_peer = t.delta_mb, p.delta_mb
          row.mem_ratio = ratio(t.delta_mb, p.delta_mb)
          row.target_quality, row.target_cost = q, c
          row.tycho_record, row.peer_record = t, p
          for _, x in ipairs { q, c } do
            if x then
              if x.met then met = met + 1 else
                missed = missed + 1
                missed_list[#missed_list + 1] = string.format("%s %s: %s", d, model, x.rule)
              end
            end
          end
          local pvs = fmt_value(metric, pv)
          if p.diverged then pvs = pvs .. " (diverged)" end
          if p.converged == false then pvs = pvs .. " (nc)" end
          local tvs = fmt_value(metric, tv)
          if t.converged == false then tvs = tvs .. " (nc)" end
          if t.diverged then tvs = tvs .. " (diverged)" end
          rows[#rows + 1] = { d, model, peer, metric, tvs, pvs, dtext,
                              string.format("%.3f", t.fit_seconds), string.format("%.3f", p.fit_seconds),
                              fr and string.format("%.2fx", fr) or "-",
                              string.format("%.1f", t.delta_mb), string.format("%.1f", p.delta_mb),
                              q and q.text or "-", c and c.text or "-" }
        end
        joined[#joined + 1] = row
      end
    end
  end
end

local head = { "dataset", "model", "vs", "metric", "tycho", "peer", "diff", "fit s tycho", "fit s peer", "ratio",
               "dMB tycho", "dMB peer", "target: quality", "target: time (csv: memory)" }
local left = { [1] = true, [2] = true, [3] = true, [4] = true, [13] = true, [14] = true }
local w = {}
for i, h in ipairs(head) do
  w[i] = #h
  for _, r in ipairs(rows) do w[i] = math.max(w[i], #tostring(r[i])) end
end
local function line(xs)
  local parts = {}
  for i = 1, #head do
    local s = tostring(xs[i] or "")
    local pad = string.rep(" ", w[i] - #s)
    parts[i] = left[i] and s .. pad or pad .. s
  end
  return (table.concat(parts, "  "):gsub("%s+$", ""))
end
print(line(head))
local dashes = {}
for i = 1, #head do dashes[i] = string.rep("-", w[i]) end
print(table.concat(dashes, "  "))
local last_ds
for _, r in ipairs(rows) do
  if last_ds and r[1] ~= last_ds then print("") end
  last_ds = r[1]
  print(line(r))
end
print("")
print(string.format("targets: %d met, %d missed (of %d)", met, missed, met + missed))
print("metric: auc (binary), accuracy (multiclass), rmse (regression), inertia (kmeans, training rows), rows/s (csv);"
  .. " diff = tycho - peer in points (auc/acc), relative % (rmse/inertia), ratio (rows/s).")
print("fit s = wall seconds of the fit (csv: of the read); dMB = peak RSS growth during it (VmHWM reset);"
  .. " (nc) = not converged; * = rule borrowed (see README).")

if args.out then
  local f = assert(io.open(args.out, "w"))
  f:write(json.encode({ rows = joined, targets_met = met, targets_missed = missed,
                        missed = #missed_list > 0 and missed_list or json.empty_array }), "\n")
  f:close()
  print("joined JSON: " .. args.out)
end
