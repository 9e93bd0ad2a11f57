--- tycho.core.gc: the Lua heap's collector, paced for batch work.
--
-- LuaJIT starts a collection cycle once the heap reaches `pause` % of what
-- the last cycle left alive (200 by default), and each cycle marks and
-- sweeps all that is alive again. Tycho keeps its bulk data outside the
-- Lua heap (frames, models and stores live in C), so a script's Lua heap
-- is mostly a few MB of code and caches, while online reads and row loops
-- make small tables that die at once. A wider pause lets more garbage die
-- between cycles: fresh single-entity fs:online answers (61 tables each)
-- ran 220k/s at 200 and 255-280k/s at 400, same build and set-up.
--
-- Only batch commands (`tycho run`, the command line's own commands) use
-- it. A serving worker keeps LuaJIT's pacing: there the longer cycles
-- cost more than they saved (bench/serve, one worker, GBT at 16
-- connections, two runs each: p99 1.43 / 1.41 ms at 400 against 0.94 /
-- 0.66 ms at 200, for the same req/s).
--
-- The wide pause holds only while the heap is small: once a cycle leaves
-- more than SMALL_KB alive (a script holding rows as Lua tables), the pause
-- goes back to 200, so such a heap peaks at twice its size as before, and
-- a small one at 4 x SMALL_KB at most.
--
-- The pause is chosen again at the end of each cycle, by the finalizer of
-- an unreachable sentinel made anew each cycle (LuaJIT reads the pause for
-- the next cycle's threshold after the cycle's finalizers have run). A
-- program that sets a pause of its own keeps it: the pacing then stops.
local M = {}

M.SMALL_KB = 64 * 1024
M.WIDE, M.DEFAULT = 400, 200

--- Cycles ended since start_batch (for tests and diagnostics).
M.cycles = 0

-- The sentinels' prototype: newproxy(proto) shares its metatable. Held
-- here, so it is never collected itself.
local proto = newproxy(true)

-- The pause pace() set last, or nil before the first.
local set_last

local function pace()
  local want = collectgarbage("count") < M.SMALL_KB and M.WIDE or M.DEFAULT
  local was = collectgarbage("setpause", want)
  if set_last and was ~= set_last then
    -- The program chose its own pause: it keeps it, and the pacing ends.
    collectgarbage("setpause", was)
    return
  end
  set_last = want
  M.cycles = M.cycles + 1
  newproxy(proto)  -- unreferenced: collected, and so finalized, in the next cycle
end

getmetatable(proto).__gc = pace

local started = false

--- Paces the collector for batch work from now on: the pause for the heap
-- as it is, then again at each cycle's end. Later calls do nothing.
function M.start_batch()
  if started then return end
  started = true
  pace()
  M.cycles = 0
end

return M
