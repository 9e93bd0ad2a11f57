-- The README's main job: features -> point-in-time training set -> pipeline
-- -> evaluate -> register -> promote with gates, then served over HTTP, then
-- an alias moved and rolled back from the command line.
local testing = require "tycho.testing"

describe("the spam example, end to end", function()
  local home
  setup(function() home = testing.tmpdir() end)
  teardown(function() testing.rmrf(home) end)

  it("trains, registers, serves and predicts; the CLI promotes and rolls back", function()
    local code, out, err = testing.run({ "--home", home, "run", "examples/spam/train.lua", "../shared/data" },
      { timeout = 120000 })
    assert.equal(0, code, err)
    assert.matches("ingested: 4601 landed, 0 rejected", out, 1, true)
    assert.matches("registered spam 1.0.0 and promoted it to production", out, 1, true)
    assert.matches("gate refused 1.0.1", out, 1, true)
    local auc = tonumber(out:match("test: AUC ([%d%.]+)"))
    assert.is_true(auc > 0.98, "auc " .. tostring(auc))

    local srv = testing.serve("examples/spam/app.lua", {}, { env = { "TYCHO_HOME=" .. home } })
    local status, _, _, doc = testing.request(srv.port, "POST", "/v1/models/spam:predict",
      { body = { instances = { { email_id = "email-00001" }, { email_id = "email-04600" } } } })
    assert.equal(200, status)
    assert.equal("1.0.0", doc.model_version)
    assert.equal(1, doc.predictions[1].prediction)   -- the file's first rows are spam
    assert.equal(0, doc.predictions[2].prediction)   -- and its last ones are not
    status, _, _, doc = testing.request(srv.port, "POST", "/v1/models/spam:predict",
      { body = { instances = { { email_id = "nobody" } } } })
    assert.equal(404, status)
    assert.matches("no features for nobody", doc.error.message)
    assert.equal(0, (srv:stop()))

    assert.equal(0, (testing.run({ "--home", home, "models", "promote", "spam", "1.0.1", "production" })))
    local rc, rout = testing.run({ "--home", home, "models", "rollback", "spam", "production" })
    assert.equal(0, rc)
    assert.matches("rolled back to 1.0.0", rout, 1, true)
    local _, show = testing.run({ "--home", home, "models", "show", "spam" })
    assert.matches("1.0.1 %-> 1.0.0", show)
  end)
end)
