-- Issue 23.4: data-quality metadata kept current by every ingest and push,
-- equal to a recomputation from the stored rows (counts, nulls, mean,
-- variance exactly; distinct values and entities within the sketch's
-- error), with expectations checked and consumers named.
local tycho = require "tycho"
local testing = require "tycho.testing"
local frame = tycho.frame

describe("feature data quality", function()
  local home, fs
  before_each(function()
    home = testing.tmpdir()
    fs = assert(tycho.features.open({ home = home }))
    fs:entity { name = "user", join_key = "user_id" }
    assert(fs:feature_view { name = "stats", entity = "user", owner = "growth",
                             schema = { spend = "float", visits = "int", vip = "bool", city = "string" },
                             expect = { max_missing = 0.1, max_lag = "1h" } })
  end)
  after_each(function()
    fs.store:close()
    testing.rmrf(home)
  end)

  local function recompute()
    local f = fs:export("stats")
    local out = { rows = f:nrows(), entities = {}, features = {} }
    for i = 1, f:nrows() do out.entities[f:col("user_id"):get(i)] = true end
    for _, name in ipairs { "spend", "visits", "vip", "city" } do
      local col, n, nulls, sum, seen, distinct = f:col(name), 0, 0, 0, {}, 0
      local xs = {}
      for i = 1, f:nrows() do
        local x = col:get(i)
        if x == nil then nulls = nulls + 1
        else
          if not seen[x] then seen[x], distinct = true, distinct + 1 end
          if type(x) == "boolean" then x = x and 1 or 0 end
          n = n + 1
          if type(x) == "number" then sum, xs[#xs + 1] = sum + x, x end
        end
      end
      local mean, var = #xs > 0 and sum / #xs or nil, nil
      if #xs > 1 then
        var = 0
        for _, x in ipairs(xs) do var = var + (x - mean) ^ 2 end
        var = var / (#xs - 1)
      end
      out.features[name] = { values = n, nulls = nulls, mean = mean, variance = var, distinct = distinct }
    end
    return out
  end

  it("equals a recomputation from the stored rows after ingests, pushes and corrections", function()
    math.randomseed(4)
    local function batch(first, last, t)
      local cols = { user_id = {}, event_time = {}, spend = {}, visits = {}, vip = {}, city = {} }
      for i = first, last do
        local k = #cols.user_id + 1
        cols.user_id[k], cols.event_time[k] = "u" .. i, t
        cols.spend[k] = math.random() < 0.05 and nil or math.random() * 500
        cols.visits[k] = math.random(0, 40)
        cols.vip[k] = math.random() < 0.2
        cols.city[k] = ({ "paris", "oslo", "lima", "kyiv" })[math.random(4)]
      end
      return frame.new(cols, { types = { spend = "float", visits = "int", vip = "bool", city = "string",
                                         user_id = "string", event_time = "int" }, n = last - first + 1 })
    end
    local now = os.time()
    assert(fs:ingest("stats", batch(1, 300, now - 7200)))
    assert(fs:ingest("stats", batch(200, 450, now - 3600)))
    assert(fs:push("stats", batch(400, 500, now - 60), "online_and_offline"))
    -- A partial push (visits only) and a correction of a stored row.
    assert(fs:push("stats", { user_id = { "u7" }, visits = { 99 }, event_time = { now } }, "online_and_offline"))
    assert(fs:ingest("stats", batch(10, 20, now - 7200)))  -- same keys as the first batch, new values
    local q = assert(fs:quality("stats"))
    local want = recompute()
    assert.equal(want.rows, q.rows)
    local n_entities = 0
    for _ in pairs(want.entities) do n_entities = n_entities + 1 end
    assert.near(n_entities, q.entities, n_entities * 0.1)
    for _, f in ipairs(q.features) do
      local w = want.features[f.name]
      assert.equal(w.values, f.values, f.name)
      assert.equal(w.nulls, f.nulls, f.name)
      if w.mean then
        assert.near(w.mean, f.mean, 1e-9 * math.max(1, math.abs(w.mean)))
        assert.near(w.variance, f.variance, 1e-7 * math.max(1, w.variance))
      end
      assert.near(w.distinct, f.distinct, math.max(1, w.distinct * 0.1))
    end
    assert.equal(5, q.ingests)
    assert.is_true(q.freshness_seconds >= 0 and q.freshness_seconds < 120)
    for _, f in ipairs(q.features) do
      if f.name == "spend" then assert.equal(16, #f.histogram.counts) end
      if f.name == "city" then assert.equal(require("tycho.json").null, f.histogram) end
    end
  end)

  it("checks the view's expectations and names its consumers", function()
    local old = os.time() - 3 * 3600
    assert(fs:ingest("stats", frame.new({ user_id = { "a", "b", "c" }, event_time = { old, old, old },
      spend = { 1.5, nil, nil }, visits = { 1, 2, 3 } }, { n = 3, types = { spend = "float", visits = "int" } })))
    local q = assert(fs:quality("stats"))
    table.sort(q.violations)
    assert.equal(4, #q.violations)  -- spend, vip and city are 67-100 % missing; the newest event is 3 h old
    assert.matches("^city: 100.0%% missing", q.violations[1])
    assert.matches("freshness: the newest event is %d+s old, more than 3600s", q.violations[2])
    local training = assert(fs:historical(frame.new({ user_id = { "a", "b", "c" }, event_time = { old + 1, old + 1, old + 1 },
      y = { 0, 1, 0 } }), { "stats:visits" }))
    local pipe = assert(tycho.pipeline { features = { "stats:visits" }, model = tycho.models.linear {} }
      :fit(training, { label = "y", quiet = true }))
    local reg = assert(tycho.registry.open({ store = fs.store }))
    assert(reg:register("churn", pipe))
    assert.same({ "churn 1.0.0" }, fs:quality("stats").consumers)
    local ok, msg = pcall(fs.feature_view, fs, { name = "bad", entity = "user", schema = { x = "int" },
                                                  expect = { max_mising = 0.1 } })
    assert.is_false(ok)
    assert.matches("unknown expectation 'max_mising'", msg, 1, true)
  end)
end)
