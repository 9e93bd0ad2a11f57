-- The collector's pacing for batch commands (lua/tycho/core/gc.lua): a
-- wide pause while the heap a cycle leaves alive is small, LuaJIT's own
-- once it is large and back when it shrinks, chosen at each cycle's end.
-- `tycho test` is a batch command, so the pacing is on here; serve_spec
-- checks that a serving worker keeps LuaJIT's.
local gc = require "tycho.core.gc"

local function pause()
  local p = collectgarbage("setpause", 0)
  collectgarbage("setpause", p)
  return p
end

describe("the collector's pacing", function()
  local small_kb = gc.SMALL_KB
  after_each(function() gc.SMALL_KB = small_kb end)

  it("is on in a batch command", function()
    collectgarbage()
    assert.equal(gc.WIDE, pause())
  end)

  it("follows what each cycle leaves alive", function()
    collectgarbage()
    gc.SMALL_KB = collectgarbage("count") + 8 * 1024
    local function holding()
      local held = {}
      for i = 1, 400000 do held[i] = { i } end  -- some 20 MB of small tables
      collectgarbage()
      return pause(), #held
    end
    assert.equal(gc.DEFAULT, (holding()))
    collectgarbage()
    assert.equal(gc.WIDE, pause())
  end)

  it("is chosen again by cycles the program did not ask for", function()
    collectgarbage()
    local before = gc.cycles
    -- Garbage until a cycle has ended on its own, kept in a ring so that
    -- the compiler cannot sink the allocation.
    local ring = {}  -- luacheck: ignore 241
    for i = 1, 5e6 do
      ring[i % 64 + 1] = { i }
      if gc.cycles > before then break end
    end
    assert.is_true(gc.cycles > before, "no cycle ended")
    assert.equal(gc.WIDE, pause())
  end)

  it("starts once however often it is asked", function()
    local before = gc.cycles
    gc.start_batch()
    gc.start_batch()
    collectgarbage()
    assert.equal(before + 1, gc.cycles)  -- one sentinel a cycle, not three
    assert.equal(gc.WIDE, pause())
  end)

  it("leaves a pause the program set itself, and stops", function()
    -- In a script of its own: it ends the pacing for the rest of its process.
    local testing = require "tycho.testing"
    local dir = testing.tmpdir()
    local script = dir .. "/own_pause.lua"
    testing.write(script, [[
      local gc = require "tycho.core.gc"
      collectgarbage()
      collectgarbage("setpause", 150)
      local before = gc.cycles
      collectgarbage()
      collectgarbage()
      print(collectgarbage("setpause", 150), gc.cycles - before)
    ]])
    local code, out, err = testing.run({ "--home", dir, "run", script })
    testing.rmrf(dir)
    assert.equal(0, code, err)
    assert.equal("150\t0\n", out)
  end)
end)
