--- A hash of records replicated on a Redis Cluster to every home's LMDB
-- copy, the mechanism the feature catalog (features/catalog_shared.lua) and
-- the model registry (registry/shared.lua) share. A commit writes records
-- only while the cluster's epoch is still the one its home copied, so a
-- home that lost the race brings its copy up to date and decides again;
-- a commit returns once a replica holds it (WAIT 1). What a record is, how
-- it is copied into LMDB, and what a joining home publishes are the user's.
--
--   local Shared = replicated.class()                  -- methods fall back to these
--   function Shared:copy(store, records) ... end       -- { field = value } into the home's copy
--   function Shared:plan_join(store, records) ... end  -- { field, value, ... } to publish, top
--   function Shared:prepare_join(store, list) ... end  -- optional: before a join commits list
--   local st = replicated.new(Shared, { cl = cl, ns = ns, tag = "catalog", hash = "defs",
--     counter = "next_id", name = "feature catalog", wait_ms = ms, unconfirmed = "...",
--     join_busy = "..." })                             -- and any fields of the user's own
--   replicated.open(Shared, fields, store)             -- new, then joined: the object, or nil, message, code
--   st:join(store)                    -- published what the home has, copied in the whole hash
--   st:check(store, budget_ms)        -- up to date: one GET when nothing moved
--   st:pull(since, budget_ms)         -- the epoch and { field = value } changed since
--   st:commit(expected, list, top)    -- the new epoch; false when another commit came first
--   st:retry(store, what, attempt)    -- attempt() against an up-to-date copy, until it commits
--   st:failed(what, r, err, code), st:busy(what), replicated.failed(name, ...)  -- the failures below
--
-- Keys under ns, all with the hash tag {tag}, so that they share one slot
-- and one script reads or moves them together:
--   <ns>{tag}:epoch    a counter, INCR by every commit
--   <ns>{tag}:<hash>   a hash: field -> value ("" in a commit removes the field)
--   <ns>{tag}:changes  a sorted set: each field of the hash, scored by the epoch that last wrote it
--                      (a removed field stays here and reads as "")
--   <ns>{tag}:<counter>  (when counter is given) a number a commit keeps at least its top
--
-- Failures are nil, message, code, each message beginning "<name> on the
-- cluster: ": "unavailable" when the cluster does not answer or no replica
-- confirms a commit (which then stands on its master), "busy" when other
-- homes kept committing first.
local errors = require "tycho.util.errors"

local M = {}
local Replica = {}
Replica.__index = Replica

