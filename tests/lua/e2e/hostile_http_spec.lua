-- Hostile and careless HTTP clients against a real `tycho serve`: requests
-- that ask for unbounded work, non-finite numbers, malformed feature lists,
-- repeated Expect headers. Each gets a clear 4xx, never a 500, and the
-- worker goes on serving.
local testing = require "tycho.testing"
local json = require "tycho.json"

local APP = "tests/lua/fixtures/app.lua"

describe("hostile HTTP clients", function()
  local home, srv
  setup(function()
    home = testing.tmpdir()
    srv = testing.serve(APP, {}, { env = { "TYCHO_HOME=" .. home } })
  end)
  teardown(function()
    if srv then srv:stop() end
    testing.rmrf(home)
  end)

  local function post(path, body) return testing.request(srv.port, "POST", path, { body = body }) end

  -- A list of n empty objects, as raw JSON (json.encode would write {} for each anyway).
  local function objects(n) return "[" .. ("{},"):rep(n - 1) .. "{}]" end

  it("bounds one request's work with 413 naming the limit", function()
    local status, _, _, doc = post("/v1/models/spam:predict", '{"instances":' .. objects(10001) .. "}")
    assert.equal(413, status)
    assert.equal("too_large", doc.error.code)
    assert.matches("10001 instances in one request; the limit is 10000", doc.error.message, 1, true)
    local keys = {}
    for i = 1, 10001 do keys[i] = "u" .. i end
    status, _, _, doc = post("/get-online-features", { features = { "v:f" }, entities = { user_id = keys } })
    assert.equal(413, status)
    assert.matches("entity keys", doc.error.message)
    status = post("/v1/feedback", objects(10001))
    assert.equal(413, status)
    local cols = { user_id = keys }
    status = post("/push", { push_source_name = "v", df = cols })
    assert.equal(413, status)
  end)

  it("refuses NaN, Infinity and 1e999 with a named 400", function()
    for _, body in ipairs { '{"x":NaN}', '{"x":Infinity}', '{"x":1e999}', '{"instances":[{"hp":-Infinity}]}' } do
      local status, _, _, doc = post("/echo", body)
      assert.equal(400, status, body)
      assert.matches("not a finite decimal", doc.error.message, 1, true)
      status = post("/v1/models/spam:predict", body)
      assert.equal(400, status, body)
    end
  end)

  it("refuses malformed feature lists with 400, not 500", function()
    local status, _, body = post("/get-online-features", '{"features":[null,1,{}],"entities":{"user_id":["a"]}}')
    assert.equal(400, status)
    assert.matches("features%[1%]", body)
    status = post("/get-online-features", { features = { "v:f" }, entities = { user_id = { {} } } })
    assert.equal(400, status)
    status = post("/get-online-features", { features = { ("v"):rep(300) .. ":f" }, entities = { user_id = { "a" } } })
    assert.equal(400, status)
  end)

  it("answers one 100 Continue however many Expect headers ask", function()
    local head = { "POST /echo HTTP/1.1", "Host: x", "Content-Length: 2", "Connection: close" }
    for _ = 1, 50 do head[#head + 1] = "Expect: 100-continue" end
    local text = testing.raw(srv.port, table.concat(head, "\r\n") .. "\r\n\r\n{}")
    local _, interim = text:gsub("HTTP/1%.1 100 Continue", "")
    assert.equal(1, interim)
    assert.matches("HTTP/1.1 201", text, 1, true)
  end)

  it("keeps the server's file layout out of error bodies", function()
    local status, _, body = testing.request(srv.port, "GET", "/v1/models/spam/monitor?window=bogus")
    assert.equal(400, status)
    assert.is_nil(body:find(".lua:", 1, true), body)
    assert.is_table(json.decode(body).error)
  end)

  it("still serves after all of it", function()
    assert.equal(200, (testing.request(srv.port, "GET", "/hello/still")))
  end)
end)
