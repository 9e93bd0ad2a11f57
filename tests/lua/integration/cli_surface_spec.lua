-- Issue 21: every object from the command line, one grammar (NAME,
-- NAME@ALIAS, NAME VERSION), --json on every read command, help that runs
-- nothing, and numbers that read back.
local testing = require "tycho.testing"
local json = require "tycho.json"

describe("the command line surface", function()
  local home, dir
  local function tycho(...) return testing.run({ "--home", home, ... }) end
  local function doc(...)
    local code, out, err = tycho(...)
    assert.equal(0, code, err)
    local d = json.decode(out)
    assert.is_table(d, "not one JSON document: " .. out)
    return d
  end

  setup(function()
    dir = testing.tmpdir()
    home = dir .. "/home"
    testing.write(dir .. "/features.lua", [[
      return {
        entities = { { name = "patient", join_key = "patient_id" } },
        views = { { name = "pima", entity = "patient", schema = { glucose = "float", mass = "float" }, ttl = "3650d" } },
      }]])
    local rows = { "patient_id,event_time,glucose,mass" }
    for i = 1, 120 do
      rows[#rows + 1] = string.format("p%03d,2026-01-01T00:00:00Z,%d,%.1f", i, 80 + (i * 37) % 120, 20 + (i * 13) % 30 + 0.6)
    end
    testing.write(dir .. "/pima.csv", table.concat(rows, "\n") .. "\n")
    testing.write(dir .. "/train.lua", [[
      local tycho = require "tycho"
      local fs = assert(tycho.features.open())
      local ids, times, label = {}, {}, {}
      for i = 1, 120 do ids[i], times[i], label[i] = string.format("p%03d", i), "2026-01-02T00:00:00Z", i % 3 == 0 and 1 or 0 end
      local training = assert(fs:historical(tycho.frame.new({ patient_id = ids, event_time = times, y = label }),
                                            { "pima:glucose", "pima:mass" }))
      local reg = assert(tycho.registry.open())
      for _, depth in ipairs { 2, 3 } do
        local pipe = assert(tycho.pipeline { features = { "pima:glucose", "pima:mass" },
                                             model = tycho.models.gbt { rounds = 5, depth = depth } }
          :fit(training, { label = "y", quiet = true }))
        local v = assert(reg:register("diabetes", pipe, { metrics = pipe:evaluate(training), description = "depth " .. depth }))
        assert(reg:promote("diabetes", v, depth == 2 and "production" or "staging", { gates = { schema = false } }))
      end]])
  end)
  teardown(function() testing.rmrf(dir) end)

  it("answers --help on stdout with exit 0 and creates no home", function()
    for _, args in ipairs { { "models", "--help" }, { "models", "list", "--help" }, { "models", "show", "-h" },
                            { "runs", "--help" }, { "features", "apply", "--help" }, { "monitor", "--help" },
                            { "help", "models", "promote" }, { "score", "--help" }, { "serve", "--help" } } do
      local code, out = testing.run({ "--home", dir .. "/never", unpack(args) })
      assert.equal(0, code, table.concat(args, " "))
      assert.matches("usage: tycho", out)
      assert.is_nil(io.open(dir .. "/never"), "help created a home: " .. table.concat(args, " "))
    end
    local _, out = testing.run({ "help", "models", "promote" })
    assert.matches("--force --reason", out, 1, true)
  end)

  it("defines, ingests and materializes feature views like feast apply", function()
    local code, out = tycho("features", "apply", dir .. "/features.lua")
    assert.equal(0, code, out)
    assert.matches("created view pima (version 1)", out, 1, true)
    code, out = tycho("features", "apply", dir .. "/features.lua")
    assert.equal(0, code)
    assert.matches("view pima unchanged", out, 1, true)
    local rep = doc("features", "ingest", "pima", dir .. "/pima.csv", "--json")
    assert.same({ 120, 120, 0 }, { rep.rows_read, rep.landed, rep.rejected })
    local m = doc("features", "materialize", "pima", "--json")
    assert.equal("pima", m.view)
    local show = doc("features", "show", "pima", "--json")
    assert.equal("pima", show.name)
    assert.equal(120, show.quality.rows)
    assert.equal("pima", doc("features", "list", "--json").views[1].name)
    assert.equal(1, (tycho("features", "show", "nope")))
  end)

  it("shows a model by NAME, NAME@ALIAS and NAME VERSION with its full record", function()
    local code, _, err = tycho("run", dir .. "/train.lua")
    assert.equal(0, code, err)
    local by_alias = doc("models", "show", "diabetes@production", "--json")
    assert.equal("1.0.0", by_alias.record.version)
    assert.same({ "gbt", 2, 5 }, { by_alias.record.params.family, by_alias.record.params.depth,
                                   by_alias.record.params.rounds })
    assert.equal(120, by_alias.record.data.rows)
    assert.is_string(by_alias.record.data.content_hash)
    assert.matches("^%x+$", by_alias.record.code.script_sha256)
    assert.same({ "pima:glucose", "pima:mass" }, by_alias.record.data.refs)
    local by_version = doc("models", "show", "diabetes", "1.0.1", "--json")
    assert.equal("depth 3", by_version.record.description)
    assert.equal("1.0.1", by_version.aliases.staging)
    local _, text = tycho("models", "show", "diabetes")
    assert.matches("hyperparameters:", text, 1, true)
    assert.matches("content_hash", text, 1, true)
    assert.matches("script_sha256", text, 1, true)
    assert.equal(2, #doc("models", "list", "--json").models[1].aliases and 2 or 0)
    assert.equal(1, (tycho("models", "show", "diabetes@nope")))
    assert.equal(2, (tycho("models", "show", "diabetes", "--bogus")))
  end)

  it("lists, shows and compares runs", function()
    local runs = doc("runs", "list", "--kind", "fit", "--json").runs
    assert.is_true(#runs >= 2)
    local one = doc("runs", "show", runs[1].id, "--json")
    assert.equal(runs[1].id, one.id)
    local cmp = doc("runs", "compare", runs[1].id, runs[2].id, "--json")
    assert.same({ runs[1].id, runs[2].id }, cmp.runs)
    assert.is_true(#cmp.differ >= 1)
    local text = select(2, tycho("runs", "compare", runs[1].id, runs[2].id))
    assert.matches("%* depth", text)
    assert.equal(1, (tycho("runs", "show", "no-such-run")))
    assert.equal(2, (tycho("runs", "list", "--limit", "zero")))
  end)

  it("scores to stdout with numbers that read back, and monitors only known models", function()
    local code, out, err = tycho("score", "diabetes@production", "--input", dir .. "/pima.csv", "--output", "-")
    assert.equal(0, code, err)
    assert.matches("^patient_id,event_time,glucose,mass,prediction,probability\n", out)
    assert.matches("\np001,[^,]+,117,33.6,", out)  -- not 33.600000000000001
    assert.matches("scored 120 rows", err, 1, true)
    local m = doc("monitor", "diabetes", "--window", "15m", "--json")
    assert.equal("diabetes", m.model)
    local mcode, _, merr = tycho("monitor", "nosuch")
    assert.equal(1, mcode)
    assert.matches("no model named 'nosuch'", merr, 1, true)
    assert.equal(2, (tycho("monitor", "diabetes", "--window", "1")))
    local exps = doc("experiments", "list", "--json")
    assert.same({}, exps.experiments)
    assert.same({}, doc("dag", "list", "--json").dags)
  end)

  it("prints a bash completion script that bash accepts", function()
    local code, out = tycho("completion", "bash")
    assert.equal(0, code)
    assert.matches("complete -F _tycho tycho", out, 1, true)
    local path = testing.write(dir .. "/completion.bash", out)
    local ok = os.execute("bash -n " .. path)
    assert.is_true(ok == true or ok == 0)
    assert.equal(2, (tycho("completion", "fish")))
  end)
end)
