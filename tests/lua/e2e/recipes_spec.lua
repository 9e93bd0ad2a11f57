-- Every recipe end to end in its reduced mode (--quick), each on a fresh
-- home: DAG runs, a live server on 127.0.0.1, traffic, feedback, figures.
local testing = require "tycho.testing"

local function run_recipe(name)
  local home = testing.tmpdir()
  local code, out, err = testing.run({ "--home", home, "run", "recipes/" .. name .. "/main.lua", "--quick" },
    { timeout = 300000 })
  testing.rmrf(home)
  assert(code == 0, name .. " failed (" .. tostring(code) .. "):\n" .. out .. "\n" .. err)
  assert.matches("server exited with code 0", out, 1, true)
  return out
end

describe("recipes", function()
  it("spam-filter: backfilled DAG, A/B test between families, monitor, accurate answers", function()
    local out = run_recipe("spam-filter")
    assert.matches("spam%-retrain 2025%-01%-03: success", out)
    local accuracy = tonumber(out:match("emails in %d+ requests of %d+: accuracy ([%d.]+)"))
    assert.is_true(accuracy and accuracy > 0.9, "accuracy " .. tostring(accuracy))
    assert.matches("experiment gbt-vs-logistic", out, 1, true)
    assert.matches("VERSION +ROLE +VOLUME", out)
    assert.matches("auc=", out, 1, true)
  end)

  it("letter-ocr: AutoML with a cluster feature, a canary judged on live outcomes", function()
    local out = run_recipe("letter-ocr")
    assert.matches("the server routes 30 %% of images to canary 1%.0%.1", out)
    assert.matches("the server now answers with production 1.0.1", out, 1, true)
    assert.matches("canary: promoted 1.0.1 to production", out, 1, true)
  end)

  it("price-estimate: precomputed estimates by key and online predictions", function()
    local out = run_recipe("price-estimate")
    -- Precomputed estimates read by key, within the gate's MAE ceiling ($450).
    local batch = tonumber(out:match("precomputed estimate vs true price: MAE ([%d.]+) USD"))
    assert.is_true(batch and batch < 450, "precomputed MAE " .. tostring(batch))
    -- Online answers by key are the precomputed numbers.
    assert.matches("largest difference from the precomputed estimate 0 USD", out, 1, true)
    -- New items priced online, outcomes fed back and joined by the monitor.
    local online = tonumber(out:match("new diamonds in %d+ requests of %d+: MAE ([%d.]+) USD"))
    assert.is_true(online and online < 450, "online MAE " .. tostring(online))
    assert.matches("mae=", out, 1, true)
  end)
end)
