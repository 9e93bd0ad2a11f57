--- Models published as data on a Redis Cluster (TYCHO_CLUSTER, or
-- `tycho --cluster URL`): a process that moves an alias (promote, approve,
-- rollback) publishes the artifact and the move; serving nodes on other
-- homes read the move and fetch, verify and register the artifact
-- (serve/follow.lua).
--
--   local publish = require "tycho.registry.publish"
--   local conn = assert(publish.connect(url))
--   assert(publish.announce(conn, meta, bytes, "production"))  -- meta: the version's, from reg:get
--   local seq = publish.sequence(conn)                         -- grows with every move
--   local moves = publish.moves(conn, { { model = "spam", alias = "production" } })
--   publish.adopt(reg, conn, moves[1])   -- fetched, verified, registered, local alias moved
--
-- Keys, under the URL's ns ("tycho:" by default, as the online store's):
--   <ns>artifact:<sha256>               the artifact's bytes, written once (SET NX)
--   <ns>{models}:seq                    one counter, INCR by every move
--   <ns>{models}:alias:<model>@<alias>  a hash: model, alias, version, sha256, seq, at,
--                                       meta (the version's metadata, JSON)
--   channel <ns>models                  one JSON message per move, for outside subscribers
-- The counter and the alias hashes share the hash tag {models}, so one
-- script moves both atomically: a node that reads the counter, then the
-- hashes, sees every move up to that count. Artifacts spread over the
-- slots of their own keys.
local redis = require "tycho.core.redis"
local online_redis = require "tycho.features.online_redis"
local pipeline = require "tycho.ml.pipeline"
local json = require "tycho.util.json"
local errors = require "tycho.util.errors"
local timeutil = require "tycho.util.timeutil"

local M = {}

-- INCR and HSET in one slot, atomically, then the message. Run with EVAL:
-- moves are rare, and a script needs no loading on each master (nor again
-- after a failover).
local ANNOUNCE = [[
local seq = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'model', ARGV[1], 'alias', ARGV[2], 'version', ARGV[3], 'sha256', ARGV[4],
           'at', ARGV[5], 'meta', ARGV[6], 'seq', seq)
redis.call('PUBLISH', ARGV[7], cjson.encode({ model = ARGV[1], alias = ARGV[2], version = ARGV[3],
                                             sha256 = ARGV[4], at = ARGV[5], seq = seq }))
return seq
]]

-- What of a version's metadata travels with it (the rest is the home's own).
local META = { "description", "metrics", "params", "data", "owner", "created", "code" }

-- One client per process, URL and options.
local connected = {}

