--- A serving worker keeping its home's copy of the cluster's shared
-- experiments (experiments/cluster.lua) up to date, for `tycho --cluster
-- URL serve`: an experiment defined, stopped or given a winner on any home
-- is seen here within about 200 ms, and a bandit decides from the totals
-- of every node's traffic, refreshed as often; no request waits on it.
--
--   experiments_follow.start(app, home)   -- serve/watch.lua
--
-- Every 200 ms: the app's declared experiments the cluster did not take at
-- start published again, one GET of the experiments' epoch (what changed
-- only when it moved), feedback credits still queued sent, and the declared
-- experiments' counters read (copied in only when they moved). A lost
-- cluster leaves the copy as it is; the polls back off to a second and
-- stderr says why once (serve/poller.lua).
local cluster = require "tycho.experiments.cluster"
local poller = require "tycho.serve.poller"

local M = {}

local Follower = {}
Follower.__index = Follower

--- Starts following into store (the worker's home) on a timer that does
-- not keep the loop alive. Returns the follower, or nil without a cluster.
function M.start(app, store)
  local sh = cluster.of(store)
  if not sh then return nil end
  cluster.check_on_reads(false)
  local f = setmetatable({ app = app, store = store, sh = sh }, Follower)
  f.poller = poller.new("following the experiments", function() return f:check() end)
  f.poller:start()
  return f
end

--- Stops following.
function Follower:stop() self.poller:stop() end

-- One poll: true, or nil and why.
function Follower:check()
  local sh = self.sh
  local ok, err = sh:publish_pending()
  if ok then ok, err = sh:check(self.store, sh.read_ms) end
  if ok then ok, err = sh:push_credits() end
  if ok then ok, err = sh:refresh(self.store, self.app.experiments) end
  return ok, err
end

return M
