-- A bounded hostile campaign against a real `tycho serve` with a token: a
-- hosted model under an A/B test, the feature server and a large route,
-- hit by mutated and crafted requests, malformed HTTP and clients that
-- hang up. It counts, and the spec requires: no worker died, no answer was
-- a 500, nothing wrote without the token, and the token never came back.
local testing = require "tycho.testing"
local json = require "tycho.json"

local TOKEN = "s3cr3t-campaign-token"
local ROUNDS = tonumber(os.getenv("HOSTILE_ROUNDS")) or 300


-- Seeded, so a failure replays.
local seed = 20261206
local function rand(n) seed = seed * 16807 % 2147483647 return seed % n end
local function pick(list) return list[1 + rand(#list)] end

local NASTY_VALUES = { "NaN", "Infinity", "-Infinity", "1e999", "null", "{}", "[]", '"x"', "true", "-0", "1e-400",
                       '"' .. ("u"):rep(600) .. '"', '"\\u0000"', "[" .. ("1,"):rep(50) .. "1]", "0x10",
                       '"' .. ("é"):rep(100) .. '"' }

local function instance()
  local fields = {}
  for _, k in ipairs { "x", "y", "user_id", pick { "z", ("k"):rep(300), "" } } do
    if rand(3) > 0 then
      fields[#fields + 1] = json.encode(k) .. ":" .. (rand(2) == 0 and tostring(rand(100)) or pick(NASTY_VALUES))
    end
  end
  return "{" .. table.concat(fields, ",") .. "}"
end

local function body_for(path)
  if path:find(":predict") then
    local n = pick { 1, 2, 5, 10001 }
    if n > 10 then return '{"instances":[' .. ("{},"):rep(n - 1) .. "{}]}" end
    local list = {}
    for i = 1, n do list[i] = instance() end
    return '{"instances":[' .. table.concat(list, ",") .. "]}"
  elseif path == "/get-online-features" then
    return pick { '{"features":[null,1,{}],"entities":{"user_id":["a"]}}',
                  '{"features":["v:f"],"entities":{"user_id":[' .. instance() .. "]}}",
                  '{"features":["' .. ("v"):rep(5000) .. ':f"],"entities":{"user_id":["a"]}}',
                  '{"features":"v:f","entities":[]}', '{"features":["v:f"],"entities":{"user_id":[NaN]}}' }
  elseif path == "/push" then
    return pick { '{"push_source_name":"v","df":{"user_id":["a"],"f":[NaN]}}',
                  '{"push_source_name":"' .. ("v"):rep(600) .. '","df":{}}', '{"push_source_name":"v","df":[1,2]}' }
  elseif path == "/v1/feedback" then
    return pick { '{"prediction_id":"' .. ("0"):rep(700) .. '","outcome":1}', '[{"prediction_id":null,"outcome":Infinity}]',
                  '{"prediction_id":"0000000000000001-1-1","outcome":{}}', "[" .. ("{},"):rep(10000) .. "{}]" }
  elseif path:find("/events") then
    return pick { '{"events":[{"unit":"' .. ("u"):rep(600) .. '","value":1}]}', '{"events":[{"unit":"a","value":1e999}]}' }
  end
  return instance()
end

local PATHS = { "/v1/models/m:predict", "/v1/models/m:predict", "/v1/models/nope:predict", "/get-online-features",
                "/push", "/v1/feedback", "/v1/experiments/ab/events", "/v1/experiments/ab/assignment?unit=anon",
                "/v1/experiments/" .. ("n"):rep(8000), "/v1/models/m/monitor?window=bogus", "/metrics",
                "/v1/models/m:explain", "/v2/models/m/infer", "/v1/experiments/ab:stop" }

describe("a hostile campaign", function()
  local home, srv
  setup(function()
    home = testing.tmpdir()
    local script = testing.write(home .. "/setup.lua", [[
      local tycho = require "tycho"
      local f = tycho.frame.new({ x = { 1, 2, 3, 4, 5, 6, 7, 8 }, y = { 1, 0, 1, 0, 1, 0, 1, 0 },
                                  label = { 0, 0, 0, 1, 1, 1, 0, 1 } })
      local pipe = assert(tycho.pipeline { model = tycho.models.logistic {} }:fit(f, { label = "label" }))
      local reg = assert(tycho.registry.open())
      local v = assert(reg:register("m", pipe))
      assert(reg:promote("m", v, "production"))
      local fs = assert(tycho.features.open())
      fs:entity { name = "user", join_key = "user_id" }
      assert(fs:feature_view { name = "v", entity = "user", schema = { f = "float" } })]])
    local code, _, err = testing.run({ "--home", home, "run", script })
    assert(code == 0, err)
    local token = testing.write(home .. "/token", TOKEN .. "\n")
    srv = testing.serve("tests/lua/fixtures/hostile_app.lua", { "--workers", "2", "--token-file", token,
      "--request-timeout", "2000" }, { env = { "TYCHO_HOME=" .. home } })
  end)
  teardown(function()
    if srv then srv:stop() end
    testing.rmrf(home)
  end)

  it("leaves every worker alive, answers no 500, writes nothing without the token, leaks no token", function()
    local before = testing.children(srv.proc.pid)
    local tally = { requests = 0, hangups = 0, malformed = 0, statuses = {} }
    for round = 1, ROUNDS do
      local path = pick(PATHS)
      local method = (path:find("assignment") or path:find("monitor") or path == "/metrics"
                      or path:find("/v1/experiments/nnn")) and "GET" or "POST"
      local kind = rand(10)
      if kind == 0 then
        -- Malformed HTTP: the parser's answers.
        local text = testing.raw(srv.port, pick { "GET / HTTP/9.9\r\n\r\n", "POST /push HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
          "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
          ("A"):rep(20000) .. "\r\n\r\n", "\0\1\2\3" }, 3000)
        tally.malformed = tally.malformed + 1
        assert.is_nil((text or ""):find("HTTP/1.1 500", 1, true))
      elseif kind == 1 then
        -- A client that hangs up on a large answer.
        testing.hang_up(srv.port, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n", 2)
        tally.hangups = tally.hangups + 1
      else
        local headers = {}
        local authorised = rand(4) == 0
        if authorised then headers.Authorization = "Bearer " .. TOKEN
        elseif rand(3) == 0 then headers.Authorization = pick { "Bearer " .. TOKEN:sub(1, -2), "bearer " .. TOKEN, "Basic x" } end
        local status, _, body = testing.request(srv.port, method, path,
          { body = method == "POST" and body_for(path) or nil, headers = headers, timeout = 10000 })
        tally.requests = tally.requests + 1
        tally.statuses[status or 0] = (tally.statuses[status or 0] or 0) + 1
        assert.are_not.equal(500, status, path .. " answered 500: " .. tostring(body))
        assert.is_not_nil(status, path .. " got no answer")
        assert.is_nil((body or ""):find(TOKEN, 1, true), "the token came back from " .. path)
        -- Every route that writes refuses a stranger (reading features does not write).
        if not authorised and (method == "POST" and path ~= "/get-online-features" or path:find("assignment")) then
          assert.equal(401, status, path .. " answered a stranger's write with " .. tostring(status))
        end
      end
      if round % 200 == 0 then assert.same(before, testing.children(srv.proc.pid)) end
    end
    assert.same(before, testing.children(srv.proc.pid))
    assert.is_nil(srv.proc.stderr():find("died", 1, true))
    local lines = {}
    for s, n in pairs(tally.statuses) do lines[#lines + 1] = s .. "=" .. n end
    table.sort(lines)
    io.stderr:write(string.format("\nhostile campaign: %d requests, %d malformed, %d hang-ups; statuses %s\n",
      tally.requests, tally.malformed, tally.hangups, table.concat(lines, " ")))
    assert.equal(200, (testing.request(srv.port, "GET", "/v2/health/ready")))
  end)
end)
