--- tycho.features, the feature catalog shared by every home on a Redis
-- Cluster (TYCHO_CLUSTER, or `tycho --cluster URL`): an entity or a view
-- defined on any home is defined on all, and the cluster numbers the views,
-- so a view's id (its field in the online store, features/online_redis.lua)
-- is the same on every node.
--
--   local shared = assert(catalog_shared.attach(store, backend))  -- features.open: joined, copied in
--   shared:before_read(store)               -- fs:view, fs:list, fs:online...: up to date first
--   shared:write(store, "view", name, make)  -- catalog.lua: committed on the cluster, copied in
--   shared:check(store, budget_ms)          -- serve/catalog_follow.lua's timer
--
-- Keys under the URL's ns, all with the hash tag {catalog}, so that they
-- share one slot and one script reads or moves them together:
--   <ns>{catalog}:epoch    a counter, INCR by every commit
--   <ns>{catalog}:defs     a hash: "entity/NAME" or "view/NAME" -> the JSON a home's catalog stores
--   <ns>{catalog}:changes  a sorted set: each field of defs, scored by the epoch that last wrote it
--   <ns>{catalog}:next_id  the last view id handed out (INCR)
--
-- The home's LMDB catalog is each process's copy, so offline rows,
-- point-in-time joins and everything local read it unchanged: attach copies
-- the whole catalog in, later checks what changed since the epoch last
-- copied, and the home's own epoch moves so that readers refresh. A script
-- checks on each read of a definition (one GET when nothing moved); a
-- serving worker on a timer instead, so that no request waits on it.
--
-- A definition is decided by catalog.lua against the up-to-date copy, as
-- without a cluster, then committed by one script only while the cluster's
-- epoch is still the one copied: when another home committed first, the
-- copy is brought up to date and the definition decided again (so an
-- incompatible change made meanwhile is refused, "conflict"). A commit
-- returns once a replica holds it (WAIT 1): a definition lost in a failover
-- would let its view id be handed out again.
--
-- A home with definitions of its own (made before it joined, or without
-- the cluster) joins at attach: what the cluster lacks is published, views
-- with the ids they have; a view the cluster has under another id, or with
-- versions that diverge from the home's, is refused ("conflict"), since its
-- offline rows and online field would disagree with the other nodes'.
-- Otherwise the cluster's definition holds.
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"
local catalog = require "tycho.features.catalog"

local M = {}
local Shared = {}
Shared.__index = Shared