-- Commits tried while other homes keep committing first; records per
-- commit of a join (two arguments each, of the client's 1024).
local TRIES, JOIN_CHUNK = 20, 400
local WAIT_MS = 500

-- The epoch, then field and value ("" when removed) of every field written after epoch ARGV[1].
local PULL = [[
local epoch = redis.call('GET', KEYS[1]) or '0'
local out = { epoch }
if epoch == ARGV[1] then return out end
for _, f in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf')) do
  out[#out + 1] = f
  out[#out + 1] = redis.call('HGET', KEYS[2], f) or ''
end
return out
]]

-- Writes the field, value pairs that follow ("" removes) only while the
-- epoch is still ARGV[1], and with a counter KEYS[4] keeps it at least
-- ARGV[2]: { 1, new epoch }, or { 0, epoch } when another commit came first.
local COMMIT = [[
local epoch = tonumber(redis.call('GET', KEYS[1]) or '0')
if epoch ~= tonumber(ARGV[1]) then return { 0, epoch } end
epoch = redis.call('INCR', KEYS[1])
local first = KEYS[4] and 3 or 2
for i = first, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[2], ARGV[i]) else redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
  redis.call('ZADD', KEYS[3], epoch, ARGV[i])
end
if KEYS[4] and tonumber(ARGV[2]) > tonumber(redis.call('GET', KEYS[4]) or '0') then
  redis.call('SET', KEYS[4], ARGV[2])
end
return { 1, epoch }
]]

--- nil, "<name> on the cluster: <what>: <why>", code: err and code when the
-- client failed, else "unavailable" with the reply r (a script's error).
function M.failed(name, what, r, err, code)
  local why = err or tostring(type(r) == "table" and r.err or r)
  return errors.fail(err and code or errors.unavailable, name .. " on the cluster: " .. what .. ": " .. why)
end

--- A class for replicated hashes: set its copy and plan_join (and
-- prepare_join) methods, and the others fall back to this module's.
function M.class()
  local class = setmetatable({}, Replica)
  class.__index = class
  return class
end

--- The replicated hash fields describes (see the module's comment), as an
-- object of class: fields itself, with keys, slot, batch and wait_ms set.
function M.new(class, fields)
  local ns = fields.ns .. "{" .. fields.tag .. "}:"
  fields.keys = { ns .. "epoch", ns .. fields.hash, ns .. "changes", fields.counter and ns .. fields.counter or nil }
  fields.slot, fields.batch = fields.cl:slot(fields.keys[1]), fields.cl:batch()
  fields.wait_ms = fields.wait_ms or WAIT_MS
  return setmetatable(fields, class)
end

--- M.new, joined (see join) into store: the object, or nil, message, code.
function M.open(class, fields, store)
  local st = M.new(class, fields)
  local ok, err, code = st:join(store)
  if not ok then return nil, err, code end
  return st
end

-- The client's redirect and reconnection counters: when they move during a
-- commit and its WAIT, the WAIT may have gone to another connection than
-- the commit, and confirms nothing.
local function moves(cl)
  local s = cl:stats()
  return s.moved + s.ask + s.reconnects + s.retries
end

--- nil, message, code as M.failed's, under this hash's name.
function Replica:failed(what, r, err, code) return M.failed(self.name, what, r, err, code) end

--- nil, "<name> on the cluster: other homes kept changing it; <what> after
-- <TRIES> tries", "busy".
function Replica:busy(what)
  return errors.fail(errors.busy, self.name .. " on the cluster: other homes kept changing it; " .. what
    .. " after " .. TRIES .. " tries")
end

--- The cluster's epoch now and { field = value } of what changed after
-- epoch since (0: everything); nil, message, code when it does not answer
-- within budget_ms (the client's retry_ms when nil).
function Replica:pull(since, budget_ms)
  local b, k = self.batch, self.keys
  b:clear()
  b:add(self.slot, "EVAL", PULL, 3, k[1], k[2], k[3], since)
  local ok, err, code = self.cl:exec(b, budget_ms)
  local r = b:value(1)
  if not ok or type(r) ~= "table" or r.err then return self:failed("reading", r, not ok and err, code) end
  local records = {}
  for i = 2, #r, 2 do records[r[i]] = r[i + 1] end
  return tonumber(r[1]), records
end

--- Commits list { field, value, ... } ("" removes) if the cluster's epoch is
-- still expected (keeping the counter at least top, 0 when nil), then waits
-- for a replica. The new epoch; false when another commit came first; nil,
-- message, code when the cluster did not answer, or no replica confirmed
-- (the commit stands on its master: the message goes on with unconfirmed).
function Replica:commit(expected, list, top)
  local b, k, cl = self.batch, self.keys, self.cl
  b:clear()
  local args = { "EVAL", COMMIT, #k }
  for _, key in ipairs(k) do args[#args + 1] = key end
  args[#args + 1] = expected
  if k[4] then args[#args + 1] = top or 0 end
  for _, x in ipairs(list) do args[#args + 1] = x end
  b:add_list(self.slot, args)
  b:add(self.slot, "WAIT", 1, self.wait_ms)
  local before = moves(cl)
  local ok, err, code = cl:exec(b)
  local r = b:value(1)
  if type(r) ~= "table" or r.err then return self:failed("committing", r, not ok and err, code) end
  if r[1] == 0 then return false end
  local replicas = b:value(2)
  if moves(cl) ~= before or type(replicas) ~= "number" or replicas < 1 then
    return errors.fail(errors.unavailable, self.name .. " on the cluster: no replica confirmed epoch " .. r[2]
      .. " within " .. self.wait_ms .. " ms (WAIT 1); " .. self.unconfirmed)
  end
  return r[2]
end

--- Nothing to do before a join commits list (a class may store what list's
-- records refer to). true, or nil, message, code.
function Replica.prepare_join() return true end

--- Copies the whole hash into store, publishing first what plan_join says
-- the home has and the cluster lacks (in chunks, joined again after each).
-- true, or nil, message, code.
function Replica:join(store)
  for _ = 1, TRIES do
    local epoch, records, code = self:pull(0)
    if not epoch then return nil, records, code end
    local list, top, pcode = self:plan_join(store, records)
    if not list then return nil, top, pcode end
    if #list == 0 then
      self:copy(store, records)
      self.seen = epoch
      return true
    end
    list = { unpack(list, 1, math.min(#list, 2 * JOIN_CHUNK)) }
    local ok, err, ccode = self:prepare_join(store, list)
    if not ok then return nil, err, ccode end
    ok, err, ccode = self:commit(epoch, list, top)
    if ok == nil then return nil, err, ccode end
  end
  return self:busy(self.join_busy)
end

--- Brings store's copy up to date: one GET of the cluster's epoch and, when
-- it moved on, what changed since (when it went back, the cluster lost the
-- hash: joined again). budget_ms as pull's. true, or nil, message, code.
function Replica:check(store, budget_ms)
  local b = self.batch
  b:clear()
  b:add(self.slot, "GET", self.keys[1])
  local ok, err, code = self.cl:exec(b, budget_ms)
  local r = b:value(1)
  if not ok or (r ~= nil and type(r) ~= "string") then
    return self:failed("reading the epoch", r, not ok and err, code)
  end
  local epoch = tonumber(r) or 0
  if epoch == self.seen then return true end
  if epoch < self.seen then return self:join(store) end
  local now, records, pcode = self:pull(self.seen, budget_ms)
  if not now then return nil, records, pcode end
  self:copy(store, records)
  self.seen = now
  return true
end

--- Runs attempt() against store's up-to-date copy until it is done: it
-- returns false when another home committed first (checked and tried
-- again), else a table { n = count, ... } of what to return. After TRIES
-- tries, busy(what).
function Replica:retry(store, what, attempt)
  for _ = 1, TRIES do
    local ok, err, code = self:check(store)
    if not ok then return nil, err, code end
    local res = attempt()
    if res then return unpack(res, 1, res.n) end
  end
  return self:busy(what)
end

return M
