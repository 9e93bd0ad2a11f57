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
-- back off while the cluster does not answer.
local uv = require "luv"
local features = require "tycho.features"
local log_apply = require "tycho.monitor.log_apply"

local M = {}

local POLL_MS, MAX_BACKOFF_MS, BATCH = 200, 5000, 100

local Consumer = {}
Consumer.__index = Consumer

--- Starts consuming into app.home on a timer that does not keep the loop
-- alive. Returns the consumer, or raises when the feature store cannot be
-- opened (the worker then fails to start, and says why).
function M.start(app)
  local fs = assert(features.open({ store = app.home }))
  if not fs.stream then error("--offline-store needs a cluster (--cluster URL or TYCHO_CLUSTER)", 0) end
  local c = setmetatable({ fs = fs, delay = 0, views = {}, said = {},
                          log = log_apply.new(fs, { retain = app.log_retain }) }, Consumer)
  c.timer = uv.new_timer()
  c:arm()
  c.timer:unref()
  return c
end

function Consumer:arm()
  self.timer:start(self.delay, 0, function()
    local ok, err = pcall(self.pass, self)
    if not ok then
      self:failed("consuming the push stream: " .. tostring(err))
    end
    self:arm()
  end)
end

-- Backs off and says msg on stderr once until the cluster answers again.
function Consumer:failed(msg)
  self.delay = math.min(math.max(self.delay, POLL_MS) * 2, MAX_BACKOFF_MS)
  if self.said.last ~= msg then io.stderr:write("tycho serve: ", msg, "\n") end
  self.said.last = msg
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

--- One pass over every view and the log streams; sets the delay before
-- the next.
function Consumer:pass()
  local busy, err = self:drain_views()
  if busy == nil then return self:failed(err) end
  local report, lerr = self.log:pass(BATCH)
  if not report then return self:failed("prediction log streams: " .. tostring(lerr)) end
  self.said.last = nil
  self.delay = (busy or report.entries > 0) and 0 or POLL_MS
end

return M
