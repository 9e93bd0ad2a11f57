-- The app's request handler without a server: routing, parameters, return
-- conventions, errors and auth.
local http = require "tycho.http"
local json = require "tycho.json"

local function call(handler, method, path, opts)
  opts = opts or {}
  local status, headers, body = handler({
    method = method, path = path, query_string = opts.query or "", body = opts.body or "",
    headers = opts.headers or {}, peer = "127.0.0.1:1",
  })
  return status, headers, body, json.decode(body)
end

describe("tycho.http app", function()
  local app = http.app()
  app:get("/v1/models/{name}:predict", function(req) return { name = req.params.name } end)
  app:get("/users/{id}/items/{item}", function(req) return { req.params.id, req.params.item, req.query.sort } end)
  app:post("/things", function(req) return 201, { got = req:json() } end)
  app:get("/raw", function() return 200, { ["Content-Type"] = "text/csv" }, "a,b\n" end)
  app:get("/text", function() return 202, "accepted" end)
  app:get("/empty", function() end)
  app:get("/fail", function() http.error(409, "conflict", "already there") end)
  app:get("/crash", function() error("oops") end)
  local handle = app:handler()

  it("routes with parameters around literal suffixes", function()
    local status, _, _, doc = call(handle, "GET", "/v1/models/spam%2Dv2:predict")
    assert.equal(200, status)
    assert.equal("spam-v2", doc.name)
  end)

  it("decodes several parameters and the query string", function()
    local _, _, _, doc = call(handle, "GET", "/users/7/items/a%20b", { query = "sort=desc&x=1" })
    assert.same({ "7", "a b", "desc" }, doc)
  end)

  it("answers the built-in health routes", function()
    assert.equal(200, (call(handle, "GET", "/v2/health/live")))
    assert.equal(200, (call(handle, "GET", "/v2/health/ready")))
  end)

  it("follows the return conventions", function()
    local s, h, b = call(handle, "GET", "/raw")
    assert.same({ 200, "text/csv", "a,b\n" }, { s, h["Content-Type"], b })
    local _, doc
    s, _, b = call(handle, "GET", "/text")
    assert.same({ 202, "accepted" }, { s, b })
    s = call(handle, "GET", "/empty")
    assert.equal(204, s)
    s, _, _, doc = call(handle, "POST", "/things", { body = '{"a":1}' })
    assert.equal(201, s)
    assert.same({ got = { a = 1 } }, doc)
  end)

  it("turns errors into JSON error bodies", function()
    local s, _, _, doc = call(handle, "GET", "/nowhere")
    assert.same({ 404, "not_found" }, { s, doc.error.code })
    s, _, _, doc = call(handle, "POST", "/things", { body = "{nope" })
    assert.same({ 400, "bad_json" }, { s, doc.error.code })
    s, _, _, doc = call(handle, "GET", "/fail")
    assert.same({ 409, "conflict", "already there" }, { s, doc.error.code, doc.error.message })
    s, _, _, doc = call(handle, "GET", "/crash")
    assert.same({ 500, "internal" }, { s, doc.error.code })
    local h
    s, h = call(handle, "DELETE", "/things")
    assert.same({ 405, "POST" }, { s, h.Allow })
  end)

  it("guards mutating routes with the token, in constant form", function()
    local guarded = app:handler("s3cret")
    assert.equal(401, (call(guarded, "POST", "/things", { body = "{}" })))
    local function with_auth(value) return { body = "{}", headers = { authorization = value } } end
    assert.equal(401, (call(guarded, "POST", "/things", with_auth("Bearer s3cre"))))
    assert.equal(201, (call(guarded, "POST", "/things", with_auth("Bearer s3cret"))))
    assert.equal(200, (call(guarded, "GET", "/v2/health/live")))
  end)

  it("runs middleware around handlers in order", function()
    local mw = http.app()
    local seen = {}
    mw:use(function(req, nxt) seen[#seen + 1] = "outer" return nxt(req) end)
    mw:use(function(req, nxt) seen[#seen + 1] = "inner" return nxt(req) end)
    mw:get("/x", function() seen[#seen + 1] = "handler" return { ok = true } end)
    assert.equal(200, (call(mw:handler(), "GET", "/x")))
    assert.same({ "outer", "inner", "handler" }, seen)
  end)

  it("rejects misuse when routes are declared", function()
    assert.has_error(function() app:get("no-slash", function() end) end,
      "route path must be a string starting with '/'")
    assert.has_error(function() app:get("/x", "not a function") end, "route handler must be a function")
  end)
end)
