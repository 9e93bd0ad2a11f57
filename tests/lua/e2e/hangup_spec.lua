-- Clients that hang up: a worker must lose only that connection, never its
-- life (a write to a closed socket raised SIGPIPE and killed it).
local testing = require "tycho.testing"
local uv = require "luv"

local APP = "tests/lua/fixtures/app.lua"


-- Connects, asks for path and closes without reading a byte of the answer.
local function hang_up(port, path, body)
  local tcp = uv.new_tcp()
  local done = false
  tcp:connect("127.0.0.1", port, function(err)
    if err then done = true return end
    local request = body and string.format("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", path, #body, body)
                    or string.format("GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
    tcp:write(request, function()
      -- Give the worker time to start writing before the reset.
      local t = uv.new_timer()
      t:start(5, 0, function() t:close() tcp:close() done = true end)
    end)
  end)
  testing.run_until(function() return done end, 5000)
end

describe("clients that hang up", function()
  local home, srv
  setup(function()
    home = testing.tmpdir()
    srv = testing.serve(APP, { "--workers", "2" }, { env = { "TYCHO_HOME=" .. home } })
  end)
  teardown(function()
    if srv then srv:stop() end
    testing.rmrf(home)
  end)

  it("never kill a worker: 100 large responses closed unread", function()
    local before = testing.children(srv.proc.pid)
    assert.equal(2, #before)
    for _ = 1, 100 do hang_up(srv.port, "/big") end
    local status = testing.request(srv.port, "GET", "/hello/after")
    assert.equal(200, status)
    assert.same(before, testing.children(srv.proc.pid))
    assert.is_nil(srv.proc.stderr():find("died", 1, true))
  end)
end)
