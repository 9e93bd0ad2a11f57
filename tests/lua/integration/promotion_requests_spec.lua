-- Issue 24: promotion with approval. An alias whose policy wants an
-- approval takes a request that waits; approve promotes it (the approver
-- and the reason recorded), reject closes it; every step is in the audit
-- history, and the other gates are checked when the request is made and
-- again when it is approved.
local tycho = require "tycho"
local frame = require "tycho.frame"
local testing = require "tycho.testing"

describe("promotion requests", function()
  local home, reg
  setup(function()
    home = testing.tmpdir()
    reg = assert(tycho.registry.open({ home = home }))
    local f = frame.new({ x = { 1, 2, 3, 4, 5, 6, 7, 8 }, y = { 0, 0, 0, 1, 0, 1, 1, 1 } })
    local pipe = assert(tycho.pipeline { model = tycho.models.logistic {} }:fit(f, { label = "y" }))
    for _, auc in ipairs({ 0.9, 0.95, 0.5 }) do
      pipe.metrics = { auc = auc }
      assert(reg:register("churn", pipe, { metrics = { auc = auc } }))
    end
    assert(reg:promote("churn", "1.0.0", "production"))
    assert(reg:policy("churn", "production", { approval = true, gates = { auc = 0.8 } }))
  end)
  teardown(function() testing.rmrf(home) end)

  it("waits for an approval, then promotes with who and why in the history", function()
    local ok, msg = reg:promote("churn", "1.0.1", "production")
    assert.is_nil(ok)
    assert.matches("needs an approval", msg, 1, true)
    local req = assert(reg:request("churn", "1.0.1", "production", { by = "ana", reason = "better auc" }))
    assert.same({ "pending", "1.0.1", "1.0.0", "ana" }, { req.status, req.version, req.current, req.by })
    assert.equal("1.0.0", reg:get("churn", "production").version)  -- nothing moved yet
    local _, err, code = reg:approve("churn", req.id, {})
    assert.equal("invalid", code, err)
    local done = assert(reg:approve("churn", req.id, { by = "lead", reason = "reviewed the holdout curves" }))
    assert.same({ "approved", "lead" }, { done.status, done.decided_by })
    assert.equal("1.0.1", reg:get("churn", "production").version)
    local hist = reg:history("churn")
    local last = hist[#hist]
    assert.same({ "production", "1.0.0", "1.0.1", "approve", "lead" },
      { last.alias, last.from, last.to, last.why, last.approved_by })
    local asked = hist[#hist - 1]
    assert.same({ "request", "ana", "better auc" }, { asked.kind, asked.who, asked.why })
    -- Decided once.
    _, err, code = reg:approve("churn", req.id, { by = "lead" })
    assert.equal("conflict", code, err)
  end)

  it("refuses a request that fails another gate, and records a rejection", function()
    local r, msg, code, reasons = reg:request("churn", "1.0.2", "production", { by = "bo" })
    assert.is_nil(r)
    assert.equal("forbidden", code)
    assert.matches("auc", reasons[1], 1, true)
    assert.matches("refused", msg, 1, true)
    local req = assert(reg:request("churn", "1.0.0", "production", { by = "bo", reason = "go back" }))
    local done = assert(reg:reject("churn", req.id, { by = "lead", reason = "no incident" }))
    assert.same({ "rejected", "no incident" }, { done.status, done.decision })
    assert.equal("1.0.1", reg:get("churn", "production").version)
    local list = assert(reg:requests("churn"))
    assert.equal(2, #list)
    assert.equal(req.id, list[1].id)  -- newest first
    local hist = reg:history("churn")
    assert.matches("^rejected: no incident", hist[#hist].why)
    -- Rollback walks promotions, not requests.
    assert.equal("1.0.0", reg:rollback("churn", "production"))
    local _, err, c = reg:reject("churn", "nope", { by = "x" })
    assert.equal("not_found", c, err)
  end)
end)
