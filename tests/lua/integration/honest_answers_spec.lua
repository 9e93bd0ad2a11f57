-- Issue 20: nothing a user relies on is silently wrong. One regression per
-- numbered item of the issue, each of which failed before its fix.
local tycho = require "tycho"
local testing = require "tycho.testing"
local features, frame = tycho.features, tycho.frame

describe("a partial push (20.1)", function()
  local home, fs
  before_each(function()
    home = testing.tmpdir()
    fs = assert(features.open({ home = home }))
    fs:entity { name = "patient", join_key = "patient_id" }
    assert(fs:feature_view { name = "pima", entity = "patient",
                             schema = { glucose = "float", mass = "float", age = "int" } })
    assert(fs:push("pima", { patient_id = { "p1" }, glucose = { 148 }, mass = { 33.6 }, age = { 50 },
                             event_time = { "2026-01-01T00:00:00Z" } }, "online_and_offline"))
  end)
  after_each(function()
    fs.store:close()
    testing.rmrf(home)
  end)

  local function online(id)
    local r = assert(fs:online({ "pima:glucose", "pima:mass", "pima:age" }, { patient_id = { id } }))
    return { glucose = r.results[2].values[1], mass = r.results[3].values[1], age = r.results[4].values[1],
             statuses = { r.results[2].statuses[1], r.results[3].statuses[1], r.results[4].statuses[1] } }
  end

  it("updates what it names and keeps the entity's other features", function()
    local rep = assert(fs:push("pima", { patient_id = { "p1" }, glucose = { 99 },
                                          event_time = { "2026-01-02T00:00:00Z" } }, "online_and_offline"))
    assert.equal(1, rep.landed)
    local got = online("p1")
    assert.same({ glucose = 99, mass = 33.6, age = 50, statuses = { "PRESENT", "PRESENT", "PRESENT" } }, got)
    -- The offline history answers the same at and after the push.
    local spine = frame.new({ patient_id = { "p1", "p1" }, event_time = { "2026-01-01T12:00:00Z", "2026-01-03T00:00:00Z" } })
    local h = assert(fs:historical(spine, { "pima:glucose", "pima:mass", "pima:age" }))
    assert.same({ 148, 99 }, h:col("glucose"):to_table())
    assert.same({ 33.6, 33.6 }, h:col("mass"):to_table())
    assert.same({ 50, 50 }, h:col("age"):to_table())
  end)

  it("keeps an explicit null as null", function()
    assert(fs:push("pima", { { patient_id = "p1", glucose = 101, mass = require("tycho.json").null,
                               event_time = "2026-01-02T00:00:00Z" } }))
    local got = online("p1")
    assert.equal(101, got.glucose)
    assert.equal("NULL_VALUE", got.statuses[2])
    assert.equal(50, got.age)
  end)

  it("carries the values in force at the pushed time, not later ones", function()
    assert(fs:push("pima", { patient_id = { "p1" }, mass = { 40 }, event_time = { "2026-01-05T00:00:00Z" } },
                   "online_and_offline"))
    -- A late row for Jan 3 carries Jan 1's mass (33.6), not Jan 5's.
    assert(fs:push("pima", { patient_id = { "p1" }, glucose = { 120 }, event_time = { "2026-01-03T00:00:00Z" } },
                   "offline"))
    local spine = frame.new({ patient_id = { "p1" }, event_time = { "2026-01-04T00:00:00Z" } })
    local h = assert(fs:historical(spine, { "pima:glucose", "pima:mass" }))
    assert.equal(120, h:col("glucose"):get(1))
    assert.equal(33.6, h:col("mass"):get(1))
  end)

  it("fills nothing for an entity seen for the first time", function()
    assert(fs:push("pima", { patient_id = { "p2" }, glucose = { 90 }, event_time = { "2026-01-02T00:00:00Z" } }))
    local got = online("p2")
    assert.same({ "PRESENT", "NULL_VALUE", "NULL_VALUE" }, got.statuses)
  end)

  it("treats a CSV without a feature's column the same way", function()
    local path = testing.write(home .. "/part.csv", "patient_id,event_time,age\np1,2026-01-02T00:00:00Z,51\n")
    assert.equal(1, assert(fs:ingest("pima", path)).landed)
    assert.same({ glucose = 148, mass = 33.6, age = 51, statuses = { "PRESENT", "PRESENT", "PRESENT" } }, online("p1"))
  end)
end)