-- Commits tried before giving up while other homes keep committing first;
-- records published by one commit of a join (each takes two arguments of
-- the client's 1024).
local TRIES, JOIN_CHUNK = 20, 400
local WAIT_MS = 500

-- The epoch, then field and JSON of every definition written after epoch ARGV[1].
local PULL = [[
local epoch = redis.call('GET', KEYS[1]) or '0'
local out = { epoch }
if epoch == ARGV[1] then return out end
for _, f in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf')) do
  out[#out + 1] = f
  out[#out + 1] = redis.call('HGET', KEYS[2], f)
end
return out
]]

-- Writes the field, JSON pairs of ARGV[3..] only while the epoch is still
-- ARGV[1], and keeps next_id at least ARGV[2] (the ids a joining home
-- brings): { 1, new epoch }, or { 0, epoch } when another commit came first.
local COMMIT = [[
local epoch = tonumber(redis.call('GET', KEYS[1]) or '0')
if epoch ~= tonumber(ARGV[1]) then return { 0, epoch } end
epoch = redis.call('INCR', KEYS[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[3], epoch, ARGV[i])
end
if tonumber(ARGV[2]) > tonumber(redis.call('GET', KEYS[4]) or '0') then redis.call('SET', KEYS[4], ARGV[2]) end
return { 1, epoch }
]]

-- The shared catalog of each store open in this process; weak, so that a
-- closed store takes its entry along (a state never refers to its store).
local states = setmetatable({}, { __mode = "k" })
local on_reads = true

local function failed(what, r, err, code)
  local why = err or tostring(type(r) == "table" and r.err or r)
  return errors.fail(err and code or errors.unavailable, "feature catalog on the cluster: " .. what .. ": " .. why)
end

local function busy(what)
  return errors.fail(errors.busy, "feature catalog on the cluster: other homes kept changing it; " .. what
    .. " not written after " .. TRIES .. " tries")
end

-- The client's redirect and reconnection counters: when they move during a
-- commit and its WAIT, the WAIT may have gone to another connection than
-- the commit, and confirms nothing.
local function moves(cl)
  local s = cl:stats()
  return s.moved + s.ask + s.reconnects + s.retries
end

-- Copies records { field = JSON } into the home's catalog, those that differ
-- from its own, and moves its epoch when any did (a copy that changes
-- nothing must not make every reader reload).
local function copy(store, records)
  local changed = store:view(function(tx)
    local out = {}
    for field, raw in pairs(records) do
      if tx:get("catalog", field) ~= raw then out[#out + 1] = field end
    end
    return out
  end)
  if #changed == 0 then return end
  store:update(function(tx)
    for _, field in ipairs(changed) do catalog.store_record(tx, field, records[field]) end
    catalog.bump_epoch(tx)
  end)
end

-- True when the versions of list a are the first of list b's (the same
-- features, of the same types, in the same order).
local function versions_prefix(a, b)
  if #a > #b then return false end
  for i, ver in ipairs(a) do
    local other = b[i]
    if other.version ~= ver.version or #other.features ~= #ver.features then return false end
    for j, f in ipairs(ver.features) do
      if other.features[j].name ~= f.name or other.features[j].type ~= f.type then return false end
    end
  end
  return true
end

-- A joining home's view that disagrees with the cluster's, as a failure.
local function disagreement(fmt, ...)
  return errors.fail(errors.conflict, "this home's feature catalog disagrees with the cluster's: "
    .. string.format(fmt, ...) .. " (open the home without the cluster, or start a new one)")
end

-- Whether a joining home publishes its view mine: true when the cluster
-- lacks it (theirs nil) or holds fewer of its versions, false when the
-- cluster's holds; nil, message, "conflict" when they disagree. by_id: the
-- cluster's view names by id.
local function join_view(mine, theirs, by_id)
  if not theirs then
    local holder = by_id[mine.id]
    if not holder then return true end
    return disagreement("view '%s' has id %d on this home, which the cluster's catalog gives to %s", mine.name,
      mine.id, holder)
  end
  if theirs.id ~= mine.id then
    return disagreement("view '%s' has id %d on this home and %d in the cluster's catalog", mine.name, mine.id,
      theirs.id)
  end
  if versions_prefix(mine.versions, theirs.versions) then return false end
  if versions_prefix(theirs.versions, mine.versions) then return true end
  return disagreement("view '%s' has versions on this home that differ from the cluster's", mine.name)
end

-- What a joining home publishes: { field, JSON, ... } of its definitions
-- that the cluster's records lack or hold older versions of, and the
-- highest view id among them; or nil, message, code when one disagrees.
local function plan_join(store, records)
  local by_id = {}
  for field, raw in pairs(records) do
    if field:sub(1, 5) == "view/" then by_id[json.decode(raw).id] = field:sub(6) end
  end
  return store:view(function(tx)
    local out, top = {}, 0
    for field, raw in tx:scan("catalog", { prefix = "entity/" }) do
      if not records[field] then
        out[#out + 1] = field
        out[#out + 1] = raw
      end
    end
    for field, raw in tx:scan("catalog", { prefix = "view/" }) do
      local mine = json.decode(raw)
      local publish, err, code = join_view(mine, records[field] and json.decode(records[field]), by_id)
      if publish == nil then return nil, err, code end
      if publish then
        out[#out + 1] = field
        out[#out + 1] = raw
        top = math.max(top, mine.id)
      end
    end
    return out, top
  end)
end

--- The shared catalog of store on the cluster of backend (an online_redis
-- backend, whose client it shares), joined and copied into store once per
-- process and store. nil, message, code: "unavailable" when the cluster
-- does not answer, "conflict" when the home's own definitions disagree with
-- the cluster's (see the module's comment).
function M.attach(store, backend)
  local st = states[store]
  if st and st.url == backend.url then return st end
  local ns = backend.ns .. "{catalog}:"
  local keys = { ns .. "epoch", ns .. "defs", ns .. "changes", ns .. "next_id" }
  st = setmetatable({ url = backend.url, cl = backend.cl, keys = keys, slot = backend.cl:slot(keys[1]),
                      read_ms = backend.read_ms, wait_ms = backend.opts.wait_ms or WAIT_MS,
                      batch = backend.cl:batch() }, Shared)
  local ok, err, code = st:join(store)
  if not ok then return nil, err, code end
  states[store] = st
  return st
end

--- Whether reads of definitions check the cluster first (true, as a script
-- wants); a serving worker, whose timer checks instead, says false.
function M.check_on_reads(on) on_reads = on end

--- The cluster's epoch now and { field = JSON } of what changed after epoch
-- since (0: everything); nil, message, code when it does not answer within
-- budget_ms (the client's retry_ms when nil).
function Shared:pull(since, budget_ms)
  local b, k = self.batch, self.keys
  b:clear()
  b:add(self.slot, "EVAL", PULL, 3, k[1], k[2], k[3], since)
  local ok, err, code = self.cl:exec(b, budget_ms)
  local r = b:value(1)
  if not ok or type(r) ~= "table" or r.err then return failed("reading", r, not ok and err, code) end
  local records = {}
  for i = 2, #r, 2 do records[r[i]] = r[i + 1] end
  return tonumber(r[1]), records
end

--- Commits list { field, JSON, ... } if the cluster's epoch is still
-- expected (keeping next_id at least top), then waits for a replica. true;
-- false when another commit came first; nil, message, code when the cluster
-- did not answer, or no replica confirmed (the commit stands on its master).
function Shared:commit(expected, top, list)
  local b, k, cl = self.batch, self.keys, self.cl
  b:clear()
  local args = { "EVAL", COMMIT, 4, k[1], k[2], k[3], k[4], expected, top }
  for _, x in ipairs(list) do args[#args + 1] = x end
  b:add_list(self.slot, args)
  b:add(self.slot, "WAIT", 1, self.wait_ms)
  local before = moves(cl)
  local ok, err, code = cl:exec(b)
  local r = b:value(1)
  if type(r) ~= "table" or r.err then return failed("committing", r, not ok and err, code) end
  if r[1] == 0 then return false end
  local replicas = b:value(2)
  if moves(cl) ~= before or type(replicas) ~= "number" or replicas < 1 then
    return errors.fail(errors.unavailable, "feature catalog on the cluster: no replica confirmed epoch " .. r[2]
      .. " within " .. self.wait_ms .. " ms (WAIT 1); the definition stands on its master, and may be made again")
  end
  return true
end

--- Copies the whole catalog into store, publishing first what the home has
-- and the cluster lacks. true, or nil, message, code.
function Shared:join(store)
  for _ = 1, TRIES do
    local epoch, records, code = self:pull(0)
    if not epoch then return nil, records, code end
    local list, top, pcode = plan_join(store, records)
    if not list then return nil, top, pcode end
    if #list == 0 then
      copy(store, records)
      self.seen = epoch
      return true
    end
    local ok, err, ccode = self:commit(epoch, top, { unpack(list, 1, math.min(#list, 2 * JOIN_CHUNK)) })
    if ok == nil then return nil, err, ccode end
  end
  return busy("this home's own definitions")
end

--- Brings store's copy up to date: one GET of the cluster's epoch and, when
-- it moved on, what changed since (when it went back, the cluster lost its
-- catalog: joined again). budget_ms as pull's. true, or nil, message, code.
function Shared:check(store, budget_ms)
  local b = self.batch
  b:clear()
  b:add(self.slot, "GET", self.keys[1])
  local ok, err, code = self.cl:exec(b, budget_ms)
  local r = b:value(1)
  if not ok or (r ~= nil and type(r) ~= "string") then return failed("reading the epoch", r, not ok and err, code) end
  local epoch = tonumber(r) or 0
  if epoch == self.seen then return true end
  if epoch < self.seen then return self:join(store) end
  local now, records, pcode = self:pull(self.seen, budget_ms)
  if not now then return nil, records, pcode end
  copy(store, records)
  self.seen = now
  return true
end

--- check, before a script reads a definition (unless check_on_reads(false)),
-- within the read budget of the cluster URL (read_ms, 0: a node that cannot
-- answer now is not waited for). A cluster that does not answer leaves the
-- copy as it is: stderr says so once.
function Shared:before_read(store)
  if not on_reads then return end
  local ok, err = self:check(store, self.read_ms)
  if not ok and err ~= self.said then io.stderr:write("tycho: ", err, "; reading this home's copy\n") end
  self.said = not ok and err or nil
end

--- Writes the record make(tx) builds against store's up-to-date copy (see
-- catalog.lua's write) as kind/name on the cluster, a new view numbered by
-- the cluster (INCR), and copies it in. The record; or nil, message, code:
-- make's refusal, "unavailable" when the cluster did not take it, "busy"
-- when other homes kept committing first.
function Shared:write(store, kind, name, make)
  local field = kind .. "/" .. name
  for _ = 1, TRIES do
    local ok, err, code = self:check(store)
    if not ok then return nil, err, code end
    local rec, merr, mcode = store:view(make)
    if not rec then return nil, merr, mcode end
    if kind == "view" and not rec.id then
      rec.id, err, code = self:next_id()
      if not rec.id then return nil, err, code end
    end
    local raw = json.encode(rec)
    ok, err, code = self:commit(self.seen, 0, { field, raw })
    if ok == nil then return nil, err, code end
    if ok then
      copy(store, { [field] = raw })
      return rec
    end
  end
  return busy(field)
end

--- A new view id from the cluster (INCR; a commit that loses its race
-- leaves a gap, which no reader minds), or nil, message, code.
function Shared:next_id()
  local r, err, code = self.cl:call(self.slot, "INCR", self.keys[4])
  if type(r) ~= "number" then return failed("numbering a view", r, err, code) end
  return r
end

return M
