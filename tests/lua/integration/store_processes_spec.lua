-- The home shared by processes, and a writer killed with SIGKILL mid-write.
local testing = require "tycho.testing"
local store = require "tycho.store"
local keys = require "tycho.keys"

describe("store across processes", function()
  local home
  before_each(function() home = testing.tmpdir() end)
  after_each(function() testing.rmrf(home) end)

  it("keeps committed batches and drops the one in flight when a writer is killed", function()
    local child = testing.spawn({ "--home", home, "run", "tests/lua/fixtures/crash_writer.lua" })
    -- Let it commit a number of batches, then kill it without warning.
    local enough = testing.run_until(function()
      local n = 0
      for _ in child.stdout():gmatch("\n") do n = n + 1 end
      return n >= 20
    end, 20000)
    assert.is_true(enough, "writer did not commit 20 batches: " .. child.stderr())
    child:kill("sigkill")
    local _, signal = child:wait(5000)
    assert.equal(9, signal)

    local reported = 0
    for n in child.stdout():gmatch("(%d+)\n") do reported = tonumber(n) end
    local st = assert(store.open(home))
    local last = tonumber(st:get("crash", "last"))
    -- Every batch the child reported is there; at most one more committed
    -- between its commit and its report.
    assert.is_true(last >= reported and last <= reported + 1, ("last=%d reported=%d"):format(last, reported))
    st:view(function(tx)
      local per_batch = {}
      for k in tx:scan("crash") do
        if k ~= "last" then
          local batch = keys.unpack("u32 u32", k)
          per_batch[batch] = (per_batch[batch] or 0) + 1
        end
      end
      for batch = 1, last do assert.equal(50, per_batch[batch], "batch " .. batch .. " incomplete") end
      assert.is_nil(per_batch[last + 1], "a batch after the last commit is visible")
    end)
    -- And the home still takes writes.
    st:put("crash", "after", "ok")
    assert.equal("ok", st:get("crash", "after"))
    st:close()
  end)

  it("lets several processes write one home at once without losing a write", function()
    local script = testing.write(home .. "/adder.lua", [[
      local st = assert(require("tycho").store.open())
      for i = 1, 200 do
        st:update(function(tx)
          local n = tonumber(tx:get("shared", "counter") or "0")
          tx:put("shared", "counter", tostring(n + 1))
          tx:put("shared", arg[1] .. ":" .. i, "x")
        end)
      end]])
    local procs = {}
    for w = 1, 3 do procs[w] = testing.spawn({ "--home", home, "run", script, "w" .. w }) end
    for w = 1, 3 do assert.equal(0, (procs[w]:wait(60000)), procs[w].stderr()) end
    local st = assert(store.open(home))
    assert.equal("600", st:get("shared", "counter"))
    assert.equal(601, st:view(function(tx) return tx:count("shared") end))
    st:close()
  end)

  it("adopts a map grown by another process", function()
    local st = assert(store.open(home, { map_size = 1024 * 1024 }))
    st:put("t", "first", "1")
    local script = testing.write(home .. "/grow.lua", [[
      local st = assert(require("tycho").store.open())
      st:update(function(tx)
        for i = 1, 2000 do tx:put("t", "blob" .. i, string.rep("g", 4000)) end
      end)]])
    local code, _, err = testing.run({ "--home", home, "run", script })
    assert.equal(0, code, err)
    assert.equal(2001, st:view(function(tx) return tx:count("t") end))
    assert.equal(string.rep("g", 4000), st:get("t", "blob2000"))
    st:close()
  end)
end)
