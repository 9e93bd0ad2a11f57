--- A serving worker's poll of the cluster, the shape serve/follow.lua
-- (models published as data) and serve/catalog_follow.lua (the shared
-- feature catalog) share: a tick on the worker's loop every 200 ms while
-- it succeeds, backing off to a second while it fails, on a timer that
-- does not keep the loop alive; why it fails goes to stderr once until it
-- changes (a down cluster is not a line every poll).
--
--   local p = poller.new("following the feature catalog", function() return check() end)
--   p:start()               -- the first tick as soon as the loop runs
--   p:start { now = true }  -- the first tick now, the next on the loop
--   p:say(key, msg)         -- another message, said once until it changes
--   p:stop()
--
-- tick() returns true, or nil and a message: the polls then back off. A
-- tick that raises is said the same way, its delay left as it was.
local uv = require "luv"

local M = {}

local POLL_MS, MAX_BACKOFF_MS = 200, 1000
local STATUS = {}  -- the key say() keeps the tick's own message under

local Poller = {}
Poller.__index = Poller

--- A poller that is not started: what names the polling in its messages
-- ("what: why").
function M.new(what, tick)
  return setmetatable({ what = what, tick = tick, delay = 0, said = {} }, Poller)
end

--- Starts the polls; opts.now runs the first tick before returning (the
-- worker's first request then sees what it read). Returns the poller.
function Poller:start(opts)
  if opts and opts.now then self:step() end
  self.timer = uv.new_timer()
  self:arm()
  self.timer:unref()
  return self
end

function Poller:arm()
  self.timer:start(self.delay, 0, function()
    self:step()
    if self.timer then self:arm() end
  end)
end

--- One tick, protected; sets the delay before the next.
function Poller:step()
  local ran, ok, err = pcall(self.tick)
  if not ran then return self:say(STATUS, self.what .. ": " .. tostring(ok)) end
  if ok then
    self.delay = POLL_MS
    self:say(STATUS, nil)
  else
    self.delay = math.min(math.max(self.delay, POLL_MS) * 2, MAX_BACKOFF_MS)
    self:say(STATUS, self.what .. ": " .. tostring(err))
  end
end

--- Says msg on stderr unless it is what was last said under key; nil
-- forgets key's message (the next is said).
function Poller:say(key, msg)
  if self.said[key] == msg then return end
  self.said[key] = msg
  if msg then io.stderr:write("tycho serve: ", msg, "\n") end
end

--- What was last said under key, or nil.
function Poller:last(key) return self.said[key] end

--- Stops the polls for good (a tick under way finishes).
function Poller:stop()
  if not self.timer then return end
  self.timer:stop()
  self.timer:close()
  self.timer = nil
end

return M
