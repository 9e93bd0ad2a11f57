-- The predict body's fast path (ml/dense.lua over core/util/tz_rows_json):
-- instances that carry other keys of scalar value (a request id, a tag)
-- parse there too, and those keys reach the logged inputs as the general
-- path's row would hold them; anything else goes to the general path.
local tycho = require "tycho"
local dense = require "tycho.ml.dense"
local json = require "tycho.util.json"

describe("the predict body's fast path", function()
  local all = assert(tycho.frame.read_csv("../shared/data/spam.csv"))
  local every = {}
  for i = 1, all:nrows(), 15 do every[#every + 1] = i end
  local spam = all:take(every)
  local pipe = assert(tycho.pipeline { name = "b", model = tycho.models.gbt { rounds = 4, depth = 3 } }
    :fit(spam, { label = "label" }))
  local plan = assert(dense.plan(pipe))
  local row = spam:drop("label"):row(7)

  local function body(extra)
    local inst = {}
    for k, v in pairs(row) do inst[k] = v end
    for k, v in pairs(extra) do inst[k] = v end
    return json.encode({ instances = { inst, inst } })
  end

  it("passes other scalar keys on to the logged inputs, typed as JSON says", function()
    local n = plan:parse(body { id = "u-42", weight = 0.25, vip = true, spare = false, note = json.null }, 10, true)
    assert.equal(2, n)
    for r = 0, 1 do
      local logged = plan:row_table(r)
      assert.equal("u-42", logged.id)
      assert.equal(0.25, logged.weight)
      assert.is_true(logged.vip)
      assert.is_false(logged.spare)
      assert.is_nil(logged.note)  -- null is absent, as the general path reads it
      assert.equal(row.make, logged.make)
    end
    assert.same(pipe:predict(row), plan:predict(0))
  end)

  it("tells when an other key is an entity key, and refuses extras when not asked to take them", function()
    assert.equal(2, plan:parse(body { email_id = "e-1" }, 10, true))
    assert.is_true(plan:extras_hold({ email_id = true }))
    assert.is_false(plan:extras_hold({ user_id = true }))
    assert.is_nil(plan:parse(body { email_id = "e-1" }, 10, false))
  end)

  it("leaves escaped, nested and over-long extras to the general path", function()
    assert.is_nil(plan:parse(body { id = "a\"b" }, 10, true))
    assert.is_nil(plan:parse(body { tags = { "x" } }, 10, true))
    assert.is_nil(plan:parse(body { meta = { a = 1 } }, 10, true))
    local many = {}
    for i = 1, 60 do many["k" .. i] = i end  -- more than the room kept for extras per row
    assert.is_nil(plan:parse(body(many), 10, true))
  end)
end)