--- The cluster of url ("redis://h:p[,h:p...][?ns=...]"), connected once per
-- process and client options (opts: timeout_ms, retry_ms, max_reply, as
-- tycho.core.redis; the URL's own timeouts otherwise). Returns a connection,
-- or nil, message, code ("invalid", "unavailable").
function M.connect(url, opts)
  local id = url .. "|" .. json.encode_canonical(opts or {})
  if connected[id] then return connected[id] end
  local seeds, uopts, code = online_redis.parse_url(url)
  if not seeds then return nil, uopts, code end
  for k, v in pairs(opts or {}) do uopts[k] = v end
  local cl, err, ecode = redis.open(seeds, uopts)
  if not cl then return errors.fail(ecode, "cluster " .. seeds .. ": " .. err) end
  local ns = uopts.ns
  local conn = { cl = cl, seeds = seeds, ns = ns, seq_key = ns .. "{models}:seq", channel = ns .. "models" }
  connected[id] = conn
  return conn
end

--- The key of an artifact by its sha256.
function M.artifact_key(conn, sha256) return conn.ns .. "artifact:" .. sha256 end

local function alias_key(conn, model, alias) return conn.ns .. "{models}:alias:" .. model .. "@" .. alias end

-- A reply that is a server error (a table with err), as a failure.
local function refused(what, r)
  local why = r.unavailable and "no answer" or tostring(r.err)
  return errors.fail("unavailable", "cluster: " .. what .. ": " .. why)
end

-- Runs one command; its reply, or nil, message, code.
local function call(conn, key, what, ...)
  local r, err, code = conn.cl:call(conn.cl:slot(key), ...)
  if r == nil and err then return errors.fail(code, "cluster: " .. what .. ": " .. err) end
  if type(r) == "table" and r.err then return refused(what, r) end
  return r
end

--- Publishes the move of alias to the version meta describes (reg:get's
-- table) with its artifact bytes: the bytes once under their sha256 (SET
-- NX: a second publication of the same version writes nothing), then the
-- move. Returns the move's sequence number, or nil, message, code.
function M.announce(conn, meta, bytes, alias)
  local key = M.artifact_key(conn, meta.sha256)
  local ok, err, code = call(conn, key, "storing the artifact of " .. meta.name .. " " .. meta.version,
                             "SET", key, bytes, "NX")
  if ok == nil and err then return nil, err, code end
  local carried = {}
  for _, k in ipairs(META) do carried[k] = meta[k] end
  local akey = alias_key(conn, meta.name, alias)
  return call(conn, akey, "announcing " .. meta.name .. "@" .. alias, "EVAL", ANNOUNCE, 2, conn.seq_key, akey,
              meta.name, alias, meta.version, meta.sha256, timeutil.format(timeutil.now()), json.encode(carried),
              conn.channel)
end

--- The move counter (0 before any move), or nil, message, code.
function M.sequence(conn)
  local r, err, code = call(conn, conn.seq_key, "reading the move counter", "GET", conn.seq_key)
  if r == nil and err then return nil, err, code end
  return tonumber(r) or 0
end

-- An alias hash's HGETALL reply as a move, or false when there is none.
local function as_move(reply)
  if type(reply) ~= "table" or #reply == 0 then return false end
  local m = {}
  for i = 1, #reply, 2 do m[reply[i]] = reply[i + 1] end
  m.seq = tonumber(m.seq)
  m.meta = type(m.meta) == "string" and json.decode(m.meta) or {}
  return m
end

--- The published moves of aliases ({ {model=, alias=}, ... }), one
-- round trip: a list of the same length holding each alias's move
-- { model, alias, version, sha256, seq, at, meta } or false. nil, message,
-- code when the cluster does not answer.
function M.moves(conn, aliases)
  local cl = conn.cl
  local b = cl:batch()
  for _, a in ipairs(aliases) do
    local key = alias_key(conn, a.model, a.alias)
    b:add(cl:slot(key), "HGETALL", key)
  end
  local ok, err, code = cl:exec(b)
  if not ok then return errors.fail(code, "cluster: reading published aliases: " .. err) end
  local out = {}
  for i, a in ipairs(aliases) do
    local r = b:value(i)
    if type(r) == "table" and r.err then return refused("reading published aliases", r) end
    out[i] = as_move(r)
    if out[i] then out[i].model, out[i].alias = a.model, a.alias end
  end
  return out
end

--- A move's artifact bytes, checked: a well-formed artifact whose sha256
-- is the one announced (a damaged or foreign one is refused, "invalid");
-- or nil, message, code ("not_found" when the cluster has no such
-- artifact, "too_large" past the client's max_reply).
function M.fetch(conn, move)
  local key = M.artifact_key(conn, move.sha256)
  local what = move.model .. " " .. move.version
  local bytes, err, code = call(conn, key, "fetching the artifact of " .. what, "GET", key)
  if bytes == nil and err then return nil, err, code end
  if type(bytes) ~= "string" then return errors.fail("not_found", "cluster: no artifact " .. key .. " for " .. what) end
  local p, perr = pipeline.from_bytes(bytes)
  if not p then return errors.fail("invalid", "cluster: " .. what .. " refused: " .. perr) end
  if p.sha256 ~= move.sha256 then
    return errors.fail("invalid", "cluster: " .. what .. " refused: sha256 mismatch (announced " .. move.sha256
      .. ", the artifact under " .. key .. " is " .. p.sha256 .. ")")
  end
  return bytes
end

-- Registers a move's version in reg from the cluster, unless reg holds it
-- already; a version of the same number with other bytes is a conflict.
local function ensure_version(reg, conn, move)
  local have = reg:get(move.model, move.version)
  if not have then
    local bytes, err, code = M.fetch(conn, move)
    if not bytes then return nil, err, code end
    local meta = move.meta
    local version, rerr, rcode = reg:register(move.model, bytes, {
      version = move.version, description = meta.description, metrics = meta.metrics, params = meta.params,
      data = meta.data, owner = meta.owner,
      provenance = { source = "cluster", cluster = conn.seeds, published_at = move.at, seq = move.seq,
                     sha256 = move.sha256, created = meta.created, code = meta.code,
                     note = "published on the cluster at " .. tostring(move.at) } })
    if version then return true end
    have = reg:get(move.model, move.version)  -- another worker of this home registered it meanwhile
    if not have then return nil, rerr, rcode end
  end
  if have.sha256 ~= move.sha256 then
    return errors.fail("conflict", "cluster: " .. move.model .. " " .. move.version .. " is another artifact on this"
      .. " home (sha256 " .. have.sha256 .. ", published " .. move.sha256 .. ")")
  end
  return true
end

--- Makes reg follow a published move: the version fetched, verified and
-- registered with its provenance when reg lacks it, then reg's alias moved
-- to it (Registry:follow: no gates, not published again; a registry shared
-- on the cluster has it moved already, or later). Returns true when the
-- alias moved, false when it was there already; or nil, message, code.
function M.adopt(reg, conn, move)
  if type(move.version) ~= "string" or type(move.sha256) ~= "string" or not move.sha256:match("^%x+$") then
    return errors.fail("invalid", "cluster: the published move of " .. move.model .. "@" .. move.alias .. " is malformed")
  end
  local ok, err, code = ensure_version(reg, conn, move)
  if not ok then return nil, err, code end
  return reg:follow(move.model, move.alias, move.version, { seq = move.seq, published_at = move.at })
end

return M
