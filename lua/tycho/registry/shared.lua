--- The model registry shared by every home on a Redis Cluster (TYCHO_CLUSTER,
-- or `tycho --cluster URL`): a version registered on any home is listed on
-- all, version numbers are decided once for all homes, and the audit
-- history (alias moves, approvals, rejections, requests, policy changes),
-- the policies and the promotion requests are the same everywhere, each
-- history entry naming the home that made it.
--
--   local sh, err, code = shared.of(store, url)  -- registry/init.lua: joined, copied in (once per process)
--   shared.before_read(store, url)         -- every read of reg: up to date first
--   sh:change(store, fn, artifacts)        -- every write of reg: fn(tx) committed on the cluster, copied in
--   sh:artifact(store, name, version, sha) -- reg:load of a version registered elsewhere: fetched, verified
--   shared.follow(store, url)              -- serve/worker.lua: a 200 ms poll instead of checks on reads
--
-- Keys under the URL's ns, all with the hash tag {registry}, so that one
-- script reads or moves them together (the layout, scripts and commits of
-- util/replicated.lua):
--   <ns>{registry}:epoch    a counter, INCR by every commit
--   <ns>{registry}:recs     a hash: a key of the home's `registry` database -> its value, for every
--                           record but artifacts ("model/N", "version/N/V", "evaluation/N/V",
--                           "policy/N/A", "request/N/ID", and the history entries keyed as at home)
--   <ns>{registry}:changes  a sorted set: each field of recs, scored by the epoch that last wrote it
--                           (a removed record, a policy dropped, stays here and reads as "")
-- and the artifacts where registry/publish.lua keeps them: <ns>artifact:<sha256>, written once
-- (SET NX) before the metadata naming them is committed: a change stores the artifact it was given
-- before its first try, not on every try (it is content-addressed: the same key whatever version
-- a retry ends up giving it).
--
-- The home's LMDB registry is each process's copy and read path, as
-- features/catalog_shared.lua keeps the feature catalog: copied in whole
-- when a process first opens the registry, then what changed since the
-- epoch last copied, before each read of a script (one GET when nothing
-- moved) or on the poll of a serving worker. A change runs the registry's
-- own transaction function against the up-to-date copy, through an overlay
-- that collects its writes instead of writing, and commits them by one
-- script only while the cluster's epoch is still the one copied; when
-- another home committed first, the copy is brought up to date and the
-- function runs again. So the next version number is decided against
-- every home's registrations (two homes registering at once get distinct
-- versions: the second commit is refused and retried), and history
-- entries are numbered in one order for all. A commit returns once a
-- replica holds it (WAIT 1), then the writes go to the home's copy, the
-- artifact's bytes with them; other homes fetch and verify an artifact the
-- first time they load its version.
--
-- When the cluster does not answer, a change is refused ("unavailable":
-- never written on this home alone) and reads use the home's copy, said
-- once on stderr. A home with models of its own joins when first opened: a
-- model the cluster lacks is published whole; one the cluster has must
-- hold none of this home's versions under other artifacts ("conflict"),
-- and the cluster's records then replace the home's.
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"
local replicated = require "tycho.util.replicated"
local online_redis = require "tycho.features.online_redis"
local keys_codec = require "tycho.util.keys"
local publish = require "tycho.registry.publish"
local xgboost = require "tycho.ml.xgboost"
local poller = require "tycho.serve.poller"
local uv = require "luv"

local M = {}
-- The epoch, the hash, its changes and the commits: util/replicated.lua's.
local Shared = replicated.class()

-- µs before a home that could not join tries again (each read would wait otherwise).
local RETRY_US = 1e6

-- The shared registry of each store open in this process, by URL; weak,
-- so that a closed store takes its entry along.
local states = setmetatable({}, { __mode = "k" })
-- Why the last join of a store failed, and when (RETRY_US).
local failures = setmetatable({}, { __mode = "k" })
local on_reads = true
-- The client's options: its own (the URL's) in scripts, follow's short ones in a serving worker.
local client = { max_reply = xgboost.MAX_FILE_BYTES + 4096 }

local function local_only(key) return key:sub(1, 9) == "artifact/" end

local function failed(what, r, err, code) return replicated.failed("registry", what, r, err, code) end

