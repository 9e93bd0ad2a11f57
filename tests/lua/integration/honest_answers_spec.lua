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

  it("runs AutoML over a pipeline factory, leaving the keys and time out", function()
    local wrapped = 0
    local res = assert(tycho.automl { data = training, label = "diabetes", budget = 4, cv = 2, seed = 5,
      families = { "logistic", "gbt" }, blend = false,
      pipeline = function(model)
        wrapped = wrapped + 1
        return tycho.pipeline { steps = { tycho.step.standardize {} }, model = model }
      end })
    assert.is_true(wrapped >= 5)  -- every trial, and the final pipeline
    assert.equal("standardize", res.pipeline.steps[1].kind)
    assert.same({ "glucose", "mass" }, res.pipeline.inputs)
  end)
end)

describe("ingestion accounts for every row (20.7)", function()
  local home, fs
  local json = require "tycho.json"
  before_each(function()
    home = testing.tmpdir()
    fs = assert(features.open({ home = home }))
    fs:entity { name = "user", join_key = "user_id" }
    assert(fs:feature_view { name = "v", entity = "user", schema = { n = "int", x = "float", s = "string" } })
  end)
  after_each(function()
    fs.store:close()
    testing.rmrf(home)
  end)

  local function quarantined(rep)
    local lines = {}
    if not rep.quarantine then return lines end
    for l in io.lines(rep.quarantine) do
      local r = json.decode(l)
      if r.line then lines[#lines + 1] = r.line end
    end
    return lines
  end

  local function adds_up(rep)
    assert.equal(rep.rows_read, rep.landed + rep.rejected + rep.unchanged)
  end

  it("counts and quarantines past the reader's first thousand issues", function()
    local parts = { "user_id,event_time,n,x,s" }
    for i = 1, 4500 do
      parts[#parts + 1] = i % 3 == 0 and string.format("u%d,%d,oops,1.5,a", i, 1000 + i)
        or string.format("u%d,%d,%d,1.5,a", i, 1000 + i, i)
    end
    local rep = assert(fs:ingest("v", testing.write(home .. "/many.csv", table.concat(parts, "\n") .. "\n")))
    assert.same({ 4500, 3000, 1500, 0 }, { rep.rows_read, rep.landed, rep.rejected, rep.unchanged })
    assert.equal(1500, #quarantined(rep))
  end)

  it("refuses an over-long key, an int overflow and non-finite or hexadecimal numbers, each with a reason", function()
    local long = string.rep("k", 600)
    local rep = assert(fs:push("v", {
      { user_id = long, event_time = 1, n = 1 },
      { user_id = "a", event_time = 1, n = 99999999999999999999 },
      { user_id = "b", event_time = 1, x = "nan" },
      { user_id = "c", event_time = 1, x = "inf" },
      { user_id = "d", event_time = 1, x = "1e999" },
      { user_id = "e", event_time = 1, x = "0x10" },
      { user_id = "f", event_time = 1, n = "12", x = "-2.5e3" },
    }))
    assert.same({ 7, 1, 6 }, { rep.rows_read, rep.landed, rep.rejected })
    local reasons = {}
    for _, is in ipairs(rep.issues) do reasons[#reasons + 1] = is.reason end
    table.sort(reasons)
    assert.same({
      "entity key 'user_id' is longer than 256 bytes",
      "feature 'n': integer out of range (beyond ±2^53) (1e+20)",
      "feature 'x': not a decimal number (0x10)",
      "feature 'x': not a decimal number (inf)",
      "feature 'x': not a decimal number (nan)",
      "feature 'x': not a finite number (1e999)",
    }, reasons)
    local out = assert(fs:online({ "v:n", "v:x" }, { user_id = { "f" } }))
    assert.same({ 12, -2500 }, { out.results[2].values[1], out.results[3].values[1] })
  end)

  it("names CR-only line endings and a duplicate header instead of reading nothing", function()
    local _, why = fs:ingest("v", testing.write(home .. "/mac.csv", "user_id,event_time,n\ru1,1,2\ru2,2,3\r"))
    assert.matches("CR-only line endings", why, 1, true)
    _, why = fs:ingest("v", testing.write(home .. "/dup.csv", "user_id,event_time,n,n\nu1,1,2,3\n"))
    assert.matches("column 'n' appears twice in the header (columns 3 and 4)", why, 1, true)
    local rep = assert(fs:ingest("v", testing.write(home .. "/int.csv",
      "user_id,event_time,n,x\nu1,1,99999999999999999999,0x10\nu2,1,5,1e999\nu3,1,6,2\n")))
    assert.same({ 3, 1, 2 }, { rep.rows_read, rep.landed, rep.rejected })
  end)

  it("counts a re-ingest as unchanged, not landed", function()
    local path = testing.write(home .. "/s.csv", "user_id,event_time,n\nu1,1,2\nu2,2,3\n")
    local first = assert(fs:ingest("v", path))
    local second = assert(fs:ingest("v", path))
    assert.same({ 2, 0 }, { first.landed, first.unchanged })
    assert.same({ 0, 2 }, { second.landed, second.unchanged })
    adds_up(first)
    adds_up(second)
  end)

  it("adds up on random files with every kind of bad row (property)", function()
    math.randomseed(20)
    local bad_kinds = {
      function(i) return string.format("u%d,%d,%s,1.0,a", i, i, "x") end,               -- not an int
      function(i) return string.format("u%d,%d,1,%s,a", i, i, "inf") end,               -- not finite
      function(i) return string.format("u%d,%d,1", i, i) end,                           -- short row
      function(i) return string.format("u%d,%d,1,1.0,a,extra", i, i) end,              -- long row
      function(i) return string.format("%s,%d,1,1.0,a", string.rep("z", 300), i) end,  -- over-long key
      function(i) return string.format(",%d,1,1.0,a", i) end,                           -- no key
      function(i) return string.format("u%d,not-a-time,1,1.0,a", i) end,                -- bad time
      function(i) return string.format("u%d,%d,99999999999999999999,1.0,a", i, i) end,  -- overflow
      function(i) return string.format("u%d,%d,1,0x1f,a", i, i) end,                    -- hexadecimal
    }
    for round = 1, 12 do
      local parts, bad_lines = { "user_id,event_time,n,x,s" }, {}
      local rows = math.random(1, 400)
      for i = 1, rows do
        if math.random() < 0.3 then
          parts[#parts + 1] = bad_kinds[math.random(#bad_kinds)](i)
          bad_lines[#bad_lines + 1] = i + 1
        elseif math.random() < 0.1 and i > 1 then
          parts[#parts + 1] = parts[#parts]  -- a duplicate of the previous row (or of a bad one)
          bad_lines[#bad_lines + 1] = i + 1
        else
          parts[#parts + 1] = string.format("u%d,%d,%d,%g,s%d", i % 50, 1000 + i, i, i / 7, i)
        end
      end
      local rep = assert(fs:ingest("v", testing.write(home .. "/r" .. round .. ".csv", table.concat(parts, "\n") .. "\n")))
      assert.equal(rows, rep.rows_read)
      adds_up(rep)
      local q = quarantined(rep)
      table.sort(q)
      assert.same(bad_lines, q, "round " .. round)
    end
  end)
end)
