-- The spam filter end to end, the project's demo: a backfill of the daily
-- DAG (ingest, train, register, promote), then the app served on
-- 127.0.0.1, the test split's emails sent to the predict route, their
-- true labels sent back as feedback, and the figures printed: accuracy,
-- latency, the A/B test between the two families, and the monitor summary.
--   tycho --home H run recipes/spam-filter/main.lua [--quick]
local tycho = require "tycho"
local testing = require "tycho.testing"
local uv = require "luv"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local lib = dofile(here .. "lib.lua")
local quick = arg[1] == "--quick"
local home = tycho.home()
local env = { "TYCHO_HOME=" .. home, "TYCHO_QUICK=" .. (quick and "1" or "0"), "TYCHO_DATA=" .. lib.DATA }
local common = dofile(here .. "../common.lua")
local step, tycho_cmd = common.step, common.runner(home, env)

step("1. daily DAG backfill: ingest the day's emails, retrain both families, promote through the gates")
local last_day = quick and "2025-01-03" or "2025-01-05"
local last_slot = lib.BASE + (quick and 2 or 4) * 86400 + 3 * 3600  -- its 03:00 UTC run
tycho_cmd { "dag", "run", here .. "dag.lua", "--from", "2025-01-02", "--to", last_day, "--verbose" }
tycho_cmd { "dag", "status", here .. "dag.lua", "--limit", "4" }
tycho_cmd { "models", "list" }

step("2. serve the app on 127.0.0.1 (2 workers, its scheduler included)")
local srv = testing.serve(here .. "app.lua", { "--workers", "2" }, { env = env })
print("serving on http://127.0.0.1:" .. srv.port)
local ok, err = pcall(function()
  local request = common.client(srv.port)

  step("3. the test split as live traffic: predictions by email_id (features from the online store), then feedback")
  -- The held-out emails that have arrived by the last run, in arrival order.
  local emails, at, split = lib.emails()
  local labels = emails:col("label"):to_table()
  local rows = {}
  for row = 1, emails:nrows() do if split[row] == 1 and at[row] <= last_slot then rows[#rows + 1] = row end end
  table.sort(rows, function(a, b) return at[a] < at[b] end)
  if quick then for k = #rows, 301, -1 do rows[k] = nil end end
  local batch, latencies, correct, per_variant = 10, {}, 0, {}
  for b = 1, #rows, batch do
    local instances, idx = {}, {}
    for j = b, math.min(b + batch - 1, #rows) do
      idx[#idx + 1] = rows[j]
      instances[#instances + 1] = { email_id = lib.email_id(rows[j]) }
    end
    local started = uv.hrtime()
    local res = request("POST", "/v1/models/spam:predict", { instances = instances })
    latencies[#latencies + 1] = tonumber(uv.hrtime() - started) / 1e6
    local feedback = {}
    for k, row in ipairs(idx) do
      local hit = res.predictions[k].prediction == labels[row]
      if hit then correct = correct + 1 end
      local v = res.variants and res.variants[k] or "-"
      per_variant[v] = per_variant[v] or { n = 0, correct = 0 }
      per_variant[v].n, per_variant[v].correct = per_variant[v].n + 1, per_variant[v].correct + (hit and 1 or 0)
      feedback[k] = { prediction_id = res.prediction_ids[k], outcome = labels[row] }
    end
    request("POST", "/v1/feedback", feedback)
  end
  table.sort(latencies)
  print(string.format("%d emails in %d requests of %d: accuracy %.4f", #rows, #latencies, batch, correct / #rows))
  for name, v in pairs(per_variant) do
    print(string.format("  variant %-9s %4d emails, accuracy %.4f", name, v.n, v.correct / v.n))
  end
  print(string.format("request latency (client side, %d instances each): p50 %.2f ms, p99 %.2f ms", batch,
    latencies[math.ceil(#latencies * 0.5)], latencies[math.ceil(#latencies * 0.99)]))

  step("4. the A/B test between the families (GET /v1/experiments/gbt-vs-logistic)")
  local results
  testing.run_until(function()
    results = request("GET", "/v1/experiments/gbt-vs-logistic")
    return results.pending_feedback == 0
  end, 10000)
  print(tycho.experiments.format_results(results))

  step("5. monitoring (GET /v1/models/spam/monitor): volume, latency, online metrics, drift")
  request("GET", "/v1/models/spam/monitor?window=1h")  -- flushes the answering worker's log
  testing.run_until(function() return false end, 400)  -- and the other worker's timer flush
  print(tycho.monitor.format(tycho.monitor.summary("spam", { window = "1h" })))
end)
step("6. stop the server (SIGTERM drains in-flight requests)")
common.stop(srv, ok)
if not ok then error(err, 0) end
