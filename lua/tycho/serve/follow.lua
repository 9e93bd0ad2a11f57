--- A serving worker following the models published on its cluster
-- (registry/publish.lua), for `tycho --cluster URL serve`: each node keeps
-- its own home, and a version promoted or rolled back on any home is served
-- here within a second.
--
--   follow.start(app, os.getenv("TYCHO_CLUSTER"))   -- serve/worker.lua
--
-- Every 200 ms one GET of the cluster's move counter; only when it changed
-- (and whenever the cluster answers again after a failure, since pub/sub
-- drops the messages of a disconnected client) are the aliases of the
-- worker's hosted models read. A published version the home lacks is
-- fetched, verified and registered (publish.adopt), the local alias moves,
-- and the hosted model loads it at once. One that cannot be fetched,
-- verified or loaded leaves the old version serving: why goes to stderr
-- and to the hosted model's errors (describe(), /v1/models/NAME).
--
-- The cluster client is synchronous (tz_redis): its timeouts are short and
-- the poll backs off while the cluster does not answer, so a lost cluster
-- costs the loop little.
local uv = require "luv"
local registry = require "tycho.registry"
local publish = require "tycho.registry.publish"
local errors = require "tycho.util.errors"

local M = {}

local POLL_MS, MAX_BACKOFF_MS = 200, 1000
local CLIENT = { timeout_ms = 100, retry_ms = 100, max_reply = registry.MAX_ARTIFACT_BYTES + 4096 }

local Follower = {}
Follower.__index = Follower

--- Starts following for app's hosted models: the first read now (so the
-- worker serves published versions from its first request), then on a
-- timer that does not keep the loop alive. Returns the follower.
function M.start(app, url)
  local reg = assert(registry.open({ store = app.home }))
  local f = setmetatable({ app = app, url = url, reg = reg, delay = POLL_MS, refused = {}, said = {} }, Follower)
  f:tick()
  f.timer = uv.new_timer()
  f:arm()
  f.timer:unref()
  return f
end

function Follower:arm()
  self.timer:start(self.delay, 0, function()
    local ok, err = pcall(self.tick, self)
    if not ok then io.stderr:write("tycho serve: following the cluster: ", tostring(err), "\n") end
    self:arm()
  end)
end

-- Says msg on stderr once until it changes (a down cluster is not a line
-- every poll).
function Follower:say(key, msg)
  if self.said[key] == msg then return end
  self.said[key] = msg
  if msg then io.stderr:write("tycho serve: ", msg, "\n") end
end

--- One poll; backs off after a failure, and reads every alias again once
-- the cluster answers.
function Follower:tick()
  local ok, err = self:poll()
  if ok then
    self.delay = POLL_MS
    self:say("cluster", nil)
  else
    self.seen = nil
    self.delay = math.min(self.delay * 2, MAX_BACKOFF_MS)
    self:say("cluster", "following " .. self.url .. ": " .. tostring(err))
  end
end

function Follower:poll()
  if not self.conn then
    local conn, err = publish.connect(self.url, CLIENT)
    if not conn then return nil, err end
    self.conn = conn
  end
  local seq, err = publish.sequence(self.conn)
  if not seq then return nil, err end
  if seq == self.seen then return true end
  local ok, serr = self:sync()
  if not ok then return nil, serr end
  self.seen = seq
  return true
end

-- Every (hosted, slot, model, alias) this worker follows.
function Follower:wanted()
  local out = {}
  for _, h in pairs(self.app.hosted) do
    for _, f in ipairs(h:followed()) do
      f.hosted, f.key = h, f.model .. "@" .. f.alias .. "/" .. h.name .. "/" .. f.slot
      out[#out + 1] = f
    end
  end
  return out
end

-- A failure of a followed alias, in its hosted model's errors (until it is
-- settled) and once on stderr.
function Follower:report(w, msg)
  w.hosted.errors[w.slot] = msg
  self:say(w.key, msg)
end

function Follower:settled(w)
  if self.said[w.key] and w.hosted.errors[w.slot] == self.said[w.key] then w.hosted.errors[w.slot] = nil end
  self:say(w.key, nil)
end

-- Follows one published move. A refusal (a bad artifact, a version clash)
-- is not tried again until the alias moves again; the cluster not
-- answering is: returns its message then.
function Follower:follow(w, move)
  if self.refused[w.key] == move.seq then return true end
  local ok, err, code = publish.adopt(self.reg, self.conn, move)
  if ok == nil then
    self:report(w, w.model .. "@" .. w.alias .. ": published version " .. tostring(move.version)
      .. " not taken, the old one serves: " .. tostring(err))
    if code == errors.unavailable then return nil, err end
    self.refused[w.key] = move.seq
    return true
  end
  self:settled(w)
  w.hosted:refresh()  -- loads it now (refresh_one says why when it cannot)
  return true
end

--- Reads the followed aliases' moves and follows each; true, or nil and
-- a message when the cluster did not answer (to read again next poll).
function Follower:sync()
  local wanted = self:wanted()
  local moves, err = publish.moves(self.conn, wanted)
  if not moves then return nil, err end
  local failed
  for i, w in ipairs(wanted) do
    if moves[i] then
      local ok, ferr = self:follow(w, moves[i])
      failed = failed or (not ok and ferr)
    end
  end
  if failed then return nil, failed end
  return true
end

return M
