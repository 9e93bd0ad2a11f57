--- A serving worker's poll of the cluster: the one timer and back-off that
-- serve/follow.lua (models published as data), serve/catalog_follow.lua
-- (the shared feature catalog), serve/experiments_follow.lua,
-- registry/shared.lua's follow and serve/consume.lua (the push streams,
-- into the offline store) share, so that pacing, backing off and saying
-- why are written and tested once. A tick on the worker's loop every
-- interval while it succeeds, again at once after a tick that found work
-- (a backlog drains at full speed, in steps that leave the worker's
-- requests their turn), backing off up to a cap while it fails, on a timer
-- that does not keep the loop alive; why it fails goes to stderr once
-- until it changes (a down cluster is not a line every poll).
--
--   local p = poller.new("following the feature catalog", function() return check() end)
--   p:start()               -- the first tick as soon as the loop runs
--   p:start { now = true }  -- the first tick now, the next on the loop
--   p:say(key, msg)         -- another message, said once until it changes
--   p:stop()
--
-- The delays are options: poller.new(what, tick, { interval_ms = 200,
-- busy_ms = 0, max_backoff_ms = 1000 }), the defaults the followers use
-- (a tick every 200 ms, backing off to a second); serve/consume.lua gives
-- its own (backing off to 5 s).
--
-- tick() returns true, "busy" (it found work: the next tick after busy_ms),
-- or nil and a message: the polls then back off, doubling the delay from
-- interval_ms up to max_backoff_ms. A tick that raises is said the same
-- way, its delay left as it was. Messages are said as "what: why", or as
-- the tick gives them when what is nil.
local uv = require "luv"

local M = {}

local DEFAULTS = { interval_ms = 200, busy_ms = 0, max_backoff_ms = 1000 }
local STATUS = {}  -- the key say() keeps the tick's own message under

local Poller = {}
Poller.__index = Poller

--- A poller that is not started: what names the polling in its messages
-- ("what: why"; nil: the tick's messages name it); opts its delays (see
-- the module's comment).
function M.new(what, tick, opts)
  opts = opts or {}
  local p = setmetatable({ what = what, tick = tick, delay = 0, said = {} }, Poller)
  for k, v in pairs(DEFAULTS) do p[k] = opts[k] or v end
  return p
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

-- msg, named by what.
function Poller:named(msg)
  msg = tostring(msg)
  return self.what and self.what .. ": " .. msg or msg
end

--- One tick, protected; sets the delay before the next.
function Poller:step()
  local ran, ok, err = pcall(self.tick)
  if not ran then return self:say(STATUS, self:named(ok)) end
  if ok then
    self.delay = ok == "busy" and self.busy_ms or self.interval_ms
    self:say(STATUS, nil)
  else
    self.delay = math.min(math.max(self.delay, self.interval_ms) * 2, self.max_backoff_ms)
    self:say(STATUS, self:named(err))
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
