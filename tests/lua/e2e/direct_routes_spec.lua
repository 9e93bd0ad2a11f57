-- Direct routes (core/lua/lua_http.c, App:direct_routes): a hosted model's
-- :predict with full numeric instances, and a Feast read whose features
-- were asked for before, are answered without the request table or the
-- router; the answer, the metrics and the prediction log are the route's,
-- and any other request takes the route.
local testing = require "tycho.testing"
local tycho = require "tycho"
local http = require "tycho.serve.http"
local internal = require "tycho.internal"

describe("direct routes", function()
  local home, srv
  local instance = assert(tycho.frame.read_csv("../shared/data/spam.csv")):drop("label"):row(3)
  setup(function()
    home = dofile("tests/lua/fixtures/spam_home.lua")({ "plain", "mine" })
    -- One worker: its /metrics counts every request.
    srv = testing.serve("tests/lua/fixtures/direct_app.lua", { "--workers", "1" }, { env = { "TYCHO_HOME=" .. home } })
  end)
  teardown(function()
    if srv then srv:stop() end
    testing.rmrf(home)
  end)

  local function predict(model, inst, query)
    return testing.request(srv.port, "POST", "/v1/models/" .. model .. ":predict" .. (query or ""),
      { body = { instances = { inst } } })
  end
  local function with(extra)
    local inst = {}
    for k, v in pairs(instance) do inst[k] = v end
    for k, v in pairs(extra) do inst[k] = v end
    return inst
  end
  local function counter(metrics, pattern)
    return tonumber(metrics:match(pattern) or 0)
  end

  it("answers full numeric instances as the route does", function()
    local status, headers, _, direct = predict("plain", instance)
    assert.equal(200, status)
    assert.matches("application/json", headers["content-type"], 1, true)
    -- A nested extra is the route's to read (the fast path leaves it), a
    -- query string too: the same prediction either way.
    local s2, _, _, routed = predict("plain", with { meta = { source = "spec" } })
    local s3, _, _, queried = predict("plain", instance, "?trace=1")
    assert.same({ 200, 200 }, { s2, s3 })
    assert.same(routed.predictions, direct.predictions)
    assert.same(queried.predictions, direct.predictions)
    assert.same({ "1.0.0", { "1.0.0" } }, { direct.model_version, direct.model_versions })
    assert.equal(1, #direct.prediction_ids)
    assert.are_not.equal(direct.prediction_ids[1], routed.prediction_ids[1])
  end)

  it("counts its requests and predictions in /metrics as the route's", function()
    local _, _, before = testing.request(srv.port, "GET", "/metrics")
    for _ = 1, 5 do assert.equal(200, (predict("plain", instance))) end
    local _, _, after = testing.request(srv.port, "GET", "/metrics")
    local route = 'tycho_http_requests_total{route="POST /v1/models/{name}:predict",status="200"} (%d+)'
    local predictions = 'tycho_predictions_total{model="plain",version="1.0.0"} (%d+)'
    assert.equal(5, counter(after, route) - counter(before, route))
    assert.equal(5, counter(after, predictions) - counter(before, predictions))
  end)

  it("logs its predictions: feedback finds them by id", function()
    local _, _, _, doc = predict("plain", instance)
    local status, _, _, fb = testing.request(srv.port, "POST", "/v1/feedback",
      { body = { prediction_id = doc.prediction_ids[1], outcome = 1 } })
    assert.equal(200, status)
    assert.equal(1, fb.accepted + fb.pending)
  end)

  it("leaves a path that an app route takes to that route", function()
    local status, _, _, doc = predict("mine", instance)
    assert.equal(200, status)
    assert.equal("the app's route", doc.answered_by)
  end)

  it("answers a Feast read it has seen the features of, as the route does", function()
    local refs = { "email_stats:make", "email_stats:address", "email_stats:free" }
    local function read(keys)
      return testing.request(srv.port, "POST", "/get-online-features",
        { body = { features = refs, entities = { email_id = keys } } })
    end
    local _, _, before = testing.request(srv.port, "GET", "/metrics")
    -- The first read of these features is the route's; it remembers them.
    local s1, _, first = read({ "email-00001" })
    local s2, headers, again = read({ "email-00001" })
    assert.same({ 200, 200 }, { s1, s2 })
    assert.matches("application/json", headers["content-type"], 1, true)
    assert.equal(first, again)
    local s3, _, _, doc = read({ "email-00002", "nobody" })
    assert.equal(200, s3)
    -- (The example's rows are older than their view's ttl: found, and stale.)
    assert.same({ "OUTSIDE_MAX_AGE", "NOT_FOUND" }, doc.results[2].statuses)
    -- Over the app's limit: the route refuses it, seen or not.
    local s4, _, _, refused = read({ "a", "b", "c", "d" })
    assert.equal(413, s4)
    assert.matches("4 entity keys in one request", refused.error.message, 1, true)
    local _, _, after = testing.request(srv.port, "GET", "/metrics")
    local route = 'tycho_http_requests_total{route="POST /get%-online%-features",status="200"} (%d+)'
    assert.equal(3, counter(after, route) - counter(before, route))
  end)

  it("is not made where the request is needed: middleware, an access log, a token for :predict", function()
    local app = http.app()
    app:model("plain", { alias = "production" })
    local function paths(list)
      local out = {}
      for i, d in ipairs(list) do out[i] = d.method .. " " .. d.path end
      table.sort(out)
      return out
    end
    assert.same({ "POST /get-online-features", "POST /v1/models/plain:predict" }, paths(app:direct_routes()))
    -- The Feast read is read-only: a token does not guard it.
    assert.same({ "POST /get-online-features" }, paths(app:direct_routes("secret")))
    app.access_log = io.stderr
    assert.same({}, app:direct_routes())
    app.access_log = nil
    app:use(function(req, next) return next(req) end)
    assert.same({}, app:direct_routes())
    local odd = http.app()
    odd:model("a b", { alias = "production" })  -- not its own path segment
    assert.same({ "POST /get-online-features" }, paths(odd:direct_routes()))
  end)

  it("refuses a malformed direct route before serving", function()
    local ok, err = pcall(internal.http_serve, { port = 0, direct = { { method = "POST", path = "/x" } } },
      function() end)
    assert.is_false(ok)
    assert.matches("direct route 1 needs a method, a path", err, 1, true)
  end)

  it("reads the body only while a direct route runs", function()
    local http_direct = require "tycho.core.http"
    local p, len = http_direct.direct_body()
    assert.is_nil(p)
    assert.equals(0, len)
    local ok, got = internal.http_run_direct(function()
      local bp, blen = http_direct.direct_body()
      return require("ffi").string(bp, blen)
    end, '{"instances":[]}')
    assert.is_true(ok)
    assert.equals('{"instances":[]}', got)
    assert.is_nil((http_direct.direct_body()))
  end)

  it("answers from a buffer only while a direct route waits for its answer", function()
    -- (the served answers above came this way: protocols.predict_direct)
    local buf = require("string.buffer").new():put('{"x":1}')
    assert.is_false(require("tycho.core.http").direct_answer(buf))
    assert.equals('{"x":1}', buf:tostring())
  end)
end)
