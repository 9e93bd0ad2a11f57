-- Hosted registry models on a real server: the KServe/TF Serving contract,
-- aliases followed live under load, canary, shadow, metrics.
local testing = require "tycho.testing"
local json = require "tycho.json"

describe("hosted models", function()
  local home, srv
  setup(function()
    -- staging = the weak 1.0.1; "plain" = a copy of spam under another name.
    home = dofile("tests/lua/fixtures/spam_home.lua")({ "plain", "strict_plain" })
    srv = testing.serve("tests/lua/fixtures/hosted_app.lua", { "--workers", "2" }, { env = { "TYCHO_HOME=" .. home } })
  end)
  teardown(function()
    if srv then srv:stop() end
    testing.rmrf(home)
  end)

  local function predict(model, instances)
    return testing.request(srv.port, "POST", "/v1/models/" .. model .. ":predict", { body = { instances = instances } })
  end

  it("answers the prediction contract with versions and prediction ids", function()
    local status, _, _, doc = predict("plain", { { email_id = "email-00001" }, { email_id = "email-04600" } })
    assert.equal(200, status)
    assert.equal("1.0.0", doc.model_version)
    assert.equal(2, #doc.predictions)
    assert.equal(1, doc.predictions[1].prediction)
    assert.equal(0, doc.predictions[2].prediction)
    assert.equal(2, #doc.prediction_ids)
    assert.are_not.equal(doc.prediction_ids[1], doc.prediction_ids[2])
  end)

  it("lists hosted models KServe-style and reports readiness", function()
    local status, _, _, doc = testing.request(srv.port, "GET", "/v1/models")
    assert.equal(200, status)
    assert.equal(3, #doc.models)
    local _, _, _, one = testing.request(srv.port, "GET", "/v1/models/plain")
    assert.same({ "plain", "1.0.0", true }, { one.name, one.version, one.ready })
    assert.equal(404, (testing.request(srv.port, "GET", "/v1/models/nope")))
    assert.equal(200, (testing.request(srv.port, "GET", "/v2/health/ready")))
  end)

  it("names the bad instance and reports online-store misses", function()
    local status, _, _, doc = predict("plain", { { email_id = "email-00002" }, { email_id = "nobody" } })
    assert.equal(200, status)
    assert.is_table(doc.missing_features[2])
    assert.is_true(#doc.missing_features[2] > 50)
    status, _, _, doc = predict("plain", { { email_id = "email-00002" }, "not an object" })
    assert.equal(400, status)
    assert.matches("instance 2", doc.error.message)
    status = predict("ghost", { { email_id = "x" } })
    assert.equal(404, status)
    status = testing.request(srv.port, "POST", "/v1/models/plain:predict", { body = "{oops" })
    assert.equal(400, status)
  end)

  it("lists every absent input and every stale feature, and a strict host refuses them (20.6)", function()
    -- No entity key: every input but the one given is missing.
    local status, _, _, doc = predict("plain", { { make = 0.1 }, { email_id = "email-00003" } })
    assert.equal(200, status)
    assert.equal(56, #doc.missing_features[1])
    assert.equal(0, #doc.missing_features[2])  -- the stored email has every input
    -- The example's rows are from 2025 and its view's ttl is 30 days: stale,
    -- as fs:online says (OUTSIDE_MAX_AGE), and said per instance.
    assert.equal(0, #doc.stale_features[1])
    assert.equal(57, #doc.stale_features[2])
    -- Counted in /metrics (per worker: a scrape reaches either of the two).
    for _ = 1, 6 do predict("plain", { { make = 0.1 }, { email_id = "email-00003" } }) end
    assert.truthy(testing.run_until(function()
      local _, _, metrics = testing.request(srv.port, "GET", "/metrics")
      return metrics:match('tycho_instances_missing_inputs_total{model="plain"} [1-9]')
        and metrics:match('tycho_instances_stale_inputs_total{model="plain"} [1-9]')
    end, 5000))
    status, _, _, doc = predict("strict_plain", { { email_id = "email-00003" } })
    assert.equal(400, status)
    assert.matches("instance 1: stale (older than their view's ttl) ", doc.error.message, 1, true)
    status, _, _, doc = predict("strict_plain", { { make = 0.1 } })
    assert.equal(400, status)
    assert.matches("instance 1: missing ", doc.error.message, 1, true)
  end)

  it("validates feedback against the model's classes (20.6)", function()
    local _, _, _, doc = predict("plain", { { email_id = "email-00004" }, { email_id = "email-00005" } })
    local status, _, _, fb = testing.request(srv.port, "POST", "/v1/feedback",
      { body = { prediction_id = doc.prediction_ids[1], outcome = "maybe" } })
    assert.equal(400, status)
    assert.matches('outcome "maybe" is not a class of this model: allowed 0, 1', fb.error.message, 1, true)
    status, _, _, fb = testing.request(srv.port, "POST", "/v1/feedback",
      { body = { { prediction_id = doc.prediction_ids[1], outcome = 7 },
                 { prediction_id = doc.prediction_ids[2], outcome = 1 } } })
    assert.equal(200, status)
    -- (pending: the prediction is still in the other worker's buffer)
    assert.same({ 1, 1 }, { fb.accepted + fb.pending, fb.rejected })
    assert.equal("invalid", fb.results[1].code)
    -- The refused outcome was not stored: a right one for the same id still counts.
    status, _, _, fb = testing.request(srv.port, "POST", "/v1/feedback",
      { body = { prediction_id = doc.prediction_ids[1], outcome = true } })
    assert.equal(200, status)
    assert.equal(1, fb.accepted + fb.pending)
  end)

  it("routes a sticky share of units to the canary", function()
    local seen, per_unit = {}, {}
    for i = 1, 40 do
      local id = string.format("email-%05d", i * 37)
      local _, _, _, doc = predict("spam", { { email_id = id } })
      local v = doc.model_versions and doc.model_versions[1] or doc.model_version
      seen[v] = true
      per_unit[id] = per_unit[id] or {}
      per_unit[id][v] = true
    end
    assert.is_true(seen["1.0.0"] and seen["1.0.1"], "both versions should serve: " .. json.encode(seen))
    for i = 1, 10 do
      local id = string.format("email-%05d", i * 37)
      local _, _, _, doc = predict("spam", { { email_id = id } })
      local v = doc.model_versions and doc.model_versions[1] or doc.model_version
      assert.is_true(per_unit[id][v], "unit " .. id .. " changed version")
    end
  end)

  it("follows an alias moved from the CLI within a second, without failing a request", function()
    local failures, versions = 0, {}
    local function burst(n)
      for _ = 1, n do
        local status, _, _, doc = predict("plain", { { email_id = "email-00003" } })
        if status ~= 200 then failures = failures + 1 else versions[doc.model_version] = true end
      end
    end
    burst(20)
    local mover = testing.spawn({ "--home", home, "models", "promote", "plain", "1.0.0", "canary-test" })
    burst(20)
    assert.equal(0, (mover:wait(10000)))
    -- Register a second plain version and move production to it, live.
    local script = testing.write(home .. "/move.lua", [[
      local reg = assert(require("tycho").registry.open())
      local p = assert(reg:load("spam", "1.0.1"))
      local v = assert(reg:register("plain", p))
      assert(reg:promote("plain", v, "production", { gates = { schema = false } }))]])
    assert.equal(0, (testing.run({ "--home", home, "run", script })))
    local switched = testing.run_until(function()
      burst(5)
      local _, _, _, d1 = testing.request(srv.port, "GET", "/v1/models/plain")
      local _, _, _, d2 = testing.request(srv.port, "GET", "/v1/models/plain")
      return d1.version == "1.0.1" and d2.version == "1.0.1"
    end, 5000)
    assert.is_true(switched, "workers did not switch to 1.0.1")
    assert.equal(0, (testing.run({ "--home", home, "models", "rollback", "plain", "production" })))
    local back = testing.run_until(function()
      burst(5)
      local _, _, _, d = testing.request(srv.port, "GET", "/v1/models/plain")
      return d.version == "1.0.0"
    end, 5000)
    assert.is_true(back)
    assert.equal(0, failures)
    assert.is_true(versions["1.0.0"] and versions["1.0.1"])
  end)

  it("moves production and back under wrk load without a failed request", function()
    local script = testing.write(home .. "/wrk.lua", [[
      wrk.method = "POST"
      wrk.body = '{"instances": [{"email_id": "email-00005"}]}'
      wrk.headers["Content-Type"] = "application/json"]])
    local uv = require "luv"
    local out = uv.new_pipe(false)
    local chunks, exit_code = {}, nil
    local handle = uv.spawn("wrk", { args = { "-t1", "-c8", "-d4s", "-s", script,
      "http://127.0.0.1:" .. srv.port .. "/v1/models/plain:predict" }, stdio = { nil, out, nil } },
      function(code) exit_code = code end)
    assert.is_truthy(handle, "wrk is not installed")
    out:read_start(function(_, data)
      if data then chunks[#chunks + 1] = data else out:close() end
    end)
    -- The moves happen while wrk's requests flow: each waits for the server
    -- to show the state before it (predictions counted, a worker switched).
    local function served(version)
      local _, _, body = testing.request(srv.port, "GET", "/metrics")
      local n = tonumber((body or ""):match('tycho_predictions_total{model="plain",version="' .. version .. '"} (%d+)'))
      return n and n > 0
    end
    assert.is_true(testing.run_until(function() return served("1.0.0") end, 5000), "wrk's traffic did not arrive")
    assert.equal(0, (testing.run({ "--home", home, "models", "promote", "plain", "1.0.1", "production" })))
    assert.is_true(testing.run_until(function() return served("1.0.1") end, 5000), "no worker served 1.0.1")
    assert.equal(0, (testing.run({ "--home", home, "models", "rollback", "plain", "production" })))
    testing.run_until(function() return exit_code ~= nil end, 10000)
    testing.run_until(function() return out:is_closing() end, 2000)  -- the last of wrk's output
    if not out:is_closing() then out:close() end
    handle:close()
    local report = table.concat(chunks)
    assert.equal(0, exit_code, report)
    assert.matches("requests in", report, 1, true)
    assert.is_nil(report:find("Non-2xx", 1, true), report)
    assert.is_nil(report:find("Socket errors", 1, true), report)
    local requests = tonumber(report:match("(%d+) requests in"))
    assert.is_true(requests > 100, report)
  end)

  it("keeps the serving version when the promoted one fails to load", function()
    local script = testing.write(home .. "/broken.lua", [[
      local reg = assert(require("tycho").registry.open())
      local p = assert(reg:load("plain", "production"))
      p.artifact = nil                      -- re-serialise with a view that does not exist
      p.features = { "no_such_view:*" }
      local v = assert(reg:register("plain", p))
      assert(reg:promote("plain", v, "production", { gates = { schema = false } }))
      print(v)]])
    local code, out, err = testing.run({ "--home", home, "run", script })
    assert.equal(0, code, err)
    local broken = out:match("(%S+)")
    -- A worker's refresh tick tries the promoted version and names its failure.
    local named = testing.run_until(function()
      local _, _, _, d = testing.request(srv.port, "GET", "/v1/models/plain")
      return type(d.error) == "string" and d.error:find("version " .. broken .. " of plain failed to load", 1, true) ~= nil
    end, 5000)
    assert.is_true(named, "no worker named the version that failed to load")
    for _ = 1, 4 do
      local _, _, _, d = testing.request(srv.port, "GET", "/v1/models/plain")
      assert.are_not.equal(broken, d.version)
      assert.is_true(d.ready)
      local status = predict("plain", { { email_id = "email-00001" } })
      assert.equal(200, status)
    end
  end)

  it("logs live and shadow predictions to the home", function()
    predict("spam", { { email_id = "email-00010" } })
    local script = testing.write(home .. "/count.lua", [[
      local st = assert(require("tycho").store.open())
      local live, shadow = 0, 0
      st:view(function(tx)
        for _, v in tx:scan("predictions") do
          local e = require("tycho").monitor.decode_entry(v)
          if e.role == "shadow" then shadow = shadow + 1 else live = live + 1 end
        end
      end)
      print(live, shadow)]])
    -- The log flushes every 200 ms, the shadow's answer after the response.
    local live, shadow = 0, 0
    testing.run_until(function()
      local code, out = testing.run({ "--home", home, "run", script })
      assert.equal(0, code)
      live, shadow = out:match("(%d+)%s+(%d+)")
      live, shadow = tonumber(live), tonumber(shadow)
      return live > 10 and shadow > 0
    end, 5000)
    assert.is_true(live > 10)
    assert.is_true(shadow > 0)
  end)

  it("batch-scores a file into a view that /get-online-features serves", function()
    local define = testing.write(home .. "/scores_view.lua", [[
      local fs = assert(require("tycho").features.open())
      assert(fs:feature_view { name = "spam_scores", entity = "email",
                               schema = { prediction = "int", probability = "float" } })]])
    assert.equal(0, (testing.run({ "--home", home, "run", define })))
    local input = testing.write(home .. "/to_score.csv", "email_id\nemail-00001\nemail-04600\nemail-00007\n")
    local code, out, err = testing.run({ "--home", home, "score", "plain@1.0.0", "--input", input,
                                         "--output", home .. "/scored.csv", "--to-view", "spam_scores" })
    assert.equal(0, code, err)
    assert.matches("pushed 3 predictions to spam_scores", out, 1, true)
    local scored = assert(io.open(home .. "/scored.csv")):read("*a")
    assert.matches("email%-00001,1,0%.9", scored)
    local status, _, _, doc = testing.request(srv.port, "POST", "/get-online-features",
      { body = { features = { "spam_scores:prediction" }, entities = { email_id = { "email-00001", "email-04600" } } } })
    assert.equal(200, status)
    assert.same({ 1, 0 }, doc.results[2].values)
    -- A key with no stored features is skipped and named, not scored as an average email.
    local unknown = testing.write(home .. "/unknown.csv", "email_id\nemail-00001\nnobody\n")
    code, out, err = testing.run({ "--home", home, "score", "plain@1.0.0", "--input", unknown,
                                   "--output", home .. "/scored2.csv" })
    assert.equal(0, code, err)
    assert.matches("scored 1 rows", out, 1, true)
    assert.matches("skipped 1 rows with missing inputs (no stored features for the key, or an empty field; rows 2)", err, 1, true)
    code, out = testing.run({ "--home", home, "score", "plain@1.0.0", "--input", unknown, "--missing", "fill",
                              "--output", home .. "/scored3.csv" })
    assert.equal(0, code)
    assert.matches("scored 2 rows", out, 1, true)
    assert.equal(2, (testing.run({ "--home", home, "score", "plain" })))
    assert.equal(1, (testing.run({ "--home", home, "score", "ghost", "--input", input, "--output", home .. "/x.csv" })))
  end)

  it("regression: entity lookups still work after the prediction log has written (one environment per home)", function()
    local script = testing.write(home .. "/logged.lua", [[
      local st = assert(require("tycho").store.open())
      print(st:view(function(tx) return tx:count("predictions") end))]])
    local function logged()
      local code, out = testing.run({ "--home", home, "run", script })
      assert.equal(0, code)
      return tonumber(out:match("%d+"))
    end
    for _ = 1, 3 do
      local before = logged()
      local status = predict("plain", { { email_id = "email-00011" } })
      assert.equal(200, status)
      -- The next lookup comes after this prediction's log flush.
      assert.is_true(testing.run_until(function() return logged() > before end, 5000))
    end
  end)

  it("exposes Prometheus metrics", function()
    local status, headers, body = testing.request(srv.port, "GET", "/metrics")
    assert.equal(200, status)
    assert.matches("^text/plain", headers["content-type"])
    -- Every sample line: name{labels} value, and every family declared.
    local declared = {}
    for name in body:gmatch("# TYPE (%S+) %a+") do declared[name] = true end
    for line in body:gmatch("[^\n]+") do
      if not line:match("^#") then
        local name, _, value = line:match('^([%a_:][%w_:]*)(%b{}) (%S+)$')
        if not name then name, value = line:match('^([%a_:][%w_:]*) (%S+)$') end
        assert.is_truthy(name, "bad sample line: " .. line)
        assert.is_number(tonumber(value))
        local family = name:gsub("_bucket$", ""):gsub("_sum$", ""):gsub("_count$", "")
        assert.is_true(declared[family] or declared[name], "undeclared " .. name)
      end
    end
    assert.matches('tycho_model_info{model="plain"', body, 1, true)
    -- And Prometheus's own linter accepts it (Debian's prometheus package).
    assert.matches("rc=0", testing.promtool_check(body), 1, true)
    assert.matches("tycho_process_resident_memory_bytes %d+", body)
    assert.matches("tycho_lua_heap_bytes %d+", body)
  end)
end)
