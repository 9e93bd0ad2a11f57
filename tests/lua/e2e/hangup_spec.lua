-- Clients that hang up: a worker must lose only that connection, never its
-- life (a write to a closed socket raised SIGPIPE and killed it).
local testing = require "tycho.testing"

local APP = "tests/lua/fixtures/app.lua"


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
    -- 5 ms: the worker has started writing before the reset.
    for _ = 1, 100 do testing.hang_up(srv.port, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n", 5) end
    local status = testing.request(srv.port, "GET", "/hello/after")
    assert.equal(200, status)
    assert.same(before, testing.children(srv.proc.pid))
    assert.is_nil(srv.proc.stderr():find("died", 1, true))
  end)
end)
