-- Experiments and monitoring on a real server: the spam test split replayed
-- as traffic through an A/B test and a Thompson bandit between a strong and
-- a weak spam model, true labels sent back as feedback; drift of a shifted
-- replay; faults of every kind.
local testing = require "tycho.testing"
local json = require "tycho.json"
local frame = require "tycho.frame"

local DATA = "../shared/data"

-- Runs a Python script with Debian's scipy on input (as JSON in argv[1]).
local function scipy(code, input)
  local data, script = os.tmpname(), os.tmpname()
  testing.write(data, json.encode(input))
  testing.write(script, code)
  local p = assert(io.popen("/usr/bin/python3 " .. script .. " " .. data))
  local out = p:read("*a")
  p:close()
  os.remove(data)
  os.remove(script)
  return assert(json.decode(out), "python3/scipy gave no answer: " .. out)
end

describe("experiments and monitoring", function()
  local home, srv, labels, test_rows, emails
  local function start(kind, workers)
    local env = { "TYCHO_HOME=" .. home, "EXP_KIND=" .. kind }
    return testing.serve("tests/lua/fixtures/experiment_app.lua", { "--workers", workers or "2" }, { env = env })
  end
  setup(function()
    home = dofile("tests/lua/fixtures/spam_home.lua")({ "drift_a", "drift_b" })
    emails = assert(frame.read_csv(DATA .. "/spam.csv"))
    labels = emails:col("label"):to_table()
    test_rows = {}
    local i = 0
    for line in io.lines(DATA .. "/spam.split") do
      i = i + 1
      if line == "1" then test_rows[#test_rows + 1] = i end
    end
    -- spam.csv lists spam first: shuffle (seeded) so traffic mixes both.
    local seed = 12345
    for k = #test_rows, 2, -1 do
      seed = seed * 16807 % 2147483647
      local j = seed % k + 1
      test_rows[k], test_rows[j] = test_rows[j], test_rows[k]
    end
    srv = start("ab")
  end)
  teardown(function()
    if srv then srv:stop() end
    testing.rmrf(home)
  end)

  local function post(path, body) return testing.request(srv.port, "POST", path, { body = body }) end
  local function get(path) return testing.request(srv.port, "GET", path) end
  -- Results once every worker's buffered writes have landed (each worker
  -- flushes every 200 ms; feedback that beat its prediction waits pending).
  local function settled(name, check)
    local res
    testing.run_until(function()
      res = select(4, get("/v1/experiments/" .. name))
      return res.pending_feedback == 0 and (not check or check(res))
    end, 5000)
    return res
  end

  -- Replays rows (email indices) in batches; returns per-variant tallies
  -- of units and correct answers, and the prediction ids.
  local function replay(model, rows, batch, opts)
    opts = opts or {}
    local tally, order = {}, {}
    for b = 1, #rows, batch do
      local instances, idx = {}, {}
      for j = b, math.min(b + batch - 1, #rows) do
        idx[#idx + 1] = rows[j]
        instances[#instances + 1] = opts.instance and opts.instance(rows[j]) or
          { email_id = string.format("email-%05d", rows[j]) }
      end
      local status, _, body, doc = post("/v1/models/" .. model .. ":predict", { instances = instances })
      assert(status == 200, body)
      -- Each row names the version that served it (control: 1.0.0, v2:
      -- 1.0.1); a top-level version only when one served them all (20.8).
      local served = {}
      for k, v in ipairs(doc.variants or {}) do
        local expected = ({ control = "1.0.0", v2 = "1.0.1" })[v]
        if model == "spam" and expected then assert.equal(expected, doc.model_versions[k]) end
        served[doc.model_versions[k]] = true
      end
      if next(served, next(served)) then assert.is_nil(doc.model_version) end
      local fb = {}
      for k, row in ipairs(idx) do
        local v = doc.variants and doc.variants[k] or "none"
        tally[v] = tally[v] or { units = 0, correct = 0 }
        tally[v].units = tally[v].units + 1
        if doc.predictions[k].prediction == labels[row] then tally[v].correct = tally[v].correct + 1 end
        order[#order + 1] = v
        fb[k] = { prediction_id = doc.prediction_ids[k], outcome = labels[row] }
      end
      if not opts.no_feedback then
        local fstatus, _, fbody = post("/v1/feedback", fb)
        assert(fstatus == 200, fbody)
      end
    end
    return tally, order
  end

  it("reports the better version of an A/B test with scipy's p-value", function()
    local tally = replay("spam", test_rows, 50)
    local res = settled("spam-ab", function(r) return r.variants[1].units + r.variants[2].units == #test_rows end)
    local control, v2 = res.variants[1], res.variants[2]
    assert.same({ "control", "v2" }, { control.name, v2.name })
    assert.equal(tally.control.units, control.units)
    assert.equal(tally.v2.units, v2.units)
    assert.near(tally.control.correct / tally.control.units, control.mean, 1e-12)
    assert.near(tally.v2.correct / tally.v2.units, v2.mean, 1e-12)
    assert.is_true(control.mean > v2.mean, "the 100-round model should be more accurate")
    assert.is_true(v2.lift < 0)
    assert.is_true(v2.prob_beat_control < 0.05 and v2.expected_loss > 0)
    local want = scipy([==[
import json, sys
from scipy.stats import chi2_contingency, chisquare
t = json.load(open(sys.argv[1]))
c, v = t["control"], t["v2"]
p = chi2_contingency([[c["correct"], c["units"] - c["correct"]], [v["correct"], v["units"] - v["correct"]]],
                     correction=False)[1]
n = c["units"] + v["units"]
srm = chisquare([c["units"], v["units"]], f_exp=[n / 2, n / 2])[1]
print(json.dumps({"p": p, "srm": srm}))]==], tally)
    assert.near(want.p, v2.p_value, 1e-9 + 1e-6 * want.p)
    assert.is_true(v2.p_value < 0.05)
    assert.near(want.srm, res.srm_p_value, 1e-9)
    assert.is_true(res.srm_p_value > 0.01, "a 50/50 hash split shows no sample-ratio mismatch")
  end)

  it("monitors each version with metrics from joined outcomes and no drift on the test split", function()
    local status, _, body, m = get("/v1/models/spam/monitor?window=1h")
    assert(status == 200, body)
    assert.equal(2, #m.versions)
    for _, v in ipairs(m.versions) do
      assert.is_true(v.volume > 400 and v.outcomes > 400, json.encode(v))
      assert.is_number(v.latency_ms.p50)
      assert.is_true(v.latency_ms.p99 >= v.latency_ms.p50)
      assert.is_number(v.metrics.auc)
      assert.is_true(v.metrics.log_loss > 0)
      assert.same({}, v.drift.drifted)
      assert.is_true(v.drift.psi_max < 0.2)
    end
    assert.is_true(m.versions[2].metrics.accuracy > m.versions[1].metrics.accuracy, "1.0.0 beats 1.0.1")
    assert.equal(400, (get("/v1/models/spam/monitor?window=soon")))
  end)

  it("keeps units outside the target on the control, uncounted, and counts a failing target", function()
    local before = settled("spam-ab")
    local _, _, _, doc = post("/v1/models/spam:predict", { instances = {
      { email_id = "email-outside" }, { email_id = "email-boom" }, {} } })
    assert.same({ "control", "control", "control" }, doc.variants)
    local after = settled("spam-ab", function(r) return r.target_errors > before.target_errors end)
    assert.equal(before.variants[1].units + before.variants[2].units, after.variants[1].units + after.variants[2].units)
    assert.equal(before.target_errors + 1, after.target_errors)
  end)

  it("refuses an over-long unit alone: later predictions, feedback and events still land", function()
    local long = ("x"):rep(600)
    local status, _, _, refused = post("/v1/models/spam:predict", { instances = { { email_id = long } } })
    assert.equal(400, status)
    assert.equal("invalid", refused.error.code)
    assert.matches("email_id is longer than", refused.error.message)
    assert.equal(404, (get("/v1/experiments/" .. ("n"):rep(8000))))
    local _, _, _, ev = post("/v1/experiments/spam-ab/events", { events = { { unit = long, metric = "correct", value = 1 } } })
    assert.equal(1, #ev.rejected)
    local _, _, _, doc = post("/v1/models/spam:predict", { instances = { { email_id = "email-00011" } } })
    local landed = testing.run_until(function()
      local s, _, _, fb = post("/v1/feedback", { prediction_id = doc.prediction_ids[1], outcome = 1 })
      return s == 200 and (fb.accepted == 1 or fb.duplicate == 1)
    end, 5000)
    assert.is_true(landed)
  end)

  it("counts duplicate feedback once and refuses unknown, expired and malformed ids", function()
    local _, _, _, doc = post("/v1/models/spam:predict", { instances = { { email_id = "email-00007" } } })
    local id = doc.prediction_ids[1]
    local s1, _, _, r1 = post("/v1/feedback", { prediction_id = id, outcome = 1 })
    assert.equal(200, s1)
    assert.equal(1, r1.accepted + r1.pending)  -- pending: the other worker has not flushed it yet
    local s2, _, _, r2 = post("/v1/feedback", { prediction_id = id, outcome = 1 })
    assert.equal(200, s2)
    assert.equal(1, r2.duplicate)
    local fresh = string.format("%016x-1-1", math.floor(require("luv").gettimeofday() * 1e6) - 60e6)
    assert.equal(404, (post("/v1/feedback", { prediction_id = fresh, outcome = 1 })))
    assert.equal(410, (post("/v1/feedback", { prediction_id = "0000000000000001-1-1", outcome = 1 })))
    assert.equal(400, (post("/v1/feedback", { prediction_id = "nope", outcome = 1 })))
    assert.equal(400, (post("/v1/feedback", { prediction_id = id, outcome = { 1 } })))
    local _, _, _, mixed = post("/v1/feedback", { { prediction_id = "nope", outcome = 1 }, { prediction_id = id, outcome = 0 } })
    assert.same({ "rejected", "duplicate" }, { mixed.results[1].status, mixed.results[2].status })
  end)

  it("rejects bad events one by one and lands the good ones", function()
    local unit = string.format("email-%05d", test_rows[1])
    local _, _, _, doc = post("/v1/experiments/spam-ab/events", { events = {
      { unit = unit, metric = "correct", value = 1 },
      { unit = "never-seen", metric = "correct", value = 1 },
      { unit = unit, metric = "clicks", value = 1 },
      { unit = unit, metric = "correct", value = "yes" } } })
    assert.equal(1, doc.accepted)
    assert.equal(3, #doc.rejected)
    assert.matches("unknown unit", doc.rejected[1].reason)
    assert.matches("unknown metric", doc.rejected[2].reason)
    assert.matches("number", doc.rejected[3].reason)
    assert.equal(404, (post("/v1/experiments/ghost/events", { events = { { unit = "x", value = 1 } } })))
    assert.equal(400, (post("/v1/experiments/spam-ab/events", { events = {} })))
    local res = select(4, get("/v1/experiments/spam-ab"))
    assert.is_true(res.rejected_events >= 3)
  end)

  it("serves plain-data variants to handlers, sticky per unit", function()
    local colors = {}
    for i = 1, 40 do
      local _, _, _, doc = get("/banner/user-" .. i)
      local _, _, _, again = get("/v1/experiments/banner/assignment?unit=user-" .. i)
      assert.equal(doc.color, again.data.color)
      colors[doc.color] = true
    end
    assert.is_true(colors.red and colors.blue)
  end)

  it("flags the shifted feature, and only that one, and raises the alert", function()
    local cols = emails:names()
    local function full_row(scale)
      return function(row)
        local inst = {}
        for _, c in ipairs(cols) do
          if c ~= "label" then inst[c] = emails:col(c):get(row) end
        end
        if scale then inst.capitalTotal = inst.capitalTotal * scale end
        return inst
      end
    end
    replay("drift_a", test_rows, 100, { instance = full_row(nil), no_feedback = true })
    replay("drift_b", test_rows, 100, { instance = full_row(5), no_feedback = true })
    local _, _, _, a = get("/v1/models/drift_a/monitor")
    local _, _, _, b = get("/v1/models/drift_b/monitor")
    assert.same({}, a.versions[1].drift.drifted)
    assert.same({ "capitalTotal" }, b.versions[1].drift.drifted)
    local f = b.versions[1].drift.features.capitalTotal
    assert.is_true(f.psi > 0.2 and f.ks_p_value < 1e-6, json.encode(f))
    assert.is_true(testing.run_until(function() return srv.proc.stderr():find("ALERT drift in capitalTotal\n", 1, true) ~= nil end,
      5000), "the drift alert should fire: " .. srv.proc.stderr())
    local _, _, metrics = get("/metrics")
    assert.matches('tycho_drift_psi{model="drift_b",version="1.0.0",role="live",feature="capitalTotal"}', metrics, 1, true)
    assert.matches('tycho_experiment_units{experiment="spam-ab",variant="control"}', metrics, 1, true)
    assert.matches("rc=0", testing.promtool_check(metrics), 1, true)
  end)

  it("stops at once: every unit gets the control from the next request, and stays stopped", function()
    local status, _, _, doc = post("/v1/experiments/spam-ab:stop", {})
    assert.equal(200, status)
    assert.equal("control", doc.winner)
    local instances = {}
    for i = 1, 40 do instances[i] = { email_id = string.format("email-%05d", 2000 + i) } end
    -- Two workers: every request after the stop, whichever worker takes it.
    for _ = 1, 4 do
      local _, _, _, res = post("/v1/models/spam:predict", { instances = instances })
      for i = 1, 40 do assert.equal("control", res.variants[i]) end
    end
    assert.equal(409, (post("/v1/experiments/spam-ab/events", { events = { { unit = "email-00001", value = 1 } } })))
    srv:stop()
    srv = start("ab")
    local _, _, _, res = get("/v1/experiments/spam-ab")
    assert.equal("stopped", res.status)
    local _, _, _, again = post("/v1/models/spam:predict", { instances = instances })
    for i = 1, 40 do assert.equal("control", again.variants[i]) end
  end)

  it("refuses a bad --log-retention before serving", function()
    local code, _, err = testing.run({ "--home", home, "serve", "tests/lua/fixtures/experiment_app.lua", "--port", "1",
                                       "--log-retention", "forever" })
    assert.equal(1, code)
    assert.matches("bad duration 'forever'", err)
  end)

  it("answers feedback waiting for its group commit when SIGTERM drains the server", function()
    local uv = require "luv"
    local env = { "TYCHO_HOME=" .. home, "EXP_KIND=ab", "EXP_GROUP_MS=1500", "EXP_FLUSH_MS=60000" }
    local slow = testing.serve("tests/lua/fixtures/experiment_app.lua", { "--workers", "1" }, { env = env })
    finally(function()
      if slow.proc.code == nil then slow.proc:kill("sigkill") slow.proc:wait(5000) end
    end)
    local _, _, _, doc = testing.request(slow.port, "POST", "/v1/models/spam:predict",
      { body = { instances = { { email_id = "email-00011" } } } })
    local id = doc.prediction_ids[1]
    -- An idle client stays connected, so not every client waits: the
    -- feedback's group waits for its 1.5 s window (the log's own flush is a
    -- minute away), and SIGTERM comes first.
    local idle, idle_answered = uv.new_tcp(), false
    idle:connect("127.0.0.1", slow.port, function()
      idle:write("GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
      idle:read_start(function(_, data) if data then idle_answered = true end end)
    end)
    assert(testing.run_until(function() return idle_answered end, 5000), "the idle client got no answer")
    local body = json.encode { prediction_id = id, outcome = 1 }
    local texts = {}
    local fb = uv.new_tcp()
    fb:connect("127.0.0.1", slow.port, function(err)
      assert(not err, err)
      fb:write("POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
      fb:read_start(function(_, data) if data then texts[#texts + 1] = data elseif not fb:is_closing() then fb:close() end end)
    end)
    -- An observation window, not a wait: nothing may arrive in it.
    testing.run_until(function() return #texts > 0 end, 200)
    assert.equal(0, #texts, "answered before its group committed: " .. table.concat(texts))
    slow.proc:kill("sigterm")
    testing.run_until(function() return table.concat(texts):find("\r\n\r\n{") ~= nil end, 5000)
    local text = table.concat(texts)
    assert.matches("^HTTP/1.1 200", text)
    assert.matches('"accepted":1', text)
    assert.equal(0, slow.proc:wait(15000))
    idle:close()
    if not fb:is_closing() then fb:close() end
    local st = assert(require("tycho.store").open(home))
    assert.is_not_nil(st:get("outcomes", id))
  end)

  it("shifts traffic toward the better model with Thompson sampling", function()
    -- One worker: every outcome reaches the posterior before the next
    -- batch (with more, feedback may wait up to a second for another
    -- worker's log flush; fine for live traffic, too slow for a replay).
    srv:stop()
    srv = start("thompson", "1")
    local _, order = replay("spam", test_rows, 20)
    local function control_share(from, to)
      local n = 0
      for i = from, to do if order[i] == "control" then n = n + 1 end end
      return n / (to - from + 1)
    end
    local early, late = control_share(1, 200), control_share(#order - 300, #order)
    assert.is_true(late > 0.75 and late > early, string.format("control share early %.2f, late %.2f", early, late))
    local _, _, _, res = get("/v1/experiments/spam-thompson")
    assert.is_true(res.variants[1].units > res.variants[2].units)
    assert.equal(json.null, res.srm_p_value)
  end)
end)
