-- The routes of the console's serving page and experiment timeline (issue
-- 24) on a real server of two workers: what each worker hosts, a model's
-- traffic per version and role aggregated on the server, an experiment's
-- results over time from its hourly counters, the bounds of each answer,
-- and Stop / Declare winner refused without the token.
local testing = require "tycho.testing"
local console = dofile("tests/lua/fixtures/console.lua")

describe("the console's serving and experiment routes", function()
  local home, srv
  local auth = console.AUTH
  setup(function()
    home = dofile("tests/lua/fixtures/spam_home.lua")({ "spam_b" })
    local code, _, err = testing.run({ "--home", home, "run", "tests/lua/fixtures/experiment_history.lua" })
    assert(code == 0, err)
    srv = console.serve("tests/lua/fixtures/console_app.lua", home, { "--workers", "2" }, { "CONSOLE_SPLIT=1" })
  end)
  teardown(function() console.stop(srv, home) end)

  local function get(path) return testing.request(srv.port, "GET", path) end

  local function slots(m)
    local out = {}
    for _, s in ipairs(m.slots) do out[#out + 1] = { s.slot, s.model .. "@" .. s.alias, s.version, s.percent or s.weight } end
    return out
  end

  it("lists every worker with its slots: main, canary with its percent, shadow, experiment variants", function()
    local doc
    assert.is_true(testing.run_until(function()
      doc = select(4, get("/v1/serving"))
      return #doc.workers == 2
    end, 10000))
    assert.same({ "spam", "spam_b" }, doc.models)
    for i, w in ipairs(doc.workers) do
      assert.same({ srv.port, i - 1, true }, { w.port, w.worker, w.alive })
      assert.is_number(w.pid)
      assert.is_true(w.seen_seconds_ago < doc.stale_seconds)
      local spam, split = w.models[1], w.models[2]
      assert.same({ "spam", true, "spam_b", "spam_b-split" }, { spam.name, spam.ready, split.name, split.experiment })
      assert.same({ { "main", "spam@production", "1.0.0" }, { "canary", "spam@staging", "1.0.1", 10 },
                    { "shadow", "spam@staging", "1.0.1" } }, slots(spam))
      assert.same({ { "main", "spam_b@production", "1.0.0" }, { "variant:control", "spam_b@production", "1.0.0", 0.8 },
                    { "variant:v2", "spam@staging", "1.0.1", 0.2 } }, slots(split))
    end
  end)

  it("aggregates a model's traffic per version and role over equal slices", function()
    local instances = {}
    for i = 1, 200 do instances[i] = { id = "u" .. i, capitalTotal = i, word_freq_free = 0.1 } end
    local status, _, body = testing.request(srv.port, "POST", "/v1/models/spam:predict",
      { body = { instances = instances }, headers = auth })
    assert.equal(200, status, body)
    local doc, by = nil, {}
    -- Shadow answers are logged after the response, by the worker's next flush.
    assert.is_true(testing.run_until(function()
      doc = select(4, get("/v1/serving/spam?window=15m&buckets=30"))
      by = {}
      for _, v in ipairs(doc.versions) do by[v.version .. " " .. v.role] = v end
      return by["1.0.1 shadow"] ~= nil and by["1.0.1 shadow"].volume == 200
    end, 10000))
    assert.same({ 30, 30, 30 }, { #doc.t, #by["1.0.0 live"].series.req_s, #by["1.0.1 shadow"].series.p99_ms })
    assert.near(30, doc.bucket_seconds, 1e-9)
    -- The canary takes its 10 % of units by hash: some, never most.
    local canary = by["1.0.1 live"] and by["1.0.1 live"].volume or 0
    assert.equal(200, by["1.0.0 live"].volume + canary)
    assert.is_true(canary > 0 and canary < 60)
    for _, v in pairs(by) do
      local sum = 0
      for _, r in ipairs(v.series.req_s) do sum = sum + r * doc.bucket_seconds end
      assert.near(v.volume, sum, 1e-6)
      assert.near(v.volume / 900, v.req_s, 1e-9)
      assert.is_number(v.latency_ms.p99)
    end
    assert.same({ 400, 400, 400, 400 }, { get("/v1/serving/spam?buckets=0"), get("/v1/serving/spam?buckets=501"),
                                          get("/v1/serving/spam?window=91d"), (get("/v1/serving/spam?window=soon")) })
    local _, _, _, none = get("/v1/serving/nobody")
    assert.same({}, none.versions)
  end)

  it("gives an experiment's lift with its interval, traffic per day and a bandit's allocation over time", function()
    local _, _, _, results = get("/v1/experiments/checkout")
    local status, _, body, tl = get("/v1/experiments/checkout/timeline?window=30d&buckets=12")
    assert.equal(200, status, body)
    -- Four days and an hour in 12 slices of whole hours.
    assert.is_true(#tl.slices.t <= 12 and tl.slice_seconds % 3600 == 0)
    assert.equal(5, #tl.days.day)
    local last = #tl.slices.t
    for i, v in ipairs(tl.slices.variants) do
      assert.equal(results.variants[i].units, v.units[last])
      local per_day = 0
      for d = 1, #tl.days.day do per_day = per_day + tl.days.variants[i].units[d] end
      assert.equal(v.units[last], per_day)
      for k = 2, last do assert.is_true(v.units[k] >= v.units[k - 1]) end
    end
    local treatment = tl.slices.variants[2]
    assert.near(results.variants[2].lift, treatment.lift[last], 1e-9)
    assert.is_true(treatment.lift_lo[last] < treatment.lift[last] and treatment.lift[last] < treatment.lift_hi[last])
    -- The bandit's shares of new units: they sum to 1, and red's grows.
    local _, _, _, bandit = get("/v1/experiments/banner/timeline?buckets=4")
    local shares = {}
    for k = 1, #bandit.slices.t do
      local sum = 0
      for _, v in ipairs(bandit.slices.variants) do sum = sum + v.share[k] end
      assert.near(1, sum, 1e-9)
      shares[k] = bandit.slices.variants[3].share[k]
    end
    assert.is_true(shares[#shares] > shares[1])
    -- A window of a day reads that day's hours only.
    local _, _, _, day = get("/v1/experiments/checkout/timeline?window=1d&buckets=500")
    assert.same({ 3600, 24 }, { day.slice_seconds, #day.slices.t })
    assert.same({ 400, 400, 404 }, { get("/v1/experiments/checkout/timeline?buckets=501"),
      get("/v1/experiments/checkout/timeline?window=366d"), (get("/v1/experiments/nope/timeline")) })
  end)

  it("stops an experiment or declares its winner only with the token", function()
    local path = "/v1/experiments/layout:stop"
    assert.equal(401, (testing.request(srv.port, "POST", path, { body = { winner = "narrow" } })))
    local _, _, _, still = get("/v1/experiments/layout")
    assert.equal("running", still.status)
    local status, _, _, refused = testing.request(srv.port, "POST", path, { body = { winner = "tall" }, headers = auth })
    assert.same({ 400, "no variant 'tall'" }, { status, refused.error.message })
    local _, _, body, doc = testing.request(srv.port, "POST", path, { body = { winner = "narrow" }, headers = auth })
    assert.same({ "stopped", "narrow" }, { doc.status, doc.winner }, body)
    local _, _, _, tl = get("/v1/experiments/layout/timeline")
    assert.equal("stopped", tl.status)
  end)
end)
