-- Issue 20, item 3: a mistyped or unknown option is refused by name, never
-- trained around.
local models = require "tycho.ml.models"
local pipeline = require "tycho.ml.pipeline"

local function refusal(fn)
  local ok, msg = pcall(fn)
  assert.is_false(ok, "expected a refusal")
  return tostring(msg)
end

describe("model options", function()
  it("refuses an unknown name, suggesting the closest and listing the valid ones", function()
    local msg = refusal(function() return models.gbt { depth = 3, rownds = 10 } end)
    assert.matches("models.gbt: unknown option 'rownds' (did you mean 'rounds'?)", msg, 1, true)
    assert.matches("valid options: .*max_depth.*rounds", msg)
    -- The error points at the user's line, not inside Tycho.
    assert.matches("options_spec.lua", msg, 1, true)
  end)

  it("names the parameter and the expected type", function()
    local msg = refusal(function() return models.gbt { rounds = "many" } end)
    assert.matches("models.gbt: option 'rounds' must be an integer of at least 1, got \"many\"", msg, 1, true)
    assert.matches("option 'subsample' must be a number above 0 and at most 1, got 2",
      refusal(function() return models.gbt { subsample = 2 } end), 1, true)
    assert.matches("option 'eta' must be a number of at least 0, got nan",
      refusal(function() return models.gbt { eta = 0 / 0 } end), 1, true)
    assert.matches("option 'bootstrap' must be true or false",
      refusal(function() return models.forest { bootstrap = "no" } end), 1, true)
    assert.matches("option 'objective' must be one of",
      refusal(function() return models.gbt { objective = "multi:softprob" } end), 1, true)
  end)

  it("takes the aliases users bring from XGBoost and scikit-learn, once", function()
    assert.equal(10, models.forest { n_estimators = 10 }.opts.trees)
    assert.equal(0.1, models.gbt { learning_rate = 0.1 }.opts.eta)
    assert.matches("options 'depth' and 'max_depth' both set depth",
      refusal(function() return models.gbt { depth = 3, max_depth = 4 } end), 1, true)
  end)

  it("leaves nothing unchecked in any family", function()
    for _, fam in ipairs { "gbt", "forest", "logistic", "linear", "kmeans" } do
      assert.matches("unknown option 'bogus'", refusal(function() return models[fam] { bogus = 1 } end), 1, true)
    end
  end)
end)

describe("step options", function()
  local step = pipeline.step
  it("refuses unknown names and wrong values", function()
    assert.matches("step.fill_missing: unknown option 'stratgy' (did you mean 'strategy'?)",
      refusal(function() return step.fill_missing { stratgy = "median" } end), 1, true)
    assert.matches("step.fill_missing: option 'strategy' must be one of",
      refusal(function() return step.fill_missing { "mode" } end), 1, true)
    assert.matches("step.clip: option 'min' must be a number",
      refusal(function() return step.clip { "low", 1 } end), 1, true)
    assert.matches("step.standardize: no positional values",
      refusal(function() return step.standardize { "a" } end), 1, true)
  end)

  it("keeps the shapes users write", function()
    assert.same({ "median" }, step.fill_missing { "median" }.opts)
    assert.same({ "a", "b" }, step.select { "a", "b" }.opts)
    assert.same({ columns = { "c" }, unknown = "error" }, step.onehot { columns = { "c" }, unknown = "error" }.opts)
    assert.same({ 0, 1 }, step.clip { 0, 1 }.opts)
  end)
end)
