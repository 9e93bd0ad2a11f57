-- A real `tycho serve` on 127.0.0.1, spoken to over TCP.
local testing = require "tycho.testing"
local uv = require "luv"

local APP = "tests/lua/fixtures/app.lua"


local function open_fds(pid)
  local p = io.popen("ls /proc/" .. pid .. "/fd | wc -l")
  local n = tonumber(p:read("*a"))
  p:close()
  return n
end

describe("tycho serve", function()
  local home, srv
  setup(function()
    home = testing.tmpdir()
    srv = testing.serve(APP, { "--request-timeout", "700", "--idle-timeout", "1500", "--max-body", "65536" },
      { env = { "TYCHO_HOME=" .. home } })
  end)
  teardown(function()
    if srv then srv:stop() end
    testing.rmrf(home)
  end)

  it("answers routes with path parameters as JSON", function()
    local status, headers, _, doc = testing.request(srv.port, "GET", "/hello/ada?q=1")
    assert.equal(200, status)
    assert.equal("application/json", headers["content-type"])
    assert.same({ hello = "ada", q = "1" }, doc)
    _, _, _, doc = testing.request(srv.port, "GET", "/models/spam:predict")
    assert.same({ model = "spam" }, doc)
  end)

  it("keeps LuaJIT's collector pacing in its workers; batch commands pace theirs wider", function()
    local _, _, _, doc = testing.request(srv.port, "GET", "/gc-pause")
    local gc = require "tycho.core.gc"
    assert.same({ pause = gc.DEFAULT }, doc)
    local pause = collectgarbage("setpause", 0)
    collectgarbage("setpause", pause)
    assert.equal(gc.WIDE, pause)  -- this spec runs in `tycho test`, a batch command
  end)

  it("opens the home without readahead in its workers, and with it elsewhere", function()
    local _, _, _, doc = testing.request(srv.port, "GET", "/store")
    assert.same({ random_access = true }, doc)
    assert.is_false(require("tycho.store").open(home):random_access())
  end)

  it("answers the health routes", function()
    assert.equal(200, (testing.request(srv.port, "GET", "/v2/health/live")))
    assert.equal(200, (testing.request(srv.port, "GET", "/v2/health/ready")))
  end)

  it("echoes a JSON body and sets the status", function()
    local status, _, _, doc = testing.request(srv.port, "POST", "/echo",
      { body = { x = { 1, 2 } }, headers = { ["Content-Type"] = "application/json" } })
    assert.equal(201, status)
    assert.same({ x = { 1, 2 } }, doc.got)
    assert.equal("application/json", doc.content_type)
  end)

  it("gives unknown routes a 404 and handler failures a 500, as JSON errors", function()
    local status, _, _, doc = testing.request(srv.port, "GET", "/missing")
    assert.equal(404, status)
    assert.equal("not_found", doc.error.code)
    status, _, _, doc = testing.request(srv.port, "GET", "/boom")
    assert.equal(500, status)
    assert.equal("internal", doc.error.code)
    assert.is_nil(doc.error.message:find("deliberate"), "internals leak into the response")
    status, _, _, doc = testing.request(srv.port, "POST", "/echo", { body = "{not json" })
    assert.equal(400, status)
    assert.equal("bad_json", doc.error.code)
  end)

  it("keeps a connection alive and answers pipelined requests in order", function()
    local reqs = {}
    for i = 1, 5 do reqs[i] = "GET /hello/n" .. i .. " HTTP/1.1\r\nHost: x\r\n\r\n" end
    local text = testing.raw(srv.port, table.concat(reqs), 3000, function(t)
      return select(2, t:gsub("HTTP/1.1 200", "")) == 5
    end)
    local order = {}
    for name in text:gmatch('"hello":"(n%d)"') do order[#order + 1] = name end
    assert.same({ "n1", "n2", "n3", "n4", "n5" }, order)
  end)

  it("answers deferred requests later, in order with pipelined ones", function()
    local status, _, _, doc = testing.request(srv.port, "GET", "/later/30")
    assert.equal(200, status)
    assert.same({ later = 30 }, doc)
    status, _, _, doc = testing.request(srv.port, "GET", "/later/10?fail=1")
    assert.equal(409, status)
    assert.equal("too_late", doc.error.code)
    status, _, _, doc = testing.request(srv.port, "GET", "/defer-bad-answer")
    assert.equal(500, status)
    assert.equal("internal", doc.error.code)
    status, _, _, doc = testing.request(srv.port, "GET", "/defer-then-boom")
    assert.equal(500, status)
    assert.equal("internal", doc.error.code)
    local text = testing.raw(srv.port, "GET /later/80 HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "GET /hello/after HTTP/1.1\r\nHost: x\r\n\r\nGET /later/1 HTTP/1.1\r\nHost: x\r\n\r\n", 3000,
      function(t) return select(2, t:gsub("HTTP/1.1 200", "")) == 3 end)
    local a, b, c = text:find('"later":80', 1, true), text:find('"hello":"after"', 1, true), text:find('"later":1}', 1, true)
    assert.truthy(a and b and c and a < b and b < c, text)
    local _, _, body = testing.request(srv.port, "GET", "/metrics")
    assert.truthy(body:find('tycho_http_requests_total{route="GET /later/{ms}",status="409"} 1', 1, true))
  end)

  it("answers feedback without a prediction log (no hosted model) in a transaction of its own", function()
    local id = string.format("%016x-1-1", math.floor(uv.gettimeofday() * 1e6) - 60e6)
    local status, _, _, doc = testing.request(srv.port, "POST", "/v1/feedback",
      { body = { prediction_id = id, outcome = 1 } })
    assert.equal(404, status)
    assert.equal("not_found", doc.error.code)
    status = testing.request(srv.port, "POST", "/v1/feedback", { body = { prediction_id = "nope", outcome = 1 } })
    assert.equal(400, status)
  end)

  it("de-chunks a chunked request body", function()
    local body = '{"a":"chunked"}'
    local raw = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
      .. string.format("%x\r\n%s\r\n0\r\n\r\n", #body, body)
    local status, _, rbody = testing.parse_response(testing.raw(srv.port, raw))
    assert.equal(201, status)
    assert.matches('"length":15', rbody, 1, true)
  end)

  describe("with bad input", function()
    it("answers garbage with a 400 JSON error and keeps serving", function()
      local status, _, body = testing.parse_response(testing.raw(srv.port, "\0\1\2 garbage\r\n\r\n"))
      assert.equal(400, status)
      assert.matches('"code":"bad_request"', body, 1, true)
      assert.equal(200, (testing.request(srv.port, "GET", "/hello/still")))
    end)

    it("refuses a declared 100 MB body with 413 before reading it", function()
      local raw = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n" .. string.rep("a", 100000)
      local status, _, body = testing.parse_response(testing.raw(srv.port, raw))
      assert.equal(413, status)
      assert.matches("body_too_large", body, 1, true)
    end)

    it("refuses oversized headers with 431", function()
      local raw = "GET /hello/x HTTP/1.1\r\nX-Huge: " .. string.rep("h", 32 * 1024) .. "\r\n\r\n"
      assert.equal(431, (testing.parse_response(testing.raw(srv.port, raw))))
    end)

    it("times out a body shorter than its Content-Length with 408", function()
      local raw = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"short\":"
      local text = testing.raw(srv.port, raw, 5000)
      assert.equal(408, (testing.parse_response(text)))
    end)

    it("closes half-open and idle connections and leaks no descriptor", function()
      local worker = testing.children(srv.proc.pid)[1]
      local before = open_fds(worker)
      local conns = {}
      for i = 1, 20 do
        local tcp = uv.new_tcp()
        tcp:connect("127.0.0.1", srv.port, function()
          tcp:write(i % 2 == 0 and "GET /hel" or "")  -- half a request, or nothing
        end)
        conns[i] = tcp
      end
      local accepted = testing.run_until(function() return open_fds(worker) >= before + 10 end, 5000)
      assert.is_true(accepted, "connections were not accepted")
      -- The server closes them itself (request / idle timeouts).
      local closed = testing.run_until(function() return open_fds(worker) <= before end, 5000)
      for _, tcp in ipairs(conns) do tcp:close() end
      uv.run("nowait")
      assert.is_true(closed, "descriptors left open: " .. open_fds(worker) .. " vs " .. before)
      assert.equal(200, (testing.request(srv.port, "GET", "/hello/after")))
    end)
  end)
end)

describe("tycho serve processes", function()
  local home
  before_each(function() home = testing.tmpdir() end)
  after_each(function() testing.rmrf(home) end)

  it("shares the port between workers (SO_REUSEPORT)", function()
    local srv = testing.serve(APP, { "--workers", "2" }, { env = { "TYCHO_HOME=" .. home } })
    assert.equal(2, #testing.children(srv.proc.pid))
    -- Each worker listens once its app is loaded; the kernel spreads new
    -- connections over the listening ones.
    local seen, count = {}, 0
    testing.run_until(function()
      local _, _, _, doc = testing.request(srv.port, "GET", "/pid")
      if doc and not seen[doc.pid] then seen[doc.pid], count = true, count + 1 end
      return count == 2
    end, 5000)
    assert.equal(2, count, "all requests went to one worker")
    assert.equal(0, (srv:stop()))
  end)

  it("drains an in-flight request on SIGTERM and exits 0", function()
    local srv = testing.serve(APP, {}, { env = { "TYCHO_HOME=" .. home } })
    local mark = home .. "/slow-started"
    local response, eof
    local tcp = uv.new_tcp()
    tcp:connect("127.0.0.1", srv.port, function()
      tcp:write("GET /slow?s=1&mark=" .. mark .. " HTTP/1.1\r\nHost: x\r\n\r\n")
      tcp:read_start(function(_, data)
        if data then response = (response or "") .. data else eof = true end
      end)
    end)
    -- The handler marks that it runs: the SIGTERM arrives while it does.
    assert.is_true(testing.run_until(function() return io.open(mark) ~= nil end, 5000), "the handler never started")
    srv.proc:kill("sigterm")
    local code = srv.proc:wait(10000)
    testing.run_until(function() return eof end, 2000)
    tcp:close()
    assert.equal(0, code)
    assert.matches("^HTTP/1.1 200.*{\"slow\":true}$", response or "")
    assert.is_true(eof, "the kept-alive connection was not closed by the drain")
  end)

  it("restarts a worker that dies", function()
    local srv = testing.serve(APP, {}, { env = { "TYCHO_HOME=" .. home } })
    local first = testing.children(srv.proc.pid)[1]
    uv.kill(first, "sigkill")
    local back = testing.run_until(function()
      local pids = testing.children(srv.proc.pid)
      return pids[1] and pids[1] ~= first and testing.request(srv.port, "GET", "/hello/again", { timeout = 300 }) == 200
    end, 10000)
    assert.is_true(back)
    assert.equal(0, (srv:stop()))
  end)

  it("stops its workers when the master is killed outright", function()
    local srv = testing.serve(APP, { "--workers", "2" }, { env = { "TYCHO_HOME=" .. home } })
    local pids = testing.children(srv.proc.pid)
    assert.equal(2, #pids)
    srv.proc:kill("sigkill")
    srv.proc:wait(5000)
    local gone = testing.run_until(function()
      for _, pid in ipairs(pids) do
        -- A zombie waiting for init to reap it counts as gone.
        local f = io.open("/proc/" .. pid .. "/stat")
        local stat = f and f:read("*l")
        if f then f:close() end
        if stat and not stat:match("^%d+ %b() Z") then return false end
      end
      return true
    end, 5000)
    assert.is_true(gone, "workers outlived their master")
    assert.is_nil((testing.request(srv.port, "GET", "/hello/orphan", { timeout = 300 })), "the port still answers")
  end)

  it("writes one JSON access line per request, routed or not", function()
    local log = home .. "/access.log"
    local srv = testing.serve(APP, { "--access-log", log }, { env = { "TYCHO_HOME=" .. home } })
    testing.request(srv.port, "GET", "/hello/log")
    testing.request(srv.port, "GET", "/nowhere")
    srv:stop()
    local lines = {}
    for line in io.lines(log) do lines[#lines + 1] = require("tycho.json").decode(line) end
    local by_path = {}
    for _, l in ipairs(lines) do by_path[l.path] = l end
    assert.same({ 200, "GET /hello/{name}" }, { by_path["/hello/log"].status, by_path["/hello/log"].route })
    assert.same({ 404, "unrouted" }, { by_path["/nowhere"].status, by_path["/nowhere"].route })
    assert.is_number(by_path["/hello/log"].ms)
  end)

  it("says when the port is in use", function()
    local srv = testing.serve(APP, {}, { env = { "TYCHO_HOME=" .. home } })
    local code, _, err = testing.run({ "--home", home, "serve", APP, "--port", tostring(srv.port) })
    assert.equal(1, code)
    assert.matches("port " .. srv.port .. " on 127.0.0.1 is already in use", err, 1, true)
    srv:stop()
  end)

  it("refuses a non-loopback bind without a token unless --insecure", function()
    local port = tostring(testing.free_port())
    local code, _, err = testing.run({ "--home", home, "serve", APP, "--host", "0.0.0.0", "--port", port })
    assert.equal(2, code)
    assert.matches("without a token", err, 1, true)
    code, _, err = testing.run({ "--home", home, "serve", APP, "--host", "127.0.0.2", "--port", port })
    assert.equal(2, code)
    assert.matches("without a token", err, 1, true)
  end)

  it("requires the bearer token on mutating routes when one is configured", function()
    local token = testing.write(home .. "/token", "tok-123\n")
    local srv = testing.serve(APP, { "--token-file", token }, { env = { "TYCHO_HOME=" .. home } })
    local status, _, _, doc = testing.request(srv.port, "POST", "/echo", { body = "{}" })
    assert.equal(401, status)
    assert.equal("unauthorized", doc.error.code)
    status = testing.request(srv.port, "POST", "/echo", { body = "{}", headers = { Authorization = "Bearer tok-123" } })
    assert.equal(201, status)
    assert.equal(200, (testing.request(srv.port, "GET", "/hello/open")))
    -- Routes that write, whatever their method, and no route map for strangers.
    assert.equal(401, (testing.request(srv.port, "POST", "/v1/models/spam:predict", { body = '{"instances":[{}]}' })))
    assert.equal(401, (testing.request(srv.port, "GET", "/v1/experiments/colors/assignment?unit=anon-1")))
    assert.equal(401, (testing.request(srv.port, "POST", "/hello/open", { body = "{}" })))
    assert.equal(401, (testing.request(srv.port, "DELETE", "/no/such/route")))
    assert.equal(405, (testing.request(srv.port, "POST", "/hello/open",
      { body = "{}", headers = { Authorization = "Bearer tok-123" } })))
    srv:stop()
  end)
end)