-- This home's name in history entries: host and home directory.
local function home_name(store) return (uv.os_gethostname() or "?") .. ":" .. store.path end

-- ---- the overlay a change runs against --------------------------------------------

-- A read transaction of the home's copy whose writes are collected, in
-- order, instead of written (false: removed).
local Overlay = {}
Overlay.__index = Overlay

local function overlay(tx, home)
  return setmetatable({ tx = tx, home = home, writes = {}, order = {} }, Overlay)
end

function Overlay:get(db, k)
  assert(db == "registry", "a shared registry change writes only the registry")
  local v = self.writes[k]
  if v ~= nil then return v or nil end
  return self.tx:get(db, k)
end

function Overlay:get_json(db, k)
  local v = self:get(db, k)
  return v and json.decode(v)
end

function Overlay:put(db, k, v)
  assert(db == "registry", "a shared registry change writes only the registry")
  if self.writes[k] == nil then self.order[#self.order + 1] = k end
  self.writes[k] = v
end

function Overlay:put_json(db, k, v) self:put(db, k, json.encode(v)) end
function Overlay:delete(db, k) self:put(db, k, false) end

--- The home to name in a history entry written in tx: this home's when tx
-- is a shared change's, nil otherwise (a registry without a cluster writes
-- its entries as it always has).
function M.home_of(tx) return getmetatable(tx) == Overlay and tx.home or nil end

-- ---- the copy ---------------------------------------------------------------------

-- Writes records { key = value, "" removes } into the home's copy, those
-- that differ from it.
function Shared.copy(_, store, records)
  local changed = store:view(function(tx)
    local out = {}
    for k, v in pairs(records) do
      if tx:get("registry", k) ~= (v ~= "" and v or nil) then out[#out + 1] = k end
    end
    return out
  end)
  if #changed == 0 then return end
  store:update(function(tx)
    for _, k in ipairs(changed) do
      if records[k] == "" then tx:delete("registry", k) else tx:put("registry", k, records[k]) end
    end
  end)
end

--- The shared registry of store on the cluster of url, joined and copied
-- in once per process, store and URL; nil, message, code: "unavailable"
-- when the cluster does not answer (asked again a second later at the
-- earliest), "conflict" when the home's own versions disagree with the
-- cluster's (see the module's comment).
function M.of(store, url)
  local st = states[store]
  if st and st.url == url then return st end
  local f = failures[store]
  if f and f.url == url and uv.hrtime() / 1e3 - f.at < RETRY_US then return nil, f.err, f.code end
  local err, code
  st, err, code = M.attach(store, url)
  failures[store] = not st and { url = url, at = uv.hrtime() / 1e3, err = err, code = code } or nil
  return st, err, code
end

--- M.of without the memory of failures: connects, joins and copies in.
function M.attach(store, url)
  local seeds, opts, pcode = online_redis.parse_url(url)
  if not seeds then return nil, opts, pcode end
  -- (the client's largest reply: an artifact's, as registry.MAX_ARTIFACT_BYTES)
  local conn, err, code = publish.connect(url, client)
  if not conn then return failed("connecting", nil, err, code) end
  local st, jerr, jcode = replicated.open(Shared, {
    url = url, conn = conn, cl = conn.cl, ns = conn.ns, tag = "registry", hash = "recs", name = "registry",
    read_ms = opts.read_ms or 0, wait_ms = opts.wait_ms, home = home_name(store),
    unconfirmed = "the change stands on its master, not on this home",
    join_busy = "this home's models not published" }, store)
  if not st then return nil, jerr, jcode end
  states[store] = st
  return st
end

--- Whether reads check the cluster first (true, as a script wants); a
-- serving worker, whose poll checks instead, says false.
function M.check_on_reads(on) on_reads = on end

-- ---- joining ----------------------------------------------------------------------

-- The home's records of model name (the keys init.lua writes), artifacts aside.
local function model_records(tx, name)
  local out = { ["model/" .. name] = tx:get("registry", "model/" .. name) }
  local history = keys_codec.pack("s", "history/" .. name)
  for _, prefix in ipairs { "version/" .. name .. "/", "evaluation/" .. name .. "/", "policy/" .. name .. "/",
                            "request/" .. name .. "/", history } do
    for k, v in tx:scan("registry", { prefix = prefix }) do out[k] = v end
  end
  return out
