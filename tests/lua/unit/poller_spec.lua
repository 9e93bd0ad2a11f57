-- serve/poller.lua: the poll a serving worker keeps of the cluster
-- (serve/follow.lua, serve/catalog_follow.lua, serve/consume.lua).
local uv = require "luv"
local poller = require "tycho.serve.poller"

describe("serve.poller", function()
  local said, stderr
  before_each(function()
    said, stderr = {}, io.stderr
    io.stderr = { write = function(_, ...) said[#said + 1] = table.concat({ ... }) end }  -- luacheck: ignore 122
  end)
  after_each(function() io.stderr = stderr end)  -- luacheck: ignore 122

  it("polls every 200 ms, backs off to a second while failing, and says why once", function()
    local answers = { false, false, false, false, true, "raise", false }
    local i = 0
    local p = poller.new("following x", function()
      i = i + 1
      if answers[i] == "raise" then error("boom", 0) end
      if answers[i] then return true end
      return nil, "down"
    end)
    local delays = {}
    for _ = 1, #answers do
      p:step()
      delays[#delays + 1] = p.delay
    end
    assert.same({ 400, 800, 1000, 1000, 200, 200, 400 }, delays)
    assert.same({ "tycho serve: following x: down\n", "tycho serve: following x: boom\n",
                  "tycho serve: following x: down\n" }, said)
  end)

  it("takes its delays as options: none after a busy tick, and a back-off to its cap", function()
    local answers = { "busy", "busy", true, false, false, false, false, false, false, "busy", false }
    local i = 0
    local p = poller.new(nil, function()
      i = i + 1
      if answers[i] then return answers[i] end
      return nil, "stream k: down"
    end, { interval_ms = 200, busy_ms = 0, max_backoff_ms = 5000 })
    local delays = {}
    for _ = 1, #answers do
      p:step()
      delays[#delays + 1] = p.delay
    end
    assert.same({ 0, 0, 200, 400, 800, 1600, 3200, 5000, 5000, 0, 400 }, delays)
    assert.same({ "tycho serve: stream k: down\n", "tycho serve: stream k: down\n" }, said)
  end)

  it("says a keyed message once until it changes, and remembers it", function()
    local p = poller.new("x", function() return true end)
    p:say("k", "a")
    p:say("k", "a")
    assert.equal("a", p:last("k"))
    p:say("k", nil)
    p:say("k", "a")
    assert.equal(2, #said)
  end)

  it("ticks on the loop until stopped", function()
    local ticks = 0
    local p
    p = poller.new("x", function()
      ticks = ticks + 1
      if ticks == 2 then
        p:stop()
        uv.stop()
      end
      return true
    end):start { now = true }
    assert.equal(1, ticks)
    local guard = uv.new_timer()
    guard:start(2000, 0, function() uv.stop() end)
    uv.run()
    guard:close()
    assert.equal(2, ticks)
    assert.is_nil(p.timer)
  end)
end)
