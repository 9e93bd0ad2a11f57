local tycho = require "tycho"
local testing = require "tycho.testing"
local step, frame = tycho.step, tycho.frame

local DATA = "../shared/data/"

describe("pipelines and the registry", function()
  local home, tr, te, reg
  setup(function()
    local f = assert(frame.read_csv(DATA .. "spam.csv"))
    tr, te = f:split { mask = DATA .. "spam.split" }
  end)
  before_each(function()
    home = testing.tmpdir()
    reg = assert(tycho.registry.open({ home = home }))
  end)
  after_each(function()
    reg.store:close()
    testing.rmrf(home)
  end)

  local function spam_pipeline(rounds)
    return tycho.pipeline {
      steps = { step.fill_missing { "median" }, step.clip { min = 0 }, step.log1p { columns = { "capitalTotal" } },
                step.standardize(),
                step.lua(function(r) r.long_ratio = r.capitalLong / (math.abs(r.capitalAve) + 1) return r end) },
      model = tycho.models.gbt { rounds = rounds or 30 },
    }
  end

  it("gives identical answers for a batch frame and single row tables", function()
    local pipe = assert(spam_pipeline():fit(tr, { label = "label", quiet = true }))
    local batch = assert(pipe:predict(te))
    for i = 1, te:nrows(), 37 do
      local one = assert(pipe:predict(te:row(i)))
      assert.equal(batch:col("probability"):get(i), one.probability)
      assert.equal(batch:col("prediction"):get(i), one.prediction)
    end
    local m = pipe:evaluate(te)
    assert.is_true(m.auc > 0.97, "auc " .. m.auc)
    assert.is_table(pipe.reference.inputs.capitalTotal)
    assert.equal(10, #pipe.reference.output.counts)
  end)

  it("learns step state on training rows only", function()
    local f = frame.new({ x = { 1, 2, 3, 100 }, y = { 0, 1, 0, 1 } })
    local train = f:head(3)
    local pipe = assert(tycho.pipeline { steps = { step.standardize { columns = { "x" } } },
                                         model = tycho.models.logistic {} }:fit(train, { label = "y" }))
    assert.equal(2, pipe.steps[1].state.mean.x)
  end)

  it("one-hot encodes with unknown categories ignored or refused", function()
    local f = frame.new({ c = { "a", "b", "a", "b", "a", "b" }, x = { 1, 2, 3, 4, 5, 6 }, y = { 0, 1, 0, 1, 0, 1 } })
    local pipe = assert(tycho.pipeline { steps = { step.onehot { "c" } }, model = tycho.models.logistic {} }
      :fit(f, { label = "y" }))
    assert.same({ "c=a", "c=b", "x" }, pipe.model_inputs)
    assert(pipe:predict({ c = "zzz", x = 3 }))
    local strict = assert(tycho.pipeline { steps = { step.onehot { columns = { "c" }, unknown = "error" } },
                                           model = tycho.models.logistic {} }:fit(f, { label = "y" }))
    local out, err, code = strict:predict({ c = "zzz", x = 3 })
    assert.is_nil(out)
    assert.matches("unknown category 'zzz'", err)
    assert.equal("invalid", code)
  end)

  it("round-trips the artifact to the bit and refuses tampering", function()
    local pipe = assert(spam_pipeline():fit(tr, { label = "label", quiet = true }))
    local bytes = assert(pipe:to_bytes())
    local back = assert(tycho.pipeline.from_bytes(bytes))
    assert.equal(bytes, (assert(back:to_bytes())))
    local a, b = pipe:predict(te), back:predict(te)
    for i = 1, te:nrows() do assert.equal(a:col("probability"):get(i), b:col("probability"):get(i)) end
    -- Flip one byte of the header JSON and recompute the container CRC: the
    -- sha256 still catches it.
    local ffi = require "ffi"
    local C = require "tycho.kernels"
    local pos = bytes:find('"capitalTotal"', 1, true)
    local tampered = bytes:sub(1, pos) .. "X" .. bytes:sub(pos + 2, -5)
    local crc = ffi.new("uint32_t[1]")
    local function crc32(s)  -- IEEE CRC-32, as tz_blob uses
      local c = 0xffffffff
      for i = 1, #s do
        c = bit.bxor(c, s:byte(i))
        for _ = 1, 8 do c = bit.band(c, 1) ~= 0 and bit.bxor(bit.rshift(c, 1), 0xEDB88320) or bit.rshift(c, 1) end
      end
      return bit.bnot(c)
    end
    crc[0] = crc32(tampered)
    tampered = tampered .. ffi.string(crc, 4)
    local p, err, code = tycho.pipeline.from_bytes(tampered)
    assert.is_nil(p)
    assert.matches("sha256 mismatch", err)
    assert.equal("invalid", code)
    assert.is_nil((tycho.pipeline.from_bytes(bytes:sub(1, #bytes - 10))))
    local _ = C
    -- A future format version (with a valid checksum) is refused.
    local future = bytes:sub(1, 8) .. "\99\0\0\0" .. bytes:sub(13, -5)
    crc[0] = crc32(future)
    local _, ferr = tycho.pipeline.from_bytes(future .. ffi.string(crc, 4))
    assert.matches("not supported", ferr)
  end)

  it("runs user functions sandboxed and names them when they fail", function()
    local evil = step.lua("function(r) return os.execute('true') end", "evil")
    local f = frame.new({ x = { 1, 2, 3, 4 }, y = { 0, 1, 0, 1 } })
    local _, err, code = tycho.pipeline { steps = { evil }, model = tycho.models.logistic {} }:fit(f, { label = "y" })
    assert.matches("evil", tostring(err))
    assert.equal("invalid", code)
    local fails_later = step.lua("function(r) if r.x > 10 then error('too big') end return r end", "guard")
    local pipe = assert(tycho.pipeline { steps = { fails_later }, model = tycho.models.logistic {} }:fit(f, { label = "y" }))
    local out, perr = pipe:predict({ x = 50 })
    assert.is_nil(out)
    assert.matches("guard", perr)
    assert.matches("too big", perr)
    local spin = step.lua("function(r) while true do end end", "spin")
    local spun, serr = tycho.pipeline { steps = { spin }, model = tycho.models.logistic {} }:fit(f, { label = "y" })
    assert.is_nil(spun)
    assert.matches("spin: stopped: ran past its instruction budget", serr, 1, true)
  end)

  it("registers versions with provenance, promotes through gates, rolls back", function()
    local p1 = assert(spam_pipeline(10):fit(tr, { label = "label", quiet = true }))
    local p2 = assert(spam_pipeline(40):fit(tr, { label = "label", quiet = true }))
    local fp = tr:fingerprint()
    local v1 = assert(reg:register("spam", p1, { metrics = p1:evaluate(te), data = fp, description = "first" }))
    local v2 = assert(reg:register("spam", p2, { metrics = p2:evaluate(te), data = fp }))
    local v3 = assert(reg:register("spam", p2, { bump = "major" }))
    assert.same({ "1.0.0", "1.0.1", "2.0.0" }, { v1, v2, v3 })
    local meta = reg:get("spam", v1)
    assert.equal(fp.content_hash, meta.data.content_hash)
    assert.matches("^%x+$", meta.sha256)
    assert.equal(tycho.version, meta.code.tycho)
    assert(reg:promote("spam", v1, "production", { gates = { auc = 0.9 } }))
    local ok, err, code, reasons = reg:promote("spam", v2, "production", { gates = { auc = 0.9999, accuracy = 0.999 } })
    assert.is_nil(ok)
    assert.equal("forbidden", code)
    assert.equal(2, #reasons)
    assert.matches("auc", err)
    assert.matches("accuracy", err)
    assert.equal(v1, reg:get("spam", "production").version)
    ok, err = reg:promote("spam", v2, "production", { gates = { no_worse_than = { holdout = te, metric = "auc", by = 0 } } })
    assert.is_true(ok, err)
    assert.equal(v1, assert(reg:rollback("spam", "production")))
    local _, rerr, rcode = reg:rollback("spam", "production")
    assert.matches("no earlier version", rerr)
    assert.equal("conflict", rcode)
    local hist = reg:history("spam")
    assert.equal(3, #hist)
    assert.same({ "promote", "promote", "rollback" }, { hist[1].why, hist[2].why, hist[3].why })
    local cmp = reg:compare("spam", v1, v2)
    assert.is_number(cmp.metrics.auc[1])
    assert.is_true(cmp.metrics.auc[2] > cmp.metrics.auc[1])
    local loaded = assert(reg:load("spam", "production"))
    assert.equal(p1:predict(te:row(1)).probability, loaded:predict(te:row(1)).probability)
  end)

  it("refuses bad names, unknown versions and aliases, and a schema break", function()
    local pipe = assert(spam_pipeline(5):fit(tr, { label = "label", quiet = true }))
    local _, err, code = reg:register("no spaces", pipe)
    assert.matches("invalid model name", err)
    assert.equal("invalid", code)
    assert(reg:register("m", pipe))
    _, err, code = reg:register("m", pipe, { version = "1.0.0" })
    assert.matches("version 1.0.0 of m exists already", err, 1, true)
    assert.equal("conflict", code)
    _, err = reg:get("m", "9.9.9")
    assert.matches("no version or alias '9.9.9'", err)
    _, err, code = reg:load("m", "nope")
    assert.matches("no version or alias 'nope'", err)
    assert.equal("not_found", code)
    _, err = reg:get("ghost")
    assert.matches("no model named 'ghost'", err)
    assert(reg:promote("m", "1.0.0", "production"))
    local wider = assert(tycho.pipeline { model = tycho.models.gbt { rounds = 3 } }
      :fit(tr:with_column("extra", function() return 1 end), { label = "label", quiet = true }))
    assert(reg:register("m", wider))
    local ok, perr = reg:promote("m", "1.0.1", "production")
    assert.is_nil(ok)
    assert.matches("input 'extra' is required by 1.0.1 but not by 1.0.0", perr, 1, true)
  end)

  it("keeps versions unique when two processes register at once", function()
    local pipe = assert(spam_pipeline(3):fit(tr, { label = "label", quiet = true }))
    local path = home .. "/art.bin"
    assert(pipe:save(path))
    reg.store:close()
    local a = testing.spawn({ "--home", home, "run", "tests/lua/fixtures/register_worker.lua", path, "10" })
    local b = testing.spawn({ "--home", home, "run", "tests/lua/fixtures/register_worker.lua", path, "10" })
    assert.equal(0, (a:wait(60000)), a.stderr())
    assert.equal(0, (b:wait(60000)), b.stderr())
    local seen, n = {}, 0
    for v in (a.stdout() .. b.stdout()):gmatch("(%S+)\n") do
      assert.is_nil(seen[v], "version handed out twice: " .. v)
      seen[v], n = true, n + 1
    end
    assert.equal(20, n)
    reg = assert(tycho.registry.open({ home = home }))
    assert.equal(20, #reg:versions("race"))
  end)

  it("drives the registry from the command line with reliable exit codes", function()
    local pipe = assert(spam_pipeline(3):fit(tr, { label = "label", quiet = true }))
    assert(reg:register("cli", pipe, { metrics = { auc = 0.9 } }))
    assert(reg:register("cli", pipe))
    reg.store:close()
    local function tycho_cli(...) return testing.run({ "--home", home, "models", ... }) end
    local code, out = tycho_cli("list")
    assert.equal(0, code)
    assert.matches("cli%s+1.0.1%s+2", out)
    assert.equal(0, (tycho_cli("promote", "cli", "1.0.0", "production")))
    assert.equal(0, (tycho_cli("promote", "cli", "1.0.1", "production")))
    code, out = tycho_cli("rollback", "cli", "production")
    assert.equal(0, code)
    assert.matches("rolled back to 1.0.0", out)
    assert.equal(1, (tycho_cli("rollback", "cli", "production")))
    assert.equal(1, (tycho_cli("promote", "cli", "7.7.7", "production")))
    assert.equal(2, (tycho_cli("promote", "cli")))
    code, out = tycho_cli("show", "cli")
    assert.equal(0, code)
    assert.matches("alias history", out)
    reg = assert(tycho.registry.open({ home = home }))
  end)

  it("records fits and evaluations as runs that can be listed and sorted", function()
    local runs = require "tycho.runs"
    local before = #runs.list { kind = "evaluate" }
    local pipe = assert(spam_pipeline(5):fit(tr, { label = "label", quiet = true }))
    pipe:evaluate(te)
    local list = runs.list { kind = "evaluate", sort = "auc" }
    assert.equal(before + 1, #list)
    assert.is_number(list[1].metrics.auc)
    assert.is_string(list[1].data.content_hash)
  end)
end)

describe("automl", function()
  it("picks a model within its trial budget and beats a weak default on a small task", function()
    local f = assert(frame.read_csv(DATA .. "breast_cancer.csv"))
    local tr, te = f:split { mask = DATA .. "breast_cancer.split" }
    local res = assert(tycho.automl { data = tr, label = "label", budget = 8, cv = 3, seed = 3,
                                      families = { "logistic", "forest" } })
    assert.equal("binary", res.task)
    assert.equal("auc", res.metric)
    assert.is_true(#res.leaderboard >= 4)
    for i = 2, #res.leaderboard do assert.is_true(res.leaderboard[i - 1].score >= res.leaderboard[i].score) end
    local m = res.pipeline:evaluate(te)
    assert.is_true(m.auc >= 0.99, "auc " .. m.auc)
  end)
end)

describe("automl on the shared datasets", function()
  -- The bar: at least the test accuracy of the best family at its defaults.
  local function check(name, budget)
    local f = assert(frame.read_csv(DATA .. name .. ".csv"))
    local tr, te = f:split { mask = DATA .. name .. ".split" }
    local best_default = 0
    for _, fam in ipairs { "gbt", "forest", "logistic" } do
      local m = assert(tycho.models[fam] {}:fit(tr, { label = "label", quiet = true }))
      best_default = math.max(best_default, tycho.metrics.evaluate(m, te).accuracy)
    end
    local res = assert(tycho.automl { data = tr, label = "label", budget = budget, cv = 3, seed = 7,
                                      metric = "accuracy", name = "automl-" .. name })
    local got = res.pipeline:evaluate(te).accuracy
    assert.is_true(got >= best_default, string.format("%s: automl %.4f < best default %.4f", name, got, best_default))
    local trials = require("tycho.runs").list { kind = "trial", model = "automl-" .. name }
    assert.is_true(#trials >= budget - 1, "tuning trials recorded: " .. #trials)
  end

  it("spam, 12 trials", function() check("spam", 12) end)
  it("letter, 9 trials", function() check("letter", 9) end)
end)
