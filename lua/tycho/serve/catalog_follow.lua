--- A serving worker keeping its home's copy of the cluster's shared feature
-- catalog (features/catalog_shared.lua) up to date, for `tycho --cluster
-- URL serve`: a view defined on any home is served here within about
-- 200 ms, and no request waits on the cluster for it.
--
--   catalog_follow.start(home)   -- serve/worker.lua
--
-- Every 200 ms one GET of the catalog's epoch, and what changed only when
-- it moved; the worker's own reads of definitions look at the home's copy
-- alone. The GET waits for no node (the URL's read_ms), so a lost cluster
-- costs the loop little: the copy stays as it is, the polls back off to a
-- second, and stderr says why once (serve/poller.lua).
local features = require "tycho.features"
local catalog_shared = require "tycho.features.catalog_shared"
local poller = require "tycho.serve.poller"

local M = {}

local Follower = {}
Follower.__index = Follower

--- Starts following into store (the worker's home) on a timer that does
-- not keep the loop alive, its first check as soon as the loop runs (not
-- now: the worker's start waits on nothing it does not need). Returns the
-- follower.
function M.start(store)
  catalog_shared.check_on_reads(false)
  local f = setmetatable({ store = store }, Follower)
  f.poller = poller.new("following the feature catalog", function() return f:check() end)
  f.poller:start()
  return f
end

--- Stops following.
function Follower:stop() self.poller:stop() end

-- One check. The feature store is opened here, not at start: opening joins
-- the cluster's catalog, which may not answer yet.
function Follower:check()
  if not self.fs then
    local fs, err, code = features.open({ store = self.store })
    if not fs then return nil, err, code end
    self.fs = fs
  end
  return self.fs.shared:check(self.store, self.fs.shared.read_ms)
end

return M
