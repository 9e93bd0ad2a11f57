--- The Tycho side of the training benchmark (bench/train): the same data
-- sets, splits, model families and settings as bench/train/peer.py, and the
-- same JSON record shape (peer = "tycho").
--
--   build/tycho run bench/train/tycho.lua [--data DIR] [--datasets spam,letter,...]
--       [--models csv,gbt,forest,logistic,kmeans] [--threads 2] [--repeats 1]
--       [--out FILE.json] [--timeout 1800]
--
-- Every measurement (one data set x one model family) runs in a fresh child
-- process (this script re-invoked with the hidden `--one DATASET MODEL`) with
-- TYCHO_THREADS / OPENBLAS_NUM_THREADS / OMP_NUM_THREADS = --threads. The child
-- prints a JSON list of records on its last stdout line; the parent collects
-- them, writes the list to --out (or stdout) and a table to stderr.
--
-- Memory, in the child, as peer.py: after the data load the RSS high-water
-- mark is reset ("5" > /proc/self/clear_refs) and baseline_mb = VmRSS; right
-- after the measured operation delta_mb = VmHWM - baseline_mb. peak_rss_mb is
-- the child's peak RSS over its whole life. Times are wall-clock
-- (luv.hrtime), not os.clock (CPU time summed over the worker threads).
local uv = require "luv"
local json = require "tycho.json"

local HERE = (arg and arg[0] or "bench/train/tycho.lua"):match("^(.*)/[^/]*$") or "."
local ALL_DATASETS = { "spam", "letter", "diamonds", "breast_cancer", "digits" }
local ALL_MODELS = { "csv", "gbt", "forest", "logistic", "kmeans" }

local function now() return uv.hrtime() / 1e9 end

