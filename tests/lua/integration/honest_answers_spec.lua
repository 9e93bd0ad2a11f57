-- Issue 20: nothing a user relies on is silently wrong. One regression per
-- numbered item of the issue, each of which failed before its fix.
local tycho = require "tycho"
local testing = require "tycho.testing"
local features, frame = tycho.features, tycho.frame

describe("a partial push (20.1)", function()
  local home, fs
  before_each(function()
    home = testing.tmpdir()
    fs = assert(features.open({ home = home }))
    fs:entity { name = "patient", join_key = "patient_id" }
    assert(fs:feature_view { name = "pima", entity = "patient",
                             schema = { glucose = "float", mass = "float", age = "int" } })
    assert(fs:push("pima", { patient_id = { "p1" }, glucose = { 148 }, mass = { 33.6 }, age = { 50 },
                             event_time = { "2026-01-01T00:00:00Z" } }, "online_and_offline"))
  end)
  after_each(function()
    fs.store:close()
    testing.rmrf(home)
  end)

  local function online(id)
    local r = assert(fs:online({ "pima:glucose", "pima:mass", "pima:age" }, { patient_id = { id } }))
    return { glucose = r.results[2].values[1], mass = r.results[3].values[1], age = r.results[4].values[1],
             statuses = { r.results[2].statuses[1], r.results[3].statuses[1], r.results[4].statuses[1] } }
  end

  it("updates what it names and keeps the entity's other features", function()
    local rep = assert(fs:push("pima", { patient_id = { "p1" }, glucose = { 99 },
                                          event_time = { "2026-01-02T00:00:00Z" } }, "online_and_offline"))
    assert.equal(1, rep.landed)
    local got = online("p1")
    assert.same({ glucose = 99, mass = 33.6, age = 50, statuses = { "PRESENT", "PRESENT", "PRESENT" } }, got)
    -- The offline history answers the same at and after the push.
    local spine = frame.new({ patient_id = { "p1", "p1" }, event_time = { "2026-01-01T12:00:00Z", "2026-01-03T00:00:00Z" } })
    local h = assert(fs:historical(spine, { "pima:glucose", "pima:mass", "pima:age" }))
    assert.same({ 148, 99 }, h:col("glucose"):to_table())
    assert.same({ 33.6, 33.6 }, h:col("mass"):to_table())
    assert.same({ 50, 50 }, h:col("age"):to_table())
  end)

  it("keeps an explicit null as null", function()
    assert(fs:push("pima", { { patient_id = "p1", glucose = 101, mass = require("tycho.json").null,
                               event_time = "2026-01-02T00:00:00Z" } }))
    local got = online("p1")
    assert.equal(101, got.glucose)
    assert.equal("NULL_VALUE", got.statuses[2])
    assert.equal(50, got.age)
  end)

  it("carries the values in force at the pushed time, not later ones", function()
    assert(fs:push("pima", { patient_id = { "p1" }, mass = { 40 }, event_time = { "2026-01-05T00:00:00Z" } },
                   "online_and_offline"))
    -- A late row for Jan 3 carries Jan 1's mass (33.6), not Jan 5's.
    assert(fs:push("pima", { patient_id = { "p1" }, glucose = { 120 }, event_time = { "2026-01-03T00:00:00Z" } },
                   "offline"))
    local spine = frame.new({ patient_id = { "p1" }, event_time = { "2026-01-04T00:00:00Z" } })
    local h = assert(fs:historical(spine, { "pima:glucose", "pima:mass" }))
    assert.equal(120, h:col("glucose"):get(1))
    assert.equal(33.6, h:col("mass"):get(1))
  end)

  it("fills nothing for an entity seen for the first time", function()
    assert(fs:push("pima", { patient_id = { "p2" }, glucose = { 90 }, event_time = { "2026-01-02T00:00:00Z" } }))
    local got = online("p2")
    assert.same({ "PRESENT", "NULL_VALUE", "NULL_VALUE" }, got.statuses)
  end)

  it("treats a CSV without a feature's column the same way", function()
    local path = testing.write(home .. "/part.csv", "patient_id,event_time,age\np1,2026-01-02T00:00:00Z,51\n")
    assert.equal(1, assert(fs:ingest("pima", path)).landed)
    assert.same({ glucose = 148, mass = 33.6, age = 51, statuses = { "PRESENT", "PRESENT", "PRESENT" } }, online("p1"))
  end)
end)

