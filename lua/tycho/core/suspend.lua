--- tycho.core.suspend: a request that waits on the network without holding
-- its worker's event loop.
--
-- The server runs each request's handler in a coroutine of its own
-- (M.run). Code deep in the handler that would block on a socket (a read
-- of the Redis Cluster online store) asks M.can(); when it may, it starts
-- its I/O, and M.wait()s: the request is answered later, and the worker
-- serves other requests meanwhile. Whoever sees the I/O complete calls
-- M.resume(co). Where it may not (a script, the REPL, a C call in between
-- such as a sandboxed user function), the code blocks as before.
local M = {}

-- Coroutines made by M.run (weak: one abandoned mid-wait is collected),
-- and what each waiting one calls with its results when it ends.
local mine = setmetatable({}, { __mode = "k" })
local finishers = {}

--- Whether requests run in coroutines of their own (set by the serving
-- worker when something on its request path can wait: a cluster).
M.enabled = false

--- Above 0 while code must not wait however it is called: inside a
-- store transaction (core/store.lua), which must end before another opens.
M.pinned = 0

local function settle(co, finish, ok, ...)
  if coroutine.status(co) ~= "dead" then
    finishers[co] = finish
    return false
  end
  mine[co] = nil
  if not ok then error((...), 0) end  -- fn must protect itself: this is a bug in the caller
  return true, ...
end

--- Runs fn(...) in a coroutine. When fn ends without waiting: true and its
-- results. When it waits: false, and finish(...) gets its results when it
-- ends. fn must not raise (wrap it in xpcall).
function M.run(fn, finish, ...)
  local co = coroutine.create(fn)
  mine[co] = true
  return settle(co, finish, coroutine.resume(co, ...))
end

--- Whether the running code may M.wait(): inside M.run's coroutine with no
-- C call between (coroutine.isyieldable is LuaJIT 2.1's), and not pinned.
function M.can()
  if M.pinned > 0 then return false end
  local co = coroutine.running()
  return co ~= nil and mine[co] == true and coroutine.isyieldable()
end

--- Suspends the running request until M.resume(co, ...); returns those values.
M.wait = coroutine.yield

--- Continues a waiting coroutine with values for its M.wait(); when it
-- ends, its finish gets the results.
function M.resume(co, ...)
  local finish = finishers[co]
  finishers[co] = nil
  local done, a, b, c, d, e = settle(co, finish, coroutine.resume(co, ...))
  if done then finish(a, b, c, d, e) end
end

return M
