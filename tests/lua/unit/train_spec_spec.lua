-- What a console training may ask for (ml/train/spec.lua): names against a
-- plain pattern, numbers against their ranges, no unlisted key, and the
-- checked spec is itself a request that passes (the child checks it again);
-- resolved against a feature store: one entity, the label present, text
-- features left out by name.
local spec = require "tycho.ml.train.spec"
local testing = require "tycho.testing"

local function base(extra)
  local req = { name = "churn", views = { "user_stats" }, label = "user_labels:churned", family = "gbt" }
  for k, v in pairs(extra or {}) do req[k] = v end
  return req
end

local function refused(req, pattern)
  local out, err, code = spec.check(req)
  assert.is_nil(out)
  assert.equal("invalid", code)
  if pattern then assert.matches(pattern, err, 1, true) end
end

describe("training requests", function()
  it("fills in defaults and passes its own output", function()
    local s = assert(spec.check(base { params = { rounds = 50 } }))
    assert.same({ 50, 6, 0.3 }, { s.params.rounds, s.params.depth, s.params.eta })
    assert.same({ "auto", 0.2, 42, false }, { s.task, s.test, s.seed, s.register })
    assert.same(s, assert(spec.check(s)))
    local a = assert(spec.check(base { family = "automl", budget = { seconds = 60 }, families = { "gbt", "logistic" } }))
    assert.same({ seconds = 60 }, a.budget)
    assert.same(a, assert(spec.check(a)))
    assert.same({ "user_labels", "churned" }, { spec.label(a) })
  end)

  it("refuses names that are not plain, whatever they hold", function()
    refused(base { name = 'x"]] os.execute("id") --' }, "name must be")
    refused(base { name = "" }, "name must be")
    refused(base { name = string.rep("a", 65) }, "name must be")
    refused(base { name = "-lead" }, "name must be")
    refused(base { views = { "a b" } }, "a view name")
    refused(base { views = { x = "user_stats" } }, "views must")
    refused(base { views = {} }, "views must list 1 to 20")
    refused(base { label = "user_labels" }, "VIEW:FEATURE")
    refused(base { label = "a:b:c" }, "VIEW:FEATURE")
    refused(base { label = 7 }, "VIEW:FEATURE")
  end)

  it("refuses numbers out of range, unknown keys and mixed model settings", function()
    refused(base { params = { rounds = 1e9 } }, "rounds must be an integer from 1 to 2000")
    refused(base { params = { rounds = 2.5 } }, "rounds must be an integer")
    refused(base { params = { eta = 0 / 0 } }, "eta must be a number")
    refused(base { params = { eta = "0.1" } }, "eta must be a number")
    refused(base { params = { objective = "binary" } }, "has no field 'objective'")
    refused(base { test = 0.9 }, "test must be")
    refused(base { seed = -1 }, "seed must be")
    refused(base { extra = true }, "the request has no field 'extra'")
    refused(base { family = "svm" }, "family is one of")
    refused(base { budget = { trials = 5 } }, "budget and families are for automl")
    refused(base { family = "automl" }, "budget must be an object")
    refused(base { family = "automl", budget = { trials = 5, seconds = 10 } }, "budget gives trials or seconds")
    refused(base { family = "automl", budget = { trials = 1000 } }, "budget trials must be")
    refused(base { family = "automl", budget = { trials = 5 }, params = { rounds = 5 } }, "automl takes a budget")
    refused(base { family = "automl", budget = { trials = 5 }, families = { "svm" } }, "unknown family")
    refused(base { register = "yes" }, "register is true or false")
    refused(base { task = "ranking" }, "task is")
    refused("{}", "the request must be an object")
  end)

  describe("against a feature store", function()
    local home, fs
    setup(function()
      home = testing.tmpdir()
      fs = assert(require("tycho.features").open { home = home })
      fs:entity { name = "user", join_key = "user_id" }
      fs:entity { name = "shop", join_key = "shop_id" }
      assert(fs:feature_view { name = "user_stats", entity = "user", schema = { clicks = "float", plan = "string" } })
      assert(fs:feature_view { name = "user_labels", entity = "user", schema = { churned = "int", score = "float" } })
      assert(fs:feature_view { name = "shop_stats", entity = "shop", schema = { sales = "float" } })
    end)
    teardown(function() testing.rmrf(home) end)

    it("names the features trained on and those left out", function()
      local plan = assert(spec.resolve(fs, assert(spec.check(base { views = { "user_stats", "user_labels" } }))))
      table.sort(plan.refs)
      assert.same({ "user_labels:score", "user_stats:clicks" }, plan.refs)
      assert.same({ "user_stats:plan" }, plan.left_out)
      assert.equal("user_labels", plan.label_view.name)
    end)

    it("refuses views of another entity, an unknown view or label", function()
      local _, err, code = spec.resolve(fs, assert(spec.check(base { views = { "shop_stats" } })))
      assert.same({ "invalid", true }, { code, err:find("cannot be joined", 1, true) ~= nil })
      _, _, code = spec.resolve(fs, assert(spec.check(base { views = { "nope" } })))
      assert.equal("not_found", code)
      _, err, code = spec.resolve(fs, assert(spec.check(base { label = "user_labels:nope" })))
      assert.same({ "not_found", true }, { code, err:find("no feature 'nope'", 1, true) ~= nil })
    end)
  end)
end)