local function split_list(s)
  local out = {}
  for x in s:gmatch("[^,]+") do out[#out + 1] = x end
  return out
end

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return 0.5 * (s[n / 2] + s[n / 2 + 1])
end

local function max_of(xs)
  local m = xs[1]
  for _, x in ipairs(xs) do if x > m then m = x end end
  return m
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  return (uv.cwd() .. "/" .. p):gsub("/%./", "/")
end

-- ---------------------------------------------------------------- memory --

local Mem = {}
Mem.__index = Mem

local function status_kb(key)
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  local v = text:match("\n" .. key .. ":%s*(%d+)")
  return v and tonumber(v)
end

local function clear_refs()
  local f = io.open("/proc/self/clear_refs", "w")
  if not f then return false end
  local ok = f:write("5")
  local closed = f:close()
  return ok and closed and true or false
end

function Mem.new()
  local self = setmetatable({ base_kb = 0 }, Mem)
  self.lifetime_kb = status_kb("VmHWM") or 0
  self.can_reset = clear_refs() and status_kb("VmHWM") ~= nil
  return self
end

function Mem:start()
  collectgarbage("collect")
  collectgarbage("collect")
  self.lifetime_kb = math.max(self.lifetime_kb, status_kb("VmHWM") or 0)
  if self.can_reset then clear_refs() end
  self.base_kb = status_kb("VmRSS") or 0
  self.before_hwm = status_kb("VmHWM") or 0
end

--- delta_mb, baseline_mb
function Mem:stop()
  local hwm = status_kb("VmHWM") or 0
  self.lifetime_kb = math.max(self.lifetime_kb, hwm)
  local delta = self.can_reset and hwm - self.base_kb or hwm - self.before_hwm
  return math.max(delta, 0) / 1024, self.base_kb / 1024
end

function Mem:peak_mb()
  self.lifetime_kb = math.max(self.lifetime_kb, status_kb("VmHWM") or 0)
  return self.lifetime_kb / 1024
end

function Mem:method()
  return self.can_reset and "VmHWM reset via /proc/self/clear_refs" or "VmHWM after - before (lower bound)"
end

-- ------------------------------------------------------------- the child --

local function load(data, name)
  local frame = require "tycho.frame"
  local f, rep = frame.read_csv(data .. "/" .. name .. ".csv")
  if not f then error(name .. ": " .. tostring(rep)) end
  local names = f:names()
  local ycol = names[#names]
  local train, test = f:split { mask = data .. "/" .. name .. ".split" }
  local info = { rows = f:nrows(), cols = f:ncols(), features = f:ncols() - 1,
                 train_rows = train:nrows(), test_rows = test:nrows() }
  if ycol == "label" then
    local col, k = f:col("label"), 0
    for i = 1, col.n do k = math.max(k, col:get(i) + 1) end
    info.classes, info.task = k, k == 2 and "binary" or "multiclass"
  elseif ycol == "target" then
    info.classes, info.task = 0, "regression"
  else
    error(name .. ": last column is '" .. ycol .. "', not label/target")
  end
  return train, test, ycol, info
end

local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

--- Test-set metrics named as peer.py names them, and the predict seconds.
local function score(model, test, task)
  local metrics = require "tycho.metrics"
  local t0 = now()
  assert(model:predict_raw(test))
  local secs = now() - t0
  local ev = metrics.evaluate(model, test)
  if task == "regression" then return { rmse = ev.rmse, r2 = ev.r2 }, secs end
  if task == "binary" then return { auc = ev.auc, accuracy = ev.accuracy }, secs end
  return { accuracy = ev.accuracy, logloss = ev.log_loss }, secs
end

local function child_csv(opts, name)
  local frame = require "tycho.frame"
  local path = opts.data .. "/" .. name .. ".csv"
  local size = assert(uv.fs_stat(path)).size
  local mem = Mem.new()
  local secs, deltas, base = {}, {}, nil
  local f, rep
  for _ = 1, opts.repeats do
    f, rep = nil, nil
    mem:start()
    local t0 = now()
    f, rep = frame.read_csv(path)
    secs[#secs + 1] = now() - t0
    local d, b = mem:stop()
    if not f then error("read_csv " .. path .. ": " .. tostring(rep)) end
    deltas[#deltas + 1] = d
    base = base or b
  end
  local s = median(secs)
  local seen, types = {}, {}
  for _, t in pairs(f:types()) do
    if not seen[t] then seen[t] = true types[#types + 1] = t end
  end
  table.sort(types)
  local bytes = f:bytes()
  return { {
    dataset = name, model = "csv", peer = "tycho", peer_version = require("tycho").version,
    seconds = s, fit_seconds = s, all_seconds = secs,
    rows_per_s = f:nrows() / s, mb_per_s = size / 1e6 / s, bytes = size,
    rows = f:nrows(), cols = f:ncols(),
    peak_rss_mb = mem:peak_mb(), baseline_mb = base, delta_mb = deltas[1], all_delta_mb = deltas,
    frame_mb = bytes / 2 ^ 20, frame_bytes = bytes, rows_bad = rep.rows_bad,
    mem_method = mem:method(),
    notes = "tycho.frame.read_csv(path), type inference -> " .. table.concat(types, ",")
      .. "; frame_mb = f:bytes(); delta_mb from the first read (later reads reuse freed heap)",
  } }
end

-- Standardised copy of the feature columns (population std as StandardScaler;
-- a constant column keeps scale 1, as StandardScaler does).
local function standardise(f, features)
  local frame = require "tycho.frame"
  local n, cols = f:nrows(), {}
  for _, name in ipairs(features) do
    local src = f:col(name):f64()
    local s = 0
    for i = 0, n - 1 do s = s + src[i] end
    local mean, s2 = s / n, 0
    for i = 0, n - 1 do s2 = s2 + (src[i] - mean) ^ 2 end
    local sd = math.sqrt(s2 / n)
    if sd == 0 then sd = 1 end
    local out = {}
    for i = 0, n - 1 do out[i + 1] = (src[i] - mean) / sd end
    cols[name] = out
  end
  local types = {}
  for _, name in ipairs(features) do types[name] = "float" end
  return frame.new(cols, { order = features, types = types, n = n })
end

local function child_model(opts, name, family)
  local models = require "tycho.models"
  local train, test, ycol, info = load(opts.data, name)
  local task, k = info.task, info.classes
  collectgarbage("collect")
  local mem = Mem.new()
  local out = {}

  local function rec(secs, alls, deltas, base, met, notes, extra)
    local r = { dataset = name, model = family, peer = "tycho", peer_version = require("tycho").version }
    for key, v in pairs(info) do r[key] = v end
    for key, v in pairs(met) do if finite(v) then r[key] = v end end
    r.seconds, r.fit_seconds, r.all_seconds = secs, secs, alls
    r.peak_rss_mb, r.baseline_mb, r.delta_mb, r.all_delta_mb = mem:peak_mb(), base, max_of(deltas), deltas
    r.threads, r.mem_method, r.notes = opts.threads, mem:method(), notes
    for key, v in pairs(extra or {}) do r[key] = v end
    if task == "multiclass" and (r.logloss or 0) > math.log(k) then
      r.diverged = true
      r.notes = r.notes .. string.format("; DIVERGED: test log loss %.2f is above the uniform guess ln K = %.2f",
        r.logloss, math.log(k))
    end
    out[#out + 1] = r
  end

  -- Fits `repeats` fresh models: median seconds, all seconds, deltas, base, last model.
  local function timed_fits(make, data, fit_opts)
    local secs, deltas, base, model = {}, {}, 0, nil
    for _ = 1, opts.repeats do
      model = nil
      local m = make()
      mem:start()
      local t0 = now()
      local ok, msg = m:fit(data, fit_opts)
      secs[#secs + 1] = now() - t0
      local d, b = mem:stop()
      if not ok then error(family .. " fit on " .. name .. ": " .. tostring(msg)) end
      deltas[#deltas + 1], base, model = d, b, m
    end
    return median(secs), secs, deltas, base, model
  end

  local fit_opts = { label = ycol, quiet = true }
  if family == "gbt" then
    local make = function()
      return models.gbt { rounds = 100, depth = 6, eta = 0.3, max_bins = 256, lambda = 1, early_stopping_rounds = 0,
                          objective = task == "regression" and "regression" or nil, seed = 42 }
    end
    local s, alls, ds, b, m = timed_fits(make, train, fit_opts)
    local met, ps = score(m, test, task)
    rec(s, alls, ds, b, met,
      "models.gbt{rounds=100, depth=6, eta=0.3, max_bins=256, lambda=1}, no early stopping; Tycho defaults "
        .. "min_child_weight=1, gamma=0, no subsampling; task " .. task,
      { predict_seconds = ps, rounds = tonumber(m.info.rounds) })
  elseif family == "forest" then
    local regress = task == "regression"
    local make = function()
      return models.forest { trees = 100, seed = 42, task = regress and "regression" or nil,
                             max_features = regress and 1.0 or nil }
    end
    local s, alls, ds, b, m = timed_fits(make, train, fit_opts)
    local met, ps = score(m, test, task)
    rec(s, alls, ds, b, met,
      "models.forest{trees=100" .. (regress and ", max_features=1.0 (all features, as sklearn 1.2's regressor; "
        .. "Tycho's own regression default is 1/3)" or " (max_features default sqrt(p)/p, as sklearn)")
        .. "}, bootstrap, unlimited depth, min_samples_leaf=1, 256 bins",
      { predict_seconds = ps, oob_score = finite(m.info.oob_score) and m.info.oob_score or nil })
  elseif family == "logistic" then
    if task == "regression" then return {} end
    local make = function() return models.logistic { C = 1, max_iter = 100 } end
    local s, alls, ds, b, m = timed_fits(make, train, fit_opts)
    local met, ps = score(m, test, task)
    local n_iter, conv = tonumber(m.info.iterations), m.info.converged
    rec(s, alls, ds, b, met,
      string.format("models.logistic{C=1, max_iter=100} (%s); Tycho standardises the features inside the fit, "
        .. "so seconds include what the peer reports as scaler_seconds; %s after %d iterations",
        task == "multiclass" and "multinomial" or "binary", conv and "converged" or "NOT converged", n_iter),
      { predict_seconds = ps, n_iter = n_iter, converged = conv })
  elseif family == "kmeans" then
    local feats = {}
    for _, nm in ipairs(train:names()) do if nm ~= ycol then feats[#feats + 1] = nm end end
    local t0 = now()
    local z = standardise(train, feats)
    local scaler_s = now() - t0
    train, test = nil, nil
    local nk = task ~= "regression" and k or 8
    local make = function() return models.kmeans { k = nk, n_init = 3, seed = 42 } end
    local s, alls, ds, b, m = timed_fits(make, z, { quiet = true })
    rec(s, alls, ds, b, { inertia = tonumber(m.info.inertia) },
      string.format("models.kmeans{k=%d, n_init=3} (Tycho defaults max_iter=300, tol=1e-4 relative to the mean "
        .. "feature variance) on the standardised training features (label/target excluded; standardised in Lua, "
        .. "population std); inertia = best of the 3 inits on those rows", nk),
      { k = nk, n_iter = tonumber(m.info.iterations), scaler_seconds = scaler_s })
  else
    error("unknown model family '" .. tostring(family) .. "'")
  end
  return out
end

-- ------------------------------------------------------------ the parent --

local function run_one(opts, name, family)
  local exe = require("tycho.internal").exe
  local errfile = os.tmpname()
  local th = tostring(opts.threads)
  local cmd = string.format(
    "TYCHO_THREADS=%s OPENBLAS_NUM_THREADS=%s OMP_NUM_THREADS=%s timeout %d %s run %s --one %s %s --data %s "
      .. "--threads %s --repeats %d 2>%s; echo \"__rc=$?\"",
    th, th, th, opts.timeout, shell_quote(exe), shell_quote(opts.script), shell_quote(name), shell_quote(family),
    shell_quote(opts.data), th, opts.repeats, shell_quote(errfile))
  local t0 = now()
  local p = io.popen(cmd)
  local text = p:read("*a")
  p:close()
  local wall = now() - t0
  local ef = io.open(errfile)
  local errtext = ef and ef:read("*a") or ""
  if ef then ef:close() end
  os.remove(errfile)
  local rc = tonumber(text:match("__rc=(%d+)%s*$")) or -1
  local last
  for line in text:gmatch("[^\n]+") do if line:sub(1, 1) == "[" then last = line end end
  if rc ~= 0 or not last then
    local lines = {}
    for line in errtext:gmatch("[^\n]+") do lines[#lines + 1] = line end
    local tail = {}
    for i = math.max(1, #lines - 4), #lines do tail[#tail + 1] = lines[i] end
    local why = rc == 124 and ("timed out after " .. opts.timeout .. "s") or ("exit " .. rc .. ": " .. table.concat(tail, " | "))
    return { { dataset = name, model = family, peer = "tycho", error = why } }
  end
  local recs = assert(json.decode(last))
  for _, r in ipairs(recs) do r.child_wall_seconds = wall end
  return recs
end

local function fmt(v, spec) return v == nil and "-" or string.format(spec, v) end

local function table_of(recs, out)
  local cols = { "dataset", "model", "peer", "seconds", "metrics", "peak MB", "delta MB" }
  local rows = {}
  for _, r in ipairs(recs) do
    if r.error then
      rows[#rows + 1] = { r.dataset, r.model, r.peer, "ERROR", r.error:sub(1, 60), "", "" }
    else
      local m
      if r.model == "csv" then
        m = string.format("%.0f rows/s, %.1f MB/s, frame %.1f MB", r.rows_per_s, r.mb_per_s, r.frame_mb)
      else
        local parts = {}
        for _, kf in ipairs { { "auc", "%.4f" }, { "accuracy", "%.4f" }, { "logloss", "%.4f" }, { "rmse", "%.1f" },
                              { "r2", "%.4f" }, { "inertia", "%.1f" } } do
          if r[kf[1]] then parts[#parts + 1] = (kf[1] == "accuracy" and "acc" or kf[1]) .. " " .. string.format(kf[2], r[kf[1]]) end
        end
        if r.diverged then parts[#parts + 1] = "DIVERGED" end
        if r.converged == false then parts[#parts + 1] = "NOT CONVERGED" end
        if r.n_iter and (r.model == "logistic" or r.model == "kmeans") then parts[#parts + 1] = "iter " .. r.n_iter end
        m = table.concat(parts, ", ")
      end
      rows[#rows + 1] = { r.dataset, r.model, r.peer, fmt(r.seconds, "%.3f"), m, fmt(r.peak_rss_mb, "%.1f"),
                          fmt(r.delta_mb, "%.1f") }
    end
  end
  local w = {}
  for i, c in ipairs(cols) do
    w[i] = #c
    for _, x in ipairs(rows) do w[i] = math.max(w[i], #tostring(x[i])) end
  end
  local function line(xs)
    local parts = {}
    for i, x in ipairs(xs) do
      local s = tostring(x)
      local pad = string.rep(" ", w[i] - #s)
      parts[i] = (i <= 3 or i == 5) and s .. pad or pad .. s
    end
    return (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  out:write(line(cols), "\n")
  local dashes = {}
  for i = 1, #cols do dashes[i] = string.rep("-", w[i]) end
  out:write(table.concat(dashes, "  "), "\n")
  for _, x in ipairs(rows) do out:write(line(x), "\n") end
end

local function parse_args(argv)
  local opts = { data = nil, datasets = table.concat(ALL_DATASETS, ","), models = table.concat(ALL_MODELS, ","),
                 threads = 2, repeats = 1, timeout = 1800 }
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local function val()
      i = i + 1
      if argv[i] == nil then error("option " .. a .. " needs a value", 0) end
      return argv[i]
    end
    if a == "--data" then opts.data = val()
    elseif a == "--datasets" then opts.datasets = val()
    elseif a == "--models" then opts.models = val()
    elseif a == "--threads" then opts.threads = tonumber(val())
    elseif a == "--repeats" then opts.repeats = math.max(1, tonumber(val()))
    elseif a == "--out" then opts.out = val()
    elseif a == "--timeout" then opts.timeout = tonumber(val())
    elseif a == "--one" then opts.one = { val(), val() }
    elseif a == "-h" or a == "--help" then opts.help = true
    else error("unknown option " .. a, 0) end
    i = i + 1
  end
  return opts
end

local function main(argv)
  local opts = parse_args(argv)
  if opts.help then
    io.stderr:write("usage: tycho run bench/train/tycho.lua [--data DIR] [--datasets a,b] [--models csv,gbt,...] "
      .. "[--threads 2] [--repeats 1] [--out FILE.json] [--timeout S]\n")
    return 0
  end
  local root = abspath(HERE .. "/../..")
  opts.data = abspath(opts.data or (root .. "/../shared/data"))
  opts.script = abspath(arg[0])

  if opts.one then
    local name, family = opts.one[1], opts.one[2]
    local recs = family == "csv" and child_csv(opts, name) or child_model(opts, name, family)
    if #recs == 0 then recs = json.empty_array end
    io.stdout:write(json.encode(recs), "\n")
    return 0
  end

  local known = {}
  for _, m in ipairs(ALL_MODELS) do known[m] = true end
  local datasets, fams = split_list(opts.datasets), split_list(opts.models)
  for _, m in ipairs(fams) do
    if not known[m] then error("unknown model '" .. m .. "' (one of " .. table.concat(ALL_MODELS, ",") .. ")", 0) end
  end
  local t0 = now()
  local recs = {}
  for _, d in ipairs(datasets) do
    for _, m in ipairs(fams) do
      for _, r in ipairs(run_one(opts, d, m)) do
        io.stderr:write(string.format("bench/train tycho: %-13s %-8s %s\n", d, m,
          r.error or string.format("%.3fs", r.seconds)))
        io.stderr:flush()
        recs[#recs + 1] = r
      end
    end
  end
  local total = now() - t0
  local text = json.encode(#recs > 0 and recs or json.empty_array) .. "\n"
  if opts.out then
    local f = assert(io.open(opts.out, "w"))
    f:write(text)
    f:close()
  else
    io.stdout:write(text)
  end
  io.stderr:write("\n")
  table_of(recs, io.stderr)
  io.stderr:write(string.format("threads %d, repeats %d, total wall %.1fs\n", opts.threads, opts.repeats, total))
  for _, r in ipairs(recs) do if r.error then return 1 end end
  return 0
end

local ok, code = xpcall(main, debug.traceback, arg)
if not ok then
  io.stderr:write("bench/train/tycho.lua: ", tostring(code), "\n")
  os.exit(1)
end
if code ~= 0 then os.exit(code) end