end

-- What a joining home publishes of model name, whose records the cluster
-- lacks: its records the cluster does not hold as they are, the model's
-- own last (so that a join cut into chunks publishes it whole, or again).
local function publish_model(mine, records, out, last)
  for k, v in pairs(mine) do
    if records[k] ~= v then
      if k:sub(1, 6) == "model/" then last[#last + 1] = k else out[#out + 1] = k end
    end
  end
end

-- A model both have: every version of the home's must be the cluster's, of
-- the same artifact; then the home's records the cluster lacks go.
local function agree(mine, records, name, drop)
  for k, v in pairs(mine) do
    if k:sub(1, 8) == "version/" then
      local theirs = records[k]
      if not theirs or json.decode(theirs).sha256 ~= json.decode(v).sha256 then
        return errors.fail(errors.conflict, "this home's registry disagrees with the cluster's: " .. name .. " "
          .. k:match("[^/]+$") .. " is " .. (theirs and "another artifact" or "missing") .. " on the cluster"
          .. " (open the home without the cluster, or start a new one)")
      end
    elseif not records[k] then
      drop[k] = ""
    end
  end
  return true
end

-- What a joining home publishes ({ key, value, ... } and the sha256 of the
-- versions it brings) and what it drops ({ key = "" }); or nil, message, code.
local function plan(store, records)
  return store:view(function(tx)
    local keys, last, drop, values = {}, {}, {}, {}
    for _, raw in tx:scan("registry", { prefix = "model/" }) do
      local name = json.decode(raw).name
      local mine = model_records(tx, name)
      for k, v in pairs(mine) do values[k] = v end
      if not records["model/" .. name] then publish_model(mine, records, keys, last)
      else
        local ok, err, code = agree(mine, records, name, drop)
        if not ok then return nil, err, code end
      end
    end
    for _, k in ipairs(last) do keys[#keys + 1] = k end
    local list = {}
    for _, k in ipairs(keys) do
      list[#list + 1] = k
      list[#list + 1] = values[k]
    end
    return list, drop
  end)
end

-- Stores bytes, whose sha256 is sha256, on the cluster once (SET NX), for
-- what ("the artifact of NAME VERSION"). true, or nil, message, code.
function Shared:store_artifact(sha256, bytes, what)
  local key = publish.artifact_key(self.conn, sha256)
  local r, err, code = self.cl:call(self.cl:slot(key), "SET", key, bytes, "NX")
  if (r == nil and err) or (type(r) == "table" and r.err) then return failed("storing " .. what, r, err, code) end
  return true
end

-- The artifacts of the version records in list { key, value, ... }, stored
-- on the cluster once (SET NX) from the home's copy, but for those whose
-- sha256 stored has (kept there once stored). true, or nil, message, code.
function Shared:store_artifacts(list, bytes_of, stored)
  stored = stored or {}
  for i = 1, #list, 2 do
    local k = list[i]
    if k:sub(1, 8) == "version/" and list[i + 1] ~= "" then
      local meta = json.decode(list[i + 1])
      if not stored[meta.sha256] then
        local bytes = bytes_of("artifact/" .. k:sub(9))
        if not bytes then
          return errors.fail(errors.not_found, "registry: " .. meta.name .. " " .. meta.version .. " has no artifact here")
        end
        local ok, err, code = self:store_artifact(meta.sha256, bytes, "the artifact of " .. meta.name .. " " .. meta.version)
        if not ok then return nil, err, code end
        stored[meta.sha256] = true
      end
    end
  end
  return true
end

-- What a joining home publishes, { key, value, ... }, its records the
-- cluster lacks being dropped from its copy with the cluster's (records
-- takes them, as removed); or nil, message, code.
function Shared.plan_join(_, store, records)
  local list, drop, code = plan(store, records)
  if not list then return nil, drop, code end
  for k, v in pairs(drop) do records[k] = v end
  return list
end

-- The artifacts of a joining home's versions in list, stored on the cluster first.
function Shared:prepare_join(store, list)
  return self:store_artifacts(list, function(k) return store:view(function(tx) return tx:get("registry", k) end) end)
end

-- ---- reads and writes -------------------------------------------------------------

-- Says on stderr, once until it changes, that reads use the home's copy
-- because of err (nil: the cluster answers again).
local said
local function say(err)
  if err and err ~= said then io.stderr:write("tycho: ", err, "; reading this home's copy of the registry\n") end
  said = err
end

--- Brings store's copy of the registry on url up to date before a script
-- reads it (unless check_on_reads(false)), within the URL's read_ms. A
-- cluster that does not answer leaves the copy as it is: stderr says so once.
function M.before_read(store, url)
  if not on_reads then return end
  local sh, err = M.of(store, url)
  local ok
  if sh then ok, err = sh:check(store, sh.read_ms) end
  say(not ok and err or nil)
end

-- The results of fn(tx) run against an overlay of store's copy, packed,
-- and the overlay.
local function run(store, fn, home)
  local ov
  local res = { store:view(function(tx)
    ov = overlay(tx, home)
    return fn(ov)
  end) }
  return res, ov
end

-- The overlay's shared writes as { key, value, ... } ("" removes).
local function shared_writes(ov)
  local list = {}
  for _, k in ipairs(ov.order) do
    if not local_only(k) then
      list[#list + 1] = k
      list[#list + 1] = ov.writes[k] or ""
    end
  end
  return list
end

--- Runs fn(tx) (a registry transaction function, as store:update takes)
-- against store's up-to-date copy, commits what it writes on the cluster
-- (artifacts first, by their sha256), then in the copy. artifacts, {
-- { name = NAME, sha256 = SUM, bytes = BYTES }, ... }, are those fn's
-- version records will name (reg:register's): stored before the first try,
-- once, since each try may give them another version number but not
-- another key; a version record naming one not given has it stored from
-- fn's writes, once too. Returns what fn returns; or nil, message, code:
-- "unavailable" when the cluster did not take it (its artifacts included),
-- "busy" when other homes kept committing first.
function Shared:change(store, fn, artifacts)
  local stored = {}
  for _, a in ipairs(artifacts or {}) do
    local ok, err, code = self:store_artifact(a.sha256, a.bytes, "the artifact of " .. a.name)
    if not ok then return nil, err, code end
    stored[a.sha256] = true
  end
  return self:retry(store, "not written", function()
    local res, ov = run(store, fn, self.home)
    res.n = table.maxn(res)
    if res[1] == nil or #ov.order == 0 then return res end
    local list = shared_writes(ov)
    local ok, err, code = self:store_artifacts(list, function(k) return ov.writes[k] end, stored)
    if not ok then return { n = 3, nil, err, code } end
    local epoch
    epoch, err, code = self:commit(self.seen, list)
    if epoch == nil then return { n = 3, nil, err, code } end
    if not epoch then return false end
    store:update(function(tx)
      for _, k in ipairs(ov.order) do
        if ov.writes[k] then tx:put("registry", k, ov.writes[k]) else tx:delete("registry", k) end
      end
    end)
    self.seen = epoch
    return res
  end)
end

--- The artifact of name's version (sha256 as its metadata says) from the
-- cluster, verified (registry/publish.lua's fetch: a damaged or foreign
-- artifact is refused) and kept in the home's copy. The bytes, or nil,
-- message, code.
function Shared:artifact(store, name, version, sha256)
  local bytes, err, code = publish.fetch(self.conn, { model = name, version = version, sha256 = sha256 })
  if not bytes then return nil, err, code end
  store:update(function(tx) tx:put("registry", "artifact/" .. name .. "/" .. version, bytes) end)
  return bytes
end

--- Keeps store's copy up to date in a serving worker: reads look at the
-- copy alone, a poll (serve/poller.lua) checks the cluster every 200 ms,
-- and the client waits as briefly as serve/follow.lua's (a lost cluster
-- costs the loop little). Returns the poller.
function M.follow(store, url)
  M.check_on_reads(false)
  client.timeout_ms, client.retry_ms = 100, 100
  local p = poller.new("following the registry on " .. url, function()
    local sh, err, code = M.of(store, url)
    if not sh then return nil, err, code end
    return sh:check(store, sh.read_ms)
  end)
  return p:start()
end

return M