describe("promotion policies (20.2)", function()
  local home, reg
  local json = require "tycho.json"
  local http = require "tycho.http"

  local function fitted()
    local n, x, y = 200, {}, {}
    for i = 1, n do x[i], y[i] = i % 17, (i % 17 > 8) and "pos" or "neg" end
    local f = frame.new({ x = x, label = y })
    return assert(tycho.pipeline { model = tycho.models.gbt { rounds = 2 } }:fit(f, { label = "label", quiet = true }))
  end

  before_each(function()
    home = testing.tmpdir()
    reg = assert(tycho.registry.open({ home = home }))
    local pipe = fitted()
    assert(reg:register("diabetes", pipe, { metrics = { auc = 0.8118 } }))   -- 1.0.0
    assert(reg:register("diabetes", pipe, { metrics = { auc = 0.8238 } }))   -- 1.0.1
    assert(reg:promote("diabetes", "1.0.1", "production"))
    assert(reg:policy("diabetes", "production", { gates = { auc = 0.82 }, no_worse_than = { metric = "auc" } }))
  end)
  after_each(function()
    reg.store:close()
    testing.rmrf(home)
  end)

  it("holds in Lua without the caller naming any gate, listing every reason", function()
    local ok, msg, code, reasons = reg:promote("diabetes", "1.0.0", "production")
    assert.is_nil(ok)
    assert.equal("forbidden", code)
    assert.equal(2, #reasons)
    assert.matches("auc 0.8118 is below the gate 0.82", msg, 1, true)
    assert.matches("auc as recorded is 0.8118 against 0.8238 for 1.0.1 (production)", msg, 1, true)
    assert.equal("1.0.1", reg:get("diabetes", "production").version)
  end)

  it("holds on the command line (exit 1) and records a forced override with its reason", function()
    reg.store:close()
    local function cli(...) return testing.run({ "--home", home, "models", ... }) end
    local code, _, err = cli("promote", "diabetes", "1.0.0", "production")
    assert.equal(1, code)
    assert.matches("refused:\n  - auc 0.8118 is below the gate 0.82\n  - auc as recorded", err, 1, true)
    assert.equal(2, (cli("promote", "diabetes", "1.0.0", "production", "--bogus")))
    code, _, err = cli("promote", "diabetes", "1.0.0", "production", "--force")
    assert.equal(1, code)
    assert.matches("a forced promotion needs a reason", err, 1, true)
    local out
    code, out = cli("promote", "diabetes", "1.0.0", "production", "--force", "--reason", "incident 42: 1.0.1 leaks")
    assert.equal(0, code)
    assert.matches("forced: incident 42", out, 1, true)
    reg = assert(tycho.registry.open({ home = home }))
    local last = reg:history("diabetes")[#reg:history("diabetes")]
    assert.same({ true, "incident 42: 1.0.1 leaks", "1.0.0" }, { last.forced, last.reason, last.to })
    assert.equal(2, #last.overrode)
    code, out = cli("show", "diabetes")
    assert.equal(0, code)
    assert.matches("forced: incident 42: 1.0.1 leaks; overrode: auc 0.8118 is below", out, 1, true)
  end)

  it("is set and read from the command line", function()
    reg.store:close()
    local function cli(...) return testing.run({ "--home", home, "models", ... }) end
    local code, out = cli("policy", "diabetes", "staging", "--gate", "auc=0.9", "--approval")
    assert.equal(0, code, out)
    code, out = cli("policy", "diabetes", "staging")
    assert.equal(0, code)
    assert.same({ gates = { auc = 0.9 }, approval = true, schema = true }, json.decode(out))
    assert.equal(2, (cli("policy", "diabetes", "staging", "--gate", "auc")))
    code = cli("promote", "diabetes", "1.0.1", "staging")
    assert.equal(1, code)
    reg = assert(tycho.registry.open({ home = home }))
    -- An approval alone is not enough past a failing gate; with the gate met it is.
    assert(reg:policy("diabetes", "staging", { approval = true }))
    local ok, msg = reg:promote("diabetes", "1.0.1", "staging")
    assert.is_nil(ok)
    assert.matches("staging needs an approval", msg, 1, true)
    assert(reg:promote("diabetes", "1.0.1", "staging", { approved_by = "ana" }))
    assert.equal("ana", reg:history("diabetes")[#reg:history("diabetes")].approved_by)
  end)

  it("refuses a malformed policy by name", function()
    local ok, msg, code = reg:policy("diabetes", "production", { gate = { auc = 1 } })
    assert.is_nil(ok)
    assert.equal("invalid", code)
    assert.matches("unknown option 'gate' (did you mean 'gates'?)", msg, 1, true)
  end)

  it("holds over HTTP: 403 with every reason, and a forced move needs its reason", function()
    local app = http.app()
    app.home = reg.store
    local handle = app:handler()
    local function call(method, path, body)
      local status, _, text = handle({ method = method, path = path, query_string = "", body = body or "",
                                       headers = {}, peer = "127.0.0.1:1" })
      return status, json.decode(text)
    end
    local status, doc = call("POST", "/v1/registry/models/diabetes/aliases/production", '{"version":"1.0.0"}')
    assert.equal(403, status)
    assert.equal("forbidden", doc.error.code)
    assert.equal(2, #doc.error.reasons)
    status = call("POST", "/v1/registry/models/diabetes/aliases/production", '{"version":"1.0.0","force":true}')
    assert.equal(400, status)
    status, doc = call("POST", "/v1/registry/models/diabetes/aliases/production",
                       '{"version":"1.0.0","force":true,"reason":"rollback drill"}')
    assert.equal(200, status)
    assert.is_true(doc.forced)
    status, doc = call("GET", "/v1/registry/models/diabetes")
    assert.equal(200, status)
    assert.equal("1.0.0", doc.aliases.production)
    assert.equal(0.82, doc.policies.production.gates.auc)
    status = call("GET", "/v1/registry/models/ghost")
    assert.equal(404, status)
    status, doc = call("PUT", "/v1/registry/models/diabetes/aliases/production/policy", "null")
    assert.equal(200, status)
    assert.equal(json.null, doc.policy)
  end)
end)

describe("training from the feature store (20.4, 20.5)", function()
  local home, fs, training
  before_each(function()
    home = testing.tmpdir()
    fs = assert(features.open({ home = home }))
    fs:entity { name = "patient", join_key = "patient_id" }
    assert(fs:feature_view { name = "pima", entity = "patient", schema = { glucose = "float", mass = "float" } })
    local ids, glucose, mass, label, times = {}, {}, {}, {}, {}
    for i = 1, 240 do
      ids[i], times[i] = string.format("p%04d", i), 1700000000 + i * 3600
      glucose[i], mass[i] = 80 + (i * 37) % 120, 20 + (i * 13) % 30
      label[i] = glucose[i] + mass[i] > 150 and "pos" or "neg"
    end
    assert(fs:ingest("pima", frame.new({ patient_id = ids, event_time = times, glucose = glucose, mass = mass })))
    training = assert(fs:historical(frame.new({ patient_id = ids, event_time = times, diabetes = label }),
                                    { "pima:glucose", "pima:mass" }))
  end)
  after_each(function()
    fs.store:close()
    testing.rmrf(home)
  end)

  it("knows its keys and event time, through the operations that keep them", function()
    assert.same({ keys = { "patient_id" }, time = "event_time" }, training:roles())
    local train, test = training:split { test = 0.25, seed = 1 }
    assert.same({ keys = { "patient_id" }, time = "event_time" }, train:roles())
    assert.same({ keys = { "patient_id" }, time = "event_time" }, test:head(5):roles())
    assert.same({ time = "event_time", keys = {} }, training:drop("patient_id"):roles())
    assert.is_nil(training:select("glucose"):roles())
  end)

  it("never trains on the timestamp or the key unless named, and says so", function()
    local m = assert(tycho.models.gbt { rounds = 5 }:fit(training, { label = "diabetes", quiet = true }))
    assert.same({ "glucose", "mass" }, m.features)
    assert.same({ { name = "event_time", why = "event time" }, { name = "patient_id", why = "entity key" } }, m.left_out)
    local named = assert(tycho.models.gbt { rounds = 5 }:fit(training,
      { label = "diabetes", features = { "glucose", "event_time" }, quiet = true }))
    assert.same({ "glucose", "event_time" }, named.features)
  end)

  it("refuses a text column by name rather than dropping it", function()
    local f = frame.new({ x = { 1, 2, 3, 4 }, city = { "a", "b", "a", "b" }, y = { 0, 1, 0, 1 } })
    local ok, msg = tycho.models.gbt { rounds = 2 }:fit(f, { label = "y", quiet = true })
    assert.is_nil(ok)
    assert.matches("column 'city' is text", msg, 1, true)
  end)

  it("tunes without the leak, and tunes a pipeline's steps with its model", function()
    local res = tycho.tune.grid { model = function(p) return tycho.models.gbt { rounds = 3, depth = p.depth } end,
      space = { depth = { 2, 3 } }, data = training, label = "diabetes", metric = "auc", cv = 2, quiet = true }
    assert.same({ "glucose", "mass" }, res.fitted.features)
    assert.equal(2, #res.left_out)
    local seen = {}
    res = tycho.tune.bayes {
      model = function(p)
        seen[#seen + 1] = p.hi
        return tycho.pipeline { steps = { tycho.step.clip { columns = { "glucose" }, max = p.hi } },
                                model = tycho.models.logistic {} }
      end,
      space = { hi = { 100, 200 } }, data = training, label = "diabetes", metric = "auc", cv = 2, trials = 4, init = 2,
      seed = 3, quiet = true }
    assert.is_true(tycho.pipeline.is_pipeline(res.fitted))
    assert.same({ "glucose", "mass" }, res.fitted.inputs)
    assert.equal(res.best.params.hi, res.fitted.steps[1].opts.max)
    assert.is_true(#seen >= 4 * 2)  -- every trial fits its steps per fold
    assert.is_number(res.best.score)
    local p = res.fitted:predict(training:head(1):row(1))
    assert.is_number(p.probability)
  end)
end)
