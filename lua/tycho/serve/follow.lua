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
-- fetched, verified and registered (publish.adopt), the home's copy of the
-- shared registry is brought up to date (the alias moved there with the
-- publisher's commit, before the announcement: a move read before a later
-- commit is not followed back, Registry:follow), and the hosted model loads
-- it at once. One that cannot be fetched, verified or loaded leaves the old
-- version serving: why goes to stderr and to the hosted model's errors
-- (describe(), /v1/models/NAME).
--
-- The cluster client is synchronous (tz_redis): its timeouts are short and
-- the poll backs off while the cluster does not answer (serve/poller.lua),
-- so a lost cluster costs the loop little.
local registry = require "tycho.registry"
local publish = require "tycho.registry.publish"
local errors = require "tycho.util.errors"
local poller = require "tycho.serve.poller"

local M = {}

local CLIENT = { timeout_ms = 100, retry_ms = 100, max_reply = registry.MAX_ARTIFACT_BYTES + 4096 }

local Follower = {}
Follower.__index = Follower

--- Starts following for app's hosted models: the first read now (so the
-- worker serves published versions from its first request), then on a
-- timer that does not keep the loop alive. Returns the follower.
function M.start(app, url)
  local reg = assert(registry.open({ store = app.home }))
  local f = setmetatable({ app = app, url = url, reg = reg, refused = {} }, Follower)
  f.poller = poller.new("following " .. url, function() return f:tick() end)
  f.poller:start { now = true }
  return f
end

--- Stops following.
function Follower:stop() self.poller:stop() end

--- One poll (the poller backs off after a failure); every alias is read
-- again once the cluster answers after one.
function Follower:tick()
  local ok, err = self:poll()
  if not ok then self.seen = nil end
  return ok, err
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
  self.poller:say(w.key, msg)
end

function Follower:settled(w)
  local said = self.poller:last(w.key)
  if said and w.hosted.errors[w.slot] == said then w.hosted.errors[w.slot] = nil end
  self.poller:say(w.key, nil)
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
