-- The price estimate end to end, the precompute pattern: a backfill of the
-- daily DAG (ingest the listings, retrain through the gate, precompute every
-- listed diamond's estimate into the feature view price_estimates), then
-- the app served on 127.0.0.1 and three kinds of traffic: precomputed
-- estimates read by key (/get-online-features), online predictions by key
-- (the same numbers, computed at request time), and online predictions for
-- new diamonds listed after the last batch run, priced back as feedback.
-- Prints MAE / RMSE of each, latency, and the monitor summary.
--   tycho --home H run recipes/price-estimate/main.lua [--quick]
local tycho = require "tycho"
local testing = require "tycho.testing"
local uv = require "luv"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local lib = dofile(here .. "lib.lua")
local quick = arg[1] == "--quick"
local home = tycho.home()
local env = { "TYCHO_HOME=" .. home, "TYCHO_QUICK=" .. (quick and "1" or "0"), "TYCHO_DATA=" .. lib.DATA,
              "TYCHO_USER=" .. (os.getenv("TYCHO_USER") or os.getenv("USER") or "price-estimate"),
              "PRICE_ESTIMATE_SCHEDULER=off" }
local common = dofile(here .. "../common.lua")
local step, tycho_cmd = common.step, common.runner(home, env)

local function errors(pairs_)
  local abs, sq = 0, 0
  for _, p in ipairs(pairs_) do
    local e = p[1] - p[2]
    abs, sq = abs + math.abs(e), sq + e * e
  end
  return abs / #pairs_, math.sqrt(sq / #pairs_)
end

local function percentiles(ms)
  table.sort(ms)
  return ms[math.max(1, math.ceil(#ms * 0.5))], ms[math.max(1, math.ceil(#ms * 0.99))]
end

local days = quick and 2 or 3
local last_day = os.date("!%F", lib.BASE + days * 86400)
local last_slot = lib.BASE + days * 86400 + 3 * 3600  -- its 03:00 UTC run
local started = uv.hrtime()

step(string.format("1. daily DAG backfill over %d days: ingest the listings, retrain through the gate, precompute "
  .. "every estimate", days))
tycho_cmd { "dag", "run", here .. "dag.lua", "--from", "2025-01-02", "--to", last_day, "--verbose" }
tycho_cmd { "dag", "status", here .. "dag.lua", "--limit", tostring(days) }
tycho_cmd { "models", "list" }
tycho_cmd { "models", "show", lib.MODEL }

-- The quarantine of the last ingest: which listings were refused and why.
local qdir = home .. "/quarantine"
local p = io.popen("ls -1 '" .. qdir:gsub("'", "'\\''") .. "' 2>/dev/null | sort | tail -n 1")
local latest = p:read("*l")
p:close()
if latest then
  print("\nquarantined listings (" .. qdir .. "/" .. latest .. "), first 3:")
  local n = 0
  for line in io.lines(qdir .. "/" .. latest) do
    n = n + 1
    if n <= 3 then
      local r = tycho.json.decode(line)
      print(string.format("  %s  x=%s y=%s z=%s  %s", r.row.diamond_id, r.row.x, r.row.y, r.row.z, r.reason))
    end
  end
  print(string.format("  (%d in all)", n))
end

step("2. serve the app on 127.0.0.1 (2 workers)")
local srv = testing.serve(here .. "app.lua", { "--workers", "2" }, { env = env })
print("serving on http://127.0.0.1:" .. srv.port)
local ok, err = pcall(function()
  local call = common.client(srv.port)
  local function request(method, path, body)
    local t0 = uv.hrtime()
    local doc = call(method, path, body)
    return doc, tonumber(uv.hrtime() - t0) / 1e6
  end

  local d, at, split = lib.diamonds()
  local price = d:col("target"):to_table()
  local listed, new = {}, {}
  for row = 1, d:nrows() do
    if split[row] == 1 then
      if at[row] <= last_slot then listed[#listed + 1] = row else new[#new + 1] = row end
    end
  end
  table.sort(new, function(a, b) return at[a] < at[b] end)

  step(string.format("3. precomputed estimates by key (POST /get-online-features) for the %d listed test diamonds",
    #listed))
  local batch, pairs_, lat, statuses, versions, estimate = 500, {}, {}, {}, {}, {}
  for b = 1, #listed, batch do
    local ids = {}
    for j = b, math.min(b + batch - 1, #listed) do ids[#ids + 1] = lib.diamond_id(listed[j]) end
    local res, ms = request("POST", "/get-online-features", {
      features = { lib.ESTIMATES .. ":price_estimate", lib.ESTIMATES .. ":model_version" },
      entities = { diamond_id = ids } })
    lat[#lat + 1] = ms
    local est, ver = res.results[2], res.results[3]
    for k = 1, #ids do
      local row = listed[b + k - 1]
      local s = est.statuses[k]
      statuses[s] = (statuses[s] or 0) + 1
      if s == "PRESENT" then
        pairs_[#pairs_ + 1] = { est.values[k], price[row] }
        estimate[row] = est.values[k]
        versions[ver.values[k]] = (versions[ver.values[k]] or 0) + 1
      end
    end
  end
  local mae, rmse = errors(pairs_)
  local p50, p99 = percentiles(lat)
  local vs, ss = {}, {}
  for v, n in pairs(versions) do vs[#vs + 1] = v .. " x" .. n end
  for s, n in pairs(statuses) do ss[#ss + 1] = s .. " " .. n end
  table.sort(vs)
  table.sort(ss)
  print(string.format("%d keys in %d requests of %d: %s (a missing one is a listing refused at ingest)", #listed,
    #lat, batch, table.concat(ss, ", ")))
  print(string.format("precomputed estimate vs true price: MAE %.1f USD, RMSE %.1f USD (model %s)", mae, rmse,
    table.concat(vs, ", ")))
  print(string.format("request latency (client side, %d keys each): p50 %.2f ms, p99 %.2f ms", batch, p50, p99))

  step("4. online predictions by key (POST /v1/models/price:predict {\"instances\": [{\"diamond_id\": ...}]})")
  local sample, diff, version = {}, 0, nil
  for _, row in ipairs(listed) do
    if estimate[row] and #sample < 50 then sample[#sample + 1] = row end
  end
  for b = 1, #sample, 10 do
    local instances = {}
    for j = b, math.min(b + 9, #sample) do instances[#instances + 1] = { diamond_id = lib.diamond_id(sample[j]) } end
    local res = request("POST", "/v1/models/" .. lib.MODEL .. ":predict", { instances = instances })
    version = res.model_version
    for k, pred in ipairs(res.predictions) do
      diff = math.max(diff, math.abs(pred.prediction - estimate[sample[b + k - 1]]))
    end
  end
  print(string.format("%d diamonds by key with %s: largest difference from the precomputed estimate %.3g USD",
    #sample, version, diff))

  local n_new = quick and 300 or 1000
  for k = #new, n_new + 1, -1 do new[k] = nil end
  step(string.format("5. new diamonds, listed after the last batch run: %d test rows sent as request features "
    .. "(no key), true prices sent back as feedback", #new))
  local rows, lat2, pairs2, fed = d:drop("target"), {}, {}, 0
  batch = 10
  for b = 1, #new, batch do
    local instances, idx = {}, {}
    for j = b, math.min(b + batch - 1, #new) do
      idx[#idx + 1] = new[j]
      local inst = {}
      local r = rows:row(new[j])
      for _, f in ipairs(lib.FEATURES) do inst[f] = r[f] end
      instances[#instances + 1] = inst
    end
    local res, ms = request("POST", "/v1/models/" .. lib.MODEL .. ":predict", { instances = instances })
    lat2[#lat2 + 1] = ms
    local feedback = {}
    for k, row in ipairs(idx) do
      pairs2[#pairs2 + 1] = { res.predictions[k].prediction, price[row] }
      feedback[k] = { prediction_id = res.prediction_ids[k], outcome = price[row] }
    end
    local fb = request("POST", "/v1/feedback", feedback)
    fed = fed + fb.accepted + fb.pending  -- pending: logged by the other worker, joined at its next flush
  end
  mae, rmse = errors(pairs2)
  p50, p99 = percentiles(lat2)
  print(string.format("%d new diamonds in %d requests of %d: MAE %.1f USD, RMSE %.1f USD; %d outcomes fed back",
    #new, #lat2, batch, mae, rmse, fed))
  print(string.format("request latency (client side, %d instances each): p50 %.2f ms, p99 %.2f ms", batch, p50, p99))

  step("6. monitoring (GET /v1/models/price/monitor): volume, latency, online RMSE / MAE from the feedback, drift")
  request("GET", "/v1/models/" .. lib.MODEL .. "/monitor?window=1h")  -- flushes the answering worker's log
  local summary
  testing.run_until(function()  -- the other worker flushes on its timer and joins pending feedback each second
    summary = tycho.monitor.summary(lib.MODEL, { window = "1h" })
    local joined = 0
    for _, v in ipairs(summary.versions) do joined = joined + v.outcomes end
    return joined >= #pairs2
  end, 5000)
  print(tycho.monitor.format(summary))
end)
step("7. stop the server (SIGTERM drains in-flight requests)")
common.stop(srv, ok)
print(string.format("\ndone in %.1f s", tonumber(uv.hrtime() - started) / 1e9))
if not ok then error(err, 0) end
