-- The letter recognizer end to end: day 1's DAG run trains with AutoML and
-- releases to production; the app serves it; day 2's run retrains on more
-- labels and releases a canary that takes 30 % of live traffic; outcomes
-- come back as feedback; day 3's run judges the canary on them and
-- promotes it, and the running server follows the aliases without restart.
--   tycho --home H run recipes/letter-ocr/main.lua [--quick]
local tycho = require "tycho"
local testing = require "tycho.testing"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local quick = arg[1] == "--quick"
local home = tycho.home()
local env = { "TYCHO_HOME=" .. home, "TYCHO_QUICK=" .. (quick and "1" or "0"), "TYCHO_SCHEDULE=off",
              "LETTER_MIN_OUTCOMES=" .. (quick and "40" or "100") }
local common = dofile(here .. "../common.lua")
local step, tycho_cmd = common.step, common.runner(home, env)
for _, kv in ipairs(env) do
  local k, v = kv:match("^([^=]+)=(.*)$")
  require("luv").os_setenv(k, v)  -- this process's lib reads them too
end
local lib = dofile(here .. "lib.lua")

local function day(d)
  tycho_cmd { "dag", "run", here .. "dag.lua", "--date", string.format("2025-01-%02d", d), "--verbose" }
end

step("1. day 1: AutoML (k-means cluster feature included) on the first labels, released to production")
day(1)
tycho_cmd { "models", "show", lib.MODEL }

step("2. serve the app on 127.0.0.1: production, plus a 30 % canary once one is released")
local srv = testing.serve(here .. "app.lua", { "--workers", "2" }, { env = env })
local ok, err = pcall(function()
  local request = common.client(srv.port)
  local _, test = lib.frames()
  local names = {}
  for _, n in ipairs(test:names()) do if n ~= "label" then names[#names + 1] = n end end
  local labels = test:col("label"):to_table()

  -- Sends test images [from, to] as live traffic with their true letters as
  -- feedback; returns accuracy per serving version.
  local function traffic(from, to)
    local per_version = {}
    for b = from, to, 20 do
      local instances, idx = {}, {}
      for i = b, math.min(b + 19, to) do
        local inst = { id = string.format("image-%05d", i) }
        for _, n in ipairs(names) do inst[n] = test:col(n):get(i) end
        instances[#instances + 1], idx[#idx + 1] = inst, i
      end
      local res = request("POST", "/v1/models/" .. lib.MODEL .. ":predict", { instances = instances })
      local feedback = {}
      for k, i in ipairs(idx) do
        local v = res.model_versions and res.model_versions[k] or res.model_version
        local pv = per_version[v] or { n = 0, correct = 0 }
        per_version[v] = pv
        pv.n = pv.n + 1
        if res.predictions[k].prediction == labels[i] then pv.correct = pv.correct + 1 end
        feedback[k] = { prediction_id = res.prediction_ids[k], outcome = labels[i] }
      end
      request("POST", "/v1/feedback", feedback)
    end
    for v, pv in pairs(per_version) do
      print(string.format("  version %-6s answered %4d images, accuracy %.4f", v, pv.n, pv.correct / pv.n))
    end
  end
  local n = test:nrows()
  -- Each worker checks its aliases every second, and an answer comes from
  -- either: five in a row must agree (one might still come from the
  -- worker that has not looked yet). 30 s leaves room for slow builds
  -- (ASan) under load; a failure says what the server last answered.
  local function wait_for(what, pred)
    local last, agreed = nil, 0
    testing.run_until(function()
      if agreed >= 5 then return true end  -- run_until asks once more at the end
      last = request("GET", "/v1/models/" .. lib.MODEL)
      agreed = pred(last) and agreed + 1 or 0
      return agreed >= 5
    end, 30000)
    assert(agreed >= 5, "the server did not pick up " .. what .. "; it last said " .. require("tycho.json").encode(last))
  end

  step("3. live traffic on production")
  traffic(1, math.floor(n / 3))

  step("4. day 2: retrain on all labels so far; the new version is released as the canary")
  day(2)
  local canary = assert(tycho.registry.open()):get(lib.MODEL, "canary")
  if canary then
    wait_for("the canary", function(m) return m.canary == canary.version end)
    print(string.format("the server routes 30 %% of images to canary %s (no restart)", canary.version))
  end

  step("5. live traffic split between production and the canary")
  traffic(math.floor(n / 3) + 1, n)

  step("6. day 3: the DAG judges the canary on the joined outcomes")
  day(3)
  local prod = assert(tycho.registry.open()):get(lib.MODEL, "production")
  wait_for("the new production", function(m) return m.version == prod.version end)
  print("the server now answers with production " .. prod.version)
  tycho_cmd { "dag", "status", here .. "dag.lua", "--limit", "3" }
  print(tycho.monitor.format(tycho.monitor.summary(lib.MODEL, { window = "1h" })))
end)
step("7. stop the server")
common.stop(srv, ok)
if not ok then error(err, 0) end
