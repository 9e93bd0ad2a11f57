--- Worker 0 of a node that keeps the offline store (`tycho --cluster URL
-- serve --offline-store ...`): applies the cluster's push streams to its
-- home, one stream per view of its catalog (fs:drain_stream), and the
-- prediction log and feedback of every node (monitor/log_apply.lua).
--
--   consume.start(app)   -- serve/worker.lua, worker 0 only
--
-- A pass every 200 ms drains up to 100 entries of each stream; a pass that
-- found entries is followed by the next at once, so a backlog drains at
-- full speed in steps that leave the worker's requests their turn. The
-- views are listed again when the catalog's epoch moves (a view defined
-- later is consumed from then on, its stream from its first entry). The
-- cluster client is synchronous: its timeouts are short and the passes
-- back off, up to 5 s, while the cluster does not answer.
--
-- The passes are paced by serve/poller.lua, the loop the worker's
-- followers of the cluster use, so that there is one timer, back-off and
-- say-it-once-on-stderr to keep right, not two; this module gives it its
-- delays. Unlike a follower's tick, a pass that raises backs off as one
-- that failed (Consumer:tick), as the consumer always has: the next pass
-- would read the same streams from the same cluster.
local features = require "tycho.features"
local errors = require "tycho.util.errors"
local log_apply = require "tycho.monitor.log_apply"
local poller = require "tycho.serve.poller"

local M = {}

local BATCH = 100
-- The poller's delays: 200 ms between idle passes, none after one that
-- found entries, and a back-off up to 5 s while the cluster fails.
local DELAYS = { interval_ms = 200, busy_ms = 0, max_backoff_ms = 5000 }

local Consumer = {}
Consumer.__index = Consumer

--- Starts consuming into app.home on a timer that does not keep the loop
-- alive, the first pass as soon as the loop runs. Returns the consumer, or
-- raises when the feature store cannot be opened (the worker then fails to
-- start, and says why).
function M.start(app)
  local fs = assert(features.open({ store = app.home }))
  if not fs.stream then error("--offline-store needs a cluster (--cluster URL or TYCHO_CLUSTER)", 0) end
  local c = setmetatable({ fs = fs, views = {}, log = log_apply.new(fs, { retain = app.log_retain }) }, Consumer)
  -- (no what: the passes' messages name the stream that failed)
  c.poller = poller.new(nil, function() return c:tick() end, DELAYS)
  c.poller:start()
  return c
end

--- Stops consuming (a pass under way finishes).
function Consumer:stop() self.poller:stop() end

-- One pass, protected: one that raises backs off as one that failed.
function Consumer:tick()
  local ran, ok, err = pcall(self.pass, self)
  if not ran then return errors.fail("unavailable", "consuming the push stream: " .. tostring(ok)) end
  return ok, err
end

-- The names of the catalog's views, read again when its epoch moved.
function Consumer:view_names()
  local epoch = self.fs.store:view(function(tx) return tx:get("catalog", "meta/epoch") or "0" end)
  if epoch ~= self.epoch then
    local names = {}
    for _, v in ipairs(self.fs:list()) do names[#names + 1] = v.name end
    self.views, self.epoch = names, epoch
  end
  return self.views
end

-- Drains every view's push stream once; whether any had entries, or nil
-- and why one failed.
function Consumer:drain_views()
  local busy = false
  for _, name in ipairs(self:view_names()) do
    local report, err = self.fs:drain_stream(name, { max_entries = BATCH })
    if not report then return nil, name .. ": " .. tostring(err) end
    if report.rejected > 0 then
      io.stderr:write(string.format("tycho serve: push stream of %s: %d rows rejected (quarantined in %s)\n", name,
        report.rejected, tostring(report.quarantine)))
    end
    busy = busy or report.entries > 0
  end
  return busy
end

--- One pass over every view and the log streams: "busy" when it found
-- entries (the next at once), true when it found none, or nil and why one
-- failed.
function Consumer:pass()
  local busy, err = self:drain_views()
  if busy == nil then return nil, err end
  local report, lerr = self.log:pass(BATCH)
  if not report then return errors.fail("unavailable", "prediction log streams: " .. tostring(lerr)) end
  return (busy or report.entries > 0) and "busy" or true
end

return M
