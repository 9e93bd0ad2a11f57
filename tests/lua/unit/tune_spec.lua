local tycho = require "tycho"
local tune = require "tycho.tune"

describe("tycho.tune", function()
  -- A synthetic task whose best depth is known: y depends on x1 only.
  local data
  setup(function()
    local x1, x2, y = {}, {}, {}
    for i = 1, 300 do
      x1[i] = (i * 37 % 101) / 101
      x2[i] = (i * 53 % 97) / 97
      y[i] = x1[i] > 0.5 and 1 or 0
    end
    data = tycho.frame.new({ x1 = x1, x2 = x2, y = y })
  end)

  local function model(p) return tycho.models.gbt { rounds = p.rounds or 5, depth = p.depth, eta = p.eta or 0.3 } end

  it("grid search tries every combination and ranks by the metric", function()
    local res = tune.grid { model = model, space = { depth = { 1, 2 }, eta = { 0.1, 0.5 } },
                            data = data, label = "y", metric = "accuracy", cv = 3, seed = 1 }
    assert.equal(4, #res.trials)
    assert.equal(1, res.best.rank)
    for i = 2, 4 do assert.is_true(res.trials[i - 1].score >= res.trials[i].score) end
    assert.is_true(res.best.score > 0.95)
    local board = tune.leaderboard(res)
    assert.equal(4, board:nrows())
  end)

  it("random and bayes search are reproducible for a seed and respect the space", function()
    local opts = { model = model, space = { depth = { "int", 1, 4 }, eta = { "log", 0.05, 0.5 } },
                   data = data, label = "y", metric = "auc", holdout = 0.3, trials = 8, init = 3, seed = 5 }
    local a, b = tune.bayes(opts), tune.bayes(opts)
    assert.equal(8, #a.trials)
    for i, t in ipairs(a.history) do
      assert.same(t.params, b.history[i].params)
      assert.is_true(t.params.depth >= 1 and t.params.depth <= 4 and t.params.depth % 1 == 0)
      assert.is_true(t.params.eta >= 0.05 and t.params.eta <= 0.5)
    end
    local r, r2 = tune.random(opts), tune.random(opts)
    assert.is_true(#r.trials >= 6)
    assert.equal(#r.history, #r2.history)
    for i, t in ipairs(r.history) do
      assert.same(t.params, r2.history[i].params)
      assert.is_true(t.params.depth >= 1 and t.params.depth <= 4 and t.params.depth % 1 == 0)
      assert.is_true(t.params.eta >= 0.05 and t.params.eta <= 0.5)
    end
    opts.seed = 6
    local other = tune.random(opts)
    local differs = false
    for i, t in ipairs(other.history) do
      if r.history[i] and (t.params.depth ~= r.history[i].params.depth or t.params.eta ~= r.history[i].params.eta) then
        differs = true
      end
    end
    assert.is_true(differs, "another seed draws other parameters")
  end)

  it("computes expected improvement and the normal CDF correctly", function()
    assert.near(0.5, tune._norm_cdf(0), 1e-7)
    assert.near(0.9750021, tune._norm_cdf(1.96), 1e-6)
    -- EI of N(mu=1, sigma=1) over best 0: mu*Phi(1) + phi(1).
    assert.near(1 * 0.8413447 + 0.2419707, tune._expected_improvement(1, 1, 0, 0), 1e-6)
  end)

  it("rejects a call without model, data or label", function()
    local needs = "tune.grid: needs model (function of params), data (frame), label and space"
    assert.has_error(function() tune.grid { space = {} } end, needs)
    assert.has_error(function() tune.grid { model = model, space = {} } end, needs)
  end)
end)
