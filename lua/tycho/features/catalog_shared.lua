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
-- share one slot and one script reads or moves them together (the layout,
-- scripts and commits of util/replicated.lua, with next_id its counter):
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
local replicated = require "tycho.util.replicated"
local catalog = require "tycho.features.catalog"

local M = {}
-- The epoch, the hash, its changes and the commits: util/replicated.lua's.
local Shared = replicated.class()

-- The shared catalog of each store open in this process; weak, so that a
-- closed store takes its entry along (a state never refers to its store).
local states = setmetatable({}, { __mode = "k" })
local on_reads = true

-- Copies records { field = JSON } into the home's catalog, those that differ
-- from its own, and moves its epoch when any did (a copy that changes
-- nothing must not make every reader reload).
function Shared.copy(_, store, records)
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
function Shared.plan_join(_, store, records)
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
  local err, code
  st, err, code = replicated.open(Shared, {
    url = backend.url, cl = backend.cl, ns = backend.ns, tag = "catalog", hash = "defs", counter = "next_id",
    name = "feature catalog", read_ms = backend.read_ms, wait_ms = backend.opts.wait_ms,
    unconfirmed = "the definition stands on its master, and may be made again",
    join_busy = "this home's own definitions not written" }, store)
  if not st then return nil, err, code end
  states[store] = st
  return st
end

--- Whether reads of definitions check the cluster first (true, as a script
-- wants); a serving worker, whose timer checks instead, says false.
function M.check_on_reads(on) on_reads = on end

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
  return self:retry(store, field .. " not written", function()
    local rec, err, code = store:view(make)
    if not rec then return { n = 3, nil, err, code } end
    if kind == "view" and not rec.id then
      rec.id, err, code = self:next_id()
      if not rec.id then return { n = 3, nil, err, code } end
    end
    local raw = json.encode(rec)
    local ok
    ok, err, code = self:commit(self.seen, { field, raw }, 0)
    if ok == nil then return { n = 3, nil, err, code } end
    if not ok then return false end
    self:copy(store, { [field] = raw })
    return { n = 1, rec }
  end)
end

--- A new view id from the cluster (INCR; a commit that loses its race
-- leaves a gap, which no reader minds), or nil, message, code.
function Shared:next_id()
  local r, err, code = self.cl:call(self.slot, "INCR", self.keys[4])
  if type(r) ~= "number" then return self:failed("numbering a view", r, err, code) end
  return r
end

return M
