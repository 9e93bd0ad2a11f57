-- POST /get-online-features reads a plain Feast body in C (tz_feast_parse)
-- once the general path has read and checked the same features: answers,
-- errors and limits are those of the general path, whatever the path.
local http = require "tycho.serve.http"
local json = require "tycho.util.json"
local tycho = require "tycho"

describe("the Feast read body's fast path", function()
  local app, handler
  setup(function()
    local fs = assert(tycho.features.open())
    fs:entity { name = "driver", join_key = "driver_id" }
    assert(fs:feature_view { name = "stats", entity = "driver", schema = { trips = "int", rating = "float" } })
    local now = os.time()
    assert(fs:push("stats", { driver_id = { 1001, 1002 }, event_time = { now, now }, trips = { 5, 7 },
                              rating = { 4.5, json.null } }, "online"))
    app = http.app { limits = { items = 3 } }
    handler = app:handler()
  end)

  local function post(body)
    local status, _, out = handler({ method = "POST", path = "/get-online-features", headers = {}, body = body,
                                     query_string = "", peer = "127.0.0.1" })
    return status, out
  end

  -- The first answer (the general path, which remembers the features) and
  -- the second (the fast path when the body is plain) are the same.
  local function twice(body)
    local status, out = post(body)
    local again_status, again = post(body)
    assert.equal(status, again_status)
    assert.equal(out, again)
    return status, out
  end

  it("answers a plain body the same on both paths, and reads it in C the second time", function()
    local before = app.feast_refs_n
    local status, out = twice('{"features":["stats:trips","stats:rating"],"entities":{"driver_id":[1001,"1002",3]}}')
    assert.equal(200, status)
    assert.equal(before + 1, app.feast_refs_n)
    local doc = json.decode(out)
    assert.same({ "driver_id", "trips", "rating" }, doc.metadata.feature_names)
    assert.same({ 1001, "1002", 3 }, doc.results[1].values)
    assert.same({ 5, 7, json.null }, doc.results[2].values)
    assert.same({ "PRESENT", "NULL_VALUE", "NOT_FOUND" }, doc.results[3].statuses)
  end)

  it("reads whitespace, key order, number forms and full_feature_names as the general path does", function()
    for _, body in ipairs {
      ' { "entities" : { "driver_id" : [ 1.001e3 , 1002.0 ] } , "features" : [ "stats:trips" ] } ',
      '{"full_feature_names":true,"features":["stats:trips","stats:rating"],"entities":{"driver_id":[1002]}}',
      '{"features":["stats:trips"],"entities":{"driver_id":[-0]},"full_feature_names":false}',
    } do
      local status, out = twice(body)
      assert.equal(200, status, out)
    end
    local _, out = post('{"full_feature_names":true,"features":["stats:trips"],"entities":{"driver_id":[1001]}}')
    assert.same({ "driver_id", "stats:trips" }, json.decode(out).metadata.feature_names)
    _, out = post('{"features":["stats:trips"],"entities":{"driver_id":[1.001e3]}}')
    assert.same({ 1001 }, json.decode(out).results[1].values)
    assert.same({ 5 }, json.decode(out).results[2].values)
  end)

  it("refuses bad bodies every time, and remembers only features that passed the checks", function()
    local before = app.feast_refs_n
    local long = '{"features":["stats:' .. string.rep("x", 300) .. '"],"entities":{"driver_id":[1]}}'
    for _, case in ipairs {
      { long, 400, "1 to 256 bytes" },
      { '{"features":["nope:trips"],"entities":{"driver_id":[1]}}', 404 },
      { '{"features":["stats:trips"],"entities":{"rider_id":[1]}}', 400, "no keys for entity" },
    } do
      local status, out = twice(case[1])
      assert.equal(case[2], status, out)
      if case[3] then assert.matches(case[3], out, 1, true) end
    end
    -- nope:trips passed the route's checks (the view is looked up after);
    -- stats:trips is remembered already; the long one never is.
    assert.equal(before + 1, app.feast_refs_n)
  end)

  it("holds the fast path to the app's limits", function()
    assert.equal(200, (post('{"features":["stats:trips"],"entities":{"driver_id":[1]}}')))
    local status, out = twice('{"features":["stats:trips"],"entities":{"driver_id":[1,2,3,4]}}')
    assert.equal(413, status)
    assert.matches("4 entity keys in one request; the limit is 3", out, 1, true)
  end)

  it("sends every other body to the general path, with its answers", function()
    for _, case in ipairs {
      { '{"features":["stats:trips"],"entities":{"driver_id":[null]}}', 400 },
      { '{"features":["stats:trips"],"entities":{"driver_id":[1e999]}}', 400 },
      { '{"features":["stats:trips"],"entities":{"driver_id":[1]},"other":1}', 200 },
      { '{"features":["stats:\\u0074rips"],"entities":{"driver_id":[1001]}}', 200 },
      { '{"features":["stats:trips"],"entities":{"driver_id":[1001]}', 400 },
    } do
      local status, out = twice(case[1])
      assert.equal(case[2], status, out)
    end
  end)

  it("remembers frozen lists: read as the lists they copy, and refusing additions", function()
    local refs = require "tycho.features.refs"
    local list = { "stats:trips", "stats:rating" }
    local frozen = refs.frozen(list)
    local fs = assert(tycho.features.open())
    assert.same(fs:online(list, { driver_id = { 1001, 1002 } }), fs:online(frozen, { driver_id = { 1001, 1002 } }))
    assert.has_error(function() frozen[3] = "stats:trips" end, "a frozen list of feature references cannot change")
    list[1] = "stats:rating"
    assert.equal("stats:trips", frozen[1])
  end)

  it("remembers a bounded number of feature lists", function()
    for i = 1, 1100 do
      local status = post(string.format('{"features":["stats:trips"%s],"entities":{"driver_id":[1]}}',
        string.rep(',"stats:trips"', i % 40) .. string.rep(" ", i)))
      assert.equal(200, status)
    end
    assert.is_true(app.feast_refs_n <= 1024, tostring(app.feast_refs_n))
  end)

  it("keeps no text past 64 KiB and no more than 4 MiB of texts, whatever the client's whitespace", function()
    local padded = '{"features":["stats:trips"' .. string.rep(" ", 70000) .. '],"entities":{"driver_id":[1]}}'
    local before = app.feast_refs_n
    assert.equal(200, (twice(padded)))
    assert.equal(before, app.feast_refs_n)
    for i = 1, 200 do
      local status = post('{"features":["stats:trips"' .. string.rep(" ", 30000 + i) .. '],"entities":{"driver_id":[1]}}')
      assert.equal(200, status)
      assert.is_true(app.feast_refs_bytes <= 4 * 1024 * 1024, tostring(app.feast_refs_bytes))
    end
  end)
end)
