-- tycho.runs' sort index (registry/runs.lua): pages sorted and filtered
-- from small index keys, runs lacking the sorted field last, the one-time
-- rebuild for runs recorded without the index, and record_many.
local keys = require "tycho.util.keys"
local json = require "tycho.json"
local internal = require "tycho.internal"
local testing = require "tycho.testing"

describe("runs index", function()
  -- A fresh home and a fresh copy of the module (its store is opened once
  -- per process): the unit layer's shared home holds other specs' runs.
  local runs, home, saved_home, saved_module
  local function page(opts)
    local p = assert(runs.page(opts))
    local out = {}
    for _, r in ipairs(p.runs) do out[#out + 1] = r.model .. ":" .. tostring(r.metrics and r.metrics.auc) end
    return out, p
  end

  teardown(function()
    internal.home = saved_home
    package.loaded["tycho.registry.runs"] = saved_module
    testing.rmrf(home)
  end)

  setup(function()
    saved_home, saved_module = internal.home, package.loaded["tycho.registry.runs"]
    home = testing.tmpdir()
    internal.home = home
    package.loaded["tycho.registry.runs"] = nil
    runs = require "tycho.registry.runs"
    -- Two runs stored the way tycho stored them before the index existed.
    local st = assert(require("tycho.core.store").open(home))
    st:update(function(tx)
      for i = 1, 2 do
        local id = string.format("%d-1-%d", 1700000000000000 + i, i)
        tx:put("runs", keys.pack("i64 s", 1700000000000000 + i, id),
          json.encode({ id = id, kind = "fit", model = "old", metrics = { auc = 0.1 * i } }))
      end
    end)
    for i = 1, 5 do
      assert(runs.record { kind = i % 2 == 0 and "trial" or "fit", model = "m" .. (i % 2),
                           metrics = i < 5 and { auc = i / 10 } or nil, params = { p = i }, seconds = i })
    end
  end)

  it("lists runs recorded before the index, newest first", function()
    local rows, p = page {}
    assert.equal(7, p.total)
    assert.same({ "m1:nil", "m0:0.4", "m1:0.3", "m0:0.2", "m1:0.1", "old:0.2", "old:0.1" }, rows)
  end)

  it("sorts by a metric best first, runs without it last, and pages", function()
    assert.same({ "m0:0.4", "m1:0.3", "m0:0.2", "old:0.2", "m1:0.1", "old:0.1", "m1:nil" }, (page { sort = "auc" }))
    assert.same({ "old:0.1", "m1:0.1", "old:0.2", "m0:0.2", "m1:0.3", "m0:0.4", "m1:nil" },
      (page { sort = "auc", order = "asc" }))
    local rows, p = page { sort = "auc", limit = 3, offset = 3 }
    assert.same({ "old:0.2", "m1:0.1", "old:0.1" }, rows)
    assert.equal(6, p.next_offset)
    rows, p = page { sort = "auc", limit = 3, offset = 6 }
    assert.same({ "m1:nil" }, rows)
    assert.is_nil(p.next_offset)
  end)

  it("filters by model, kind and both, with their totals", function()
    local rows, p = page { model = "m1" }
    assert.same({ "m1:nil", "m1:0.3", "m1:0.1" }, rows)
    assert.equal(3, p.total)
    rows, p = page { kind = "trial", sort = "seconds", order = "asc" }
    assert.same({ "m0:0.2", "m0:0.4" }, rows)
    assert.equal(2, p.total)
    rows, p = page { model = "m0", kind = "fit" }
    assert.same({}, rows)
    assert.equal(0, p.total)
  end)

  it("pages by time with a cursor, and refuses a cursor elsewhere", function()
    local _, first = page { limit = 3 }
    local rows = page { limit = 3, cursor = first.cursor }
    assert.same({ "m0:0.2", "m1:0.1", "old:0.2" }, rows)
    local ok, _, code = runs.page { limit = 3, cursor = first.cursor, model = "m1" }
    assert.same({ nil, "invalid" }, { ok, code })
  end)

  it("indexes runs written together by record_many", function()
    local ids = assert(runs.record_many { { kind = "fit", model = "x", metrics = { auc = 0.9 } },
                                          { kind = "fit", model = "x" } })
    assert.equal(2, #ids)
    local rows, p = page { model = "x", sort = "auc" }
    assert.same({ "x:0.9", "x:nil" }, rows)
    assert.equal(2, p.total)
    assert.equal(9, (select(2, page {})).total)
  end)
end)
