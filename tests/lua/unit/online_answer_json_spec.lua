-- features/online.lua's answer_json, what POST /get-online-features sends:
-- fs:online's answer in Feast's shape, written without the general encoder.
local online = require "tycho.features.online"
local json = require "tycho.util.json"
local cjson = require "cjson"

local function answer(names, columns)
  local results = {}
  for j, c in ipairs(columns) do
    results[j] = { values = c[1], statuses = c[2], event_timestamps = c[3] }
  end
  return { metadata = { feature_names = names }, results = results }
end

describe("the online answer as JSON", function()
  local numbers = { 0.1, 1e-7, 2 ^ 53, -2.5, 1 / 3, 123456789.125, 0 }
  local res = answer({ "driver_id", "driver_stats:trips", "driver_stats:name", "other:flag" }, {
    { { "d1", 'say "hi"', "caf\195\169\n" }, { "PRESENT", "PRESENT", "PRESENT" }, { "t0", "t0", "t0" } },
    { { numbers[1], numbers[2], json.null }, { "PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND" }, { "t1", "t2", "t0" } },
    { { numbers[3], numbers[4], numbers[5] }, { "PRESENT", "PRESENT", "PRESENT" }, { "t1", "t2", "t3" } },
    { { true, false, numbers[6] }, { "PRESENT", "PRESENT", "NULL_VALUE" }, { "t1", "t2", "t3" } },
  })

  it("writes Feast's shape, bare feature names unless full ones are asked for", function()
    local doc = cjson.decode(online.answer_json(res))
    assert.same({ "driver_id", "trips", "name", "flag" }, doc.metadata.feature_names)
    assert.same({ "d1", 'say "hi"', "caf\195\169\n" }, doc.results[1].values)
    assert.same({ "PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND" }, doc.results[2].statuses)
    assert.same({ "t1", "t2", "t3" }, doc.results[4].event_timestamps)
    assert.equal(cjson.null, doc.results[2].values[3])
    assert.same({ true, false, numbers[6] }, doc.results[4].values)
    doc = cjson.decode(online.answer_json(res, true))
    assert.same(res.metadata.feature_names, doc.metadata.feature_names)
    -- The answer itself is left as it was (fs:online refills it).
    assert.equal("driver_stats:trips", res.metadata.feature_names[2])
  end)

  it("writes numbers in their shortest exact form", function()
    local text = online.answer_json(res)
    for _, x in ipairs(numbers) do
      assert.truthy(text:find(json.encode_exact(x), 1, true), "missing " .. json.encode_exact(x))
    end
    local doc = cjson.decode(text)
    assert.equal(numbers[5], doc.results[3].values[3])  -- 1/3 bit for bit
    assert.equal(numbers[2], doc.results[2].values[2])
  end)

  it("writes no entity keys as empty lists, [] as Feast writes them", function()
    local empty = answer({ "driver_id", "driver_stats:trips" }, { { {}, {}, {} }, { {}, {}, {} } })
    assert.equal('{"metadata":{"feature_names":["driver_id","trips"]},"results":['
      .. '{"values":[],"statuses":[],"event_timestamps":[]},{"values":[],"statuses":[],"event_timestamps":[]}]}',
      online.answer_json(empty))
  end)
end)
