-- Issue 23: ingestion's columnar path (features/ingest_columns.lua, C's
-- core/store/tz_ingest) gives exactly what the row path gives. The same
-- random frames — every kind of bad row, duplicates, corrections — go into
-- two views of one schema, one taking each path (a Lua row check that
-- passes everything sends a view down the row path), and everything is
-- compared: the reports and their reasons line by line, the stored offline
-- and online rows byte for byte, and the statistics.
local tycho = require "tycho"
local frame = require "tycho.frame"
local keys = require "tycho.util.keys"
local testing = require "tycho.testing"

local function lcg(seed)
  local s = seed
  return function(n)
    s = (s * 1103515245 + 12345) % 2147483648
    return s % n
  end
end

local TIMES = { "1700000000", "1700000000.25", "1700000000123", "1700000000123456", "2024-02-29T12:00:00Z",
  "2024-02-29T12:00:00.5+02:00", "2024-03-01 08:30", "2024-03-01t08:30:15,25-0530", "2023-12-31T23:59:60Z",
  " 1700000500 ", "2024-02-30", "2023-02-29", "2024-01-01T24:00", "nope", "", "-5", "1e9", "0x10",
  "2024-01-01T10:00+05", "2024-01-01T10:00+5", "2024-13-01", "99999999999999999999" }

-- A frame of n random rows (seeded), with bad ones of every kind.
local function random_frame(seed, n)
  local r = lcg(seed)
  local cols = { id = {}, t = {}, f = {}, i = {}, b = {}, s = {}, req = {} }
  for k = 1, n do
    local e = r(20)
    cols.id[k] = e == 0 and "" or e == 1 and ("x"):rep(300) or ("e" .. (r(40) + 1))
    cols.t[k] = r(5) == 0 and TIMES[r(#TIMES) + 1] or tostring(1700000000 + r(50))
    local edge = r(6) == 0 and ({ 0, 100, -1e-9, 100.000001, -0.0 })[r(5) + 1]
    cols.f[k] = r(10) == 0 and nil or edge or (r(12000) / 100 - 10)
    cols.i[k] = r(8) == 0 and nil or r(5)
    cols.b[k] = r(6) == 0 and nil or r(2) == 1
    cols.s[k] = r(7) == 0 and nil or ({ "a", "b", "c" })[r(3) + 1]
    cols.req[k] = r(15) == 0 and nil or r(1000) / 7
  end
  return frame.new(cols, { order = { "id", "t", "f", "i", "b", "s", "req" },
    types = { id = "string", t = "string", f = "float", i = "int", b = "bool", s = "string", req = "float" }, n = n })
end

local SCHEMA = {
  f = { type = "float", min = 0, max = 100 }, i = { type = "int", values = { 1, 2, 3 } }, b = "bool",
  s = { type = "string", values = { "a", "b" } }, req = { type = "float", nullable = false },
}

-- The stored rows of a view: { [entity \0 time] = bytes } offline and { [entity] = bytes } online.
local function stored(fs, view)
  local v = assert(fs:view(view))
  local prefix = keys.pack("u32", v.id)
  local off, on = {}, {}
  fs.store:view(function(tx)
    for k, row in tx:scan("offline", { prefix = prefix }) do off[k:sub(5)] = row end
    for k, row in tx:scan("online", { prefix = prefix }) do on[k:sub(5)] = row end
  end)
  return off, on
end

local function comparable(report)
  local issues = {}
  for i, is in ipairs(report.issues) do issues[i] = { is.line, is.reason } end
  return { report.rows_read, report.landed, report.rejected, report.duplicates, report.unchanged,
           report.online_updates, report.time_range, issues }
end

describe("columnar ingestion", function()
  local home, fs
  -- Which path each view's batches took: both must be exercised.
  local columns = require "tycho.features.ingest_columns"
  local columnar_land, took = columns.land, {}
  setup(function()
    columns.land = function(f, v, ...)
      local report, rejected = columnar_land(f, v, ...)
      took[v.name .. (report and ":columns" or ":rows")] = true
      return report, rejected
    end
    home = testing.tmpdir()
    fs = assert(tycho.features.open({ home = home }))
    fs:entity { name = "rec", join_key = "id" }
    assert(fs:feature_view { name = "fast", entity = "rec", timestamp = "t", schema = SCHEMA })
    assert(fs:feature_view { name = "rows", entity = "rec", timestamp = "t", schema = SCHEMA,
                             check = function() return true end })
  end)
  teardown(function()
    columns.land = columnar_land
    testing.rmrf(home)
  end)

  it("lands, refuses and counts exactly as the row path, over random batches with corrections", function()
    for round = 1, 4 do
      local f = random_frame(round, 1500)
      local a = assert(fs:ingest("fast", f, { to = round == 3 and "offline" or nil }))
      local b = assert(fs:ingest("rows", f, { to = round == 3 and "offline" or nil }))
      assert.same(comparable(b), comparable(a))
      assert.equal(a.rows_read, a.landed + a.rejected + a.unchanged)
      assert.is_true(a.rejected > 0 and a.duplicates > 0 and a.landed > 0)
      if round == 4 then assert.is_true(a.unchanged > 0) end
    end
    -- Pushed frames take the same path.
    local push = random_frame(9, 400)
    assert.same(comparable(assert(fs:push("rows", push))), comparable(assert(fs:push("fast", push))))
    local off_a, on_a = stored(fs, "fast")
    local off_b, on_b = stored(fs, "rows")
    assert.is_true(next(off_a) ~= nil and next(on_a) ~= nil)
    assert.same(off_b, off_a)
    assert.same(on_b, on_a)
    local qa, qb = assert(fs:quality("fast")), assert(fs:quality("rows"))
    qa.view, qb.view = nil, nil
    qa.first_ingest, qb.first_ingest, qa.last_ingest, qb.last_ingest = nil, nil, nil, nil
    qa.freshness_seconds, qb.freshness_seconds, qa.update_interval_seconds, qb.update_interval_seconds = nil, nil, nil, nil
    assert.same(qb, qa)
    assert.same({ ["fast:columns"] = true, ["rows:rows"] = true }, took)
  end)

  it("reads a CSV file through the same path, with the reader's own refusals first", function()
    local path = testing.write(home .. "/batch.csv", table.concat({
      "id,t,f,i,b,s,req",
      "u1,1700000000,1.5,1,true,a,3",
      "u2,2024-01-01T00:00:00Z,oops,2,false,b,4",   -- the reader refuses a float that is not one
      "u3,1700000001,500,3,true,a,5",               -- above max
      "u4,1700000002,2,2,true,a,",                  -- a required value missing
      "u1,1700000000,1.5,1,true,a,3",               -- a duplicate of line 2
    }, "\n") .. "\n")
    local a = assert(fs:ingest("fast", path))
    local b = assert(fs:ingest("rows", path))
    assert.same(comparable(b), comparable(a))
    assert.same({ 5, 5 }, { a.rows_read, a.landed + a.rejected + a.unchanged })
    local lines = {}
    for _, is in ipairs(a.issues) do lines[#lines + 1] = is.line end
    table.sort(lines)
    assert.same({ 3, 4, 5, 6 }, lines)
  end)
end)
