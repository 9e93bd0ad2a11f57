--- tycho.features, the online store on a Redis Cluster (TYCHO_CLUSTER or
-- `--cluster redis://host:port[,host:port...]`), behind the interface the
-- LMDB online db has: layout.online_put writes through put, fs:online and
-- fs:reader read through read_rows.
--
-- Layout: one hash per entity key, `<ns>{<entity>:<key>}` (ns "tycho:" by
-- default; the braces are the hash tag, so the whole hash lives in one slot),
-- one field per view (its id in decimal, the same on every home since the
-- cluster numbers the views: features/catalog_shared.lua) holding exactly
-- LMDB's online value: the 8-byte event time (little-endian µs) then the
-- rowcodec row.
--
-- Writes go through one Redis Function, tycho_online_put (loaded on every
-- master when the backend opens, and again if a node answers that it has
-- none): for each (field, value, ttl) it keeps the stored value when that is
-- as new or newer (equal time and bytes: unchanged), else writes it, all in
-- one atomic call per entity. A view with a ttl makes the hash expire at
-- max(event time, now) + 2 × ttl (extended, never shortened: PEXPIREAT GT),
-- so a stale value still reads OUTSIDE_MAX_AGE, as with LMDB, for at least
-- one ttl before the entity reads NOT_FOUND; a view without one makes the
-- hash persistent.
--
-- URL options after "?": timeout_ms, retry_ms (the client's, see
-- tycho.core.redis; retry_ms is what a write may wait out a failover),
-- read_ms (what a read may: 0 by default, so a read of a master that is
-- down or failing over answers UNAVAILABLE at once instead of holding a
-- serving worker for seconds; with 0, a read inside a serving worker's
-- request waits for its replies without blocking the worker: redis.read),
-- ns (the key prefix, for homes sharing a
-- cluster), wait_ms and claim_idle_ms (the push stream's,
-- features/push_stream.lua).
local redis = require "tycho.core.redis"
local layout = require "tycho.features.layout"
local errors = require "tycho.util.errors"

local M = {}
local Backend = {}
Backend.__index = Backend

local FN = "tycho_online_put"

-- The library, loaded with FUNCTION LOAD REPLACE. Event times compare as
-- numbers decoded from the 8 little-endian bytes (exact below 2^53 µs).
local LIBRARY = [[#!lua name=tycho_online
local function etime(s)
  local b1, b2, b3, b4, b5, b6, b7, b8 = string.byte(s, 1, 8)
  local n = ((((((b8 * 256 + b7) * 256 + b6) * 256 + b5) * 256 + b4) * 256 + b3) * 256 + b2) * 256 + b1
  if b8 >= 128 then n = n - 18446744073709551616 end
  return n
end
redis.register_function('tycho_online_put', function(keys, args)
  local key = keys[1]
  local before = redis.call('PTTL', key)
  local out, expire_at, persist = {}, 0, false
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for i = 1, #args, 3 do
    local field, value, ttl_ms = args[i], args[i + 1], tonumber(args[i + 2])
    local old = redis.call('HGET', key, field)
    local put = true
    if old and #old >= 8 and (old == value or etime(old) > etime(value)) then put = false end
    if put then
      redis.call('HSET', key, field, value)
      if ttl_ms > 0 then
        local at = math.max(math.floor(etime(value) / 1000), now_ms) + 2 * ttl_ms
        if at > expire_at then expire_at = at end
      else
        persist = true
      end
    end
    out[#out + 1] = put and 1 or 0
  end
  if persist then
    redis.call('PERSIST', key)
  elseif expire_at > 0 then
    if before == -2 then
      redis.call('PEXPIREAT', key, expire_at)
    elseif before >= 0 then
      redis.call('PEXPIREAT', key, expire_at, 'GT')
    end
  end
  return out
end)
]]

-- Connected backends by URL: one client per process and cluster.
local connected = {}

local NUMBERS = { timeout_ms = true, retry_ms = true, read_ms = true, wait_ms = true, claim_idle_ms = true }

--- A cluster URL's seeds and options { timeout_ms, retry_ms, read_ms, ns,
-- wait_ms, claim_idle_ms }: what every backend on the cluster reads (the published
-- models' too); or nil, message, "invalid".
function M.parse_url(url)
  local seeds, query = url:match("^([^?]*)%??(.*)$")
  local opts = { ns = "tycho:" }
  for k, val in query:gmatch("([%w_]+)=([^&]*)") do
    if NUMBERS[k] then
      opts[k] = tonumber(val)
      if not opts[k] then return errors.fail("invalid", "cluster URL: " .. k .. " must be a number") end
    elseif k == "ns" then
      opts.ns = val
    else
      return errors.fail("invalid", "cluster URL: unknown option '" .. k
        .. "' (timeout_ms, retry_ms, read_ms, ns, wait_ms, claim_idle_ms)")
    end
  end
  -- WAIT blocks the connection: a reply later than the client's read
  -- timeout would count as a lost node, and the retried WAIT, on a new
  -- connection, would confirm nothing.
  if opts.wait_ms and opts.wait_ms >= (opts.timeout_ms or 1000) then
    return errors.fail("invalid", "cluster URL: wait_ms must be below timeout_ms (" .. (opts.timeout_ms or 1000) .. ")")
  end
  return seeds, opts
end

local function load_library(cl)
  local b = cl:batch()
  for _, slot in ipairs(cl:master_slots()) do b:add(slot, "FUNCTION", "LOAD", "REPLACE", LIBRARY) end
  local ok, e, code = cl:exec(b)
  if not ok then return nil, e, code end
  for i = 1, b:count() do
    local r = b:value(i)
    if type(r) == "table" then return errors.fail("unavailable", "FUNCTION LOAD: " .. tostring(r.err)) end
  end
  return true
end

--- The backend for a cluster URL ("redis://h:p[,h:p...][?timeout_ms=&retry_ms=&ns=]"),
-- connected once per process and URL: its slot map loaded and the write
-- function on every master. nil, message, code ("invalid" for a bad URL,
-- "unavailable" when the cluster does not answer).
function M.connect(url)
  if connected[url] then return connected[url] end
  local seeds, opts, pcode = M.parse_url(url)
  if not seeds then return nil, opts, pcode end
  local cl, e, code = redis.open(seeds, opts)
  if not cl then return errors.fail(code, "cluster " .. seeds .. ": " .. e) end
  local ok, le, lcode = load_library(cl)
  if not ok then return nil, le, lcode end
  local b = setmetatable({ cl = cl, url = url, ns = opts.ns, opts = opts, read_ms = opts.read_ms or 0,
                           wb = cl:batch(), rb = cl:batch(), args = {}, fields = {} }, Backend)
  b.wb.kept, b.rb.kept = true, true  -- never given to the pool
  connected[url] = b
  return b
end

--- Forgets the process's backend for url (closing its connections), so the
-- next connect opens afresh.
function M.disconnect(url)
  local b = connected[url]
  if b then
    b.cl:close()
    connected[url] = nil
  end
end

--- The hash key of an entity of view v.
function Backend:key(v, entity)
  return self.ns .. "{" .. v.entity .. ":" .. entity .. "}"
end

local function field_of(self, v)
  local f = self.fields[v.id]
  if not f then
    f = tostring(v.id)
    self.fields[v.id] = f
  end
  return f
end

local function is_missing_function(r)
  return type(r) == "table" and r.err and r.err:find("not found", 1, true) ~= nil
end

-- Sends the write batch b (cl:write: inside a serving request it waits on
-- the loop, refused at once by a node that cannot take it); reloads the
-- library once when a master lacks it (a node added or restarted empty)
-- and sends again: the writes are idempotent. true, or nil, message, code.
local function send_writes(self, b)
  local cl = self.cl
  local ok, e, code = cl:write(b)
  if not ok then return errors.fail(code, "online store (redis): " .. e) end
  for i = 1, b:count() do
    if is_missing_function(b:value(i)) then
      local lok, le, lcode = load_library(cl)
      if not lok then return nil, le, lcode end
      ok, e, code = cl:write(b)
      if not ok then return errors.fail(code, "online store (redis): " .. e) end
      break
    end
  end
  return true
end

--- Writes rows = { {entity, t, encoded}, ... } of view v, newer-wins, in
-- one pipelined batch (one FCALL per entity and chunk). Returns a list of
-- booleans (written, or kept because the stored value is as new), or nil,
-- message, code when the cluster could not acknowledge them all.
function Backend:put_many(v, rows)
  local cl, args = self.cl, self.args
  local b = cl:batch_for(self.wb)
  local field, ttl_ms = field_of(self, v), tostring(math.floor((v.ttl or 0) * 1000))
  -- Rows of one entity go in one call, in their order (so the newest wins
  -- inside the call too); at most 300 per call.
  local by_key, order = {}, {}
  for i, r in ipairs(rows) do
    local key = self:key(v, tostring(r[1]))
    local list = by_key[key]
    if not list or #list >= 300 then
      list = { key = key }
      by_key[key] = list
      order[#order + 1] = list
    end
    list[#list + 1] = i
  end
  for _, list in ipairs(order) do
    args[1], args[2], args[3], args[4] = "FCALL", FN, "1", list.key
    local n = 4
    for _, i in ipairs(list) do
      local r = rows[i]
      args[n + 1], args[n + 2], args[n + 3] = field, layout.pack_time(r[2]) .. r[3], ttl_ms
      n = n + 3
    end
    b:add_list(cl:slot(list.key), args, n)
  end
  local ok, e, code = send_writes(self, b)
  if not ok then
    self.cl:release(b)
    return nil, e, code
  end
  local out = {}
  for c, list in ipairs(order) do
    local r = b:value(c)
    if type(r) ~= "table" or r.err then
      self.cl:release(b)
      return errors.fail("unavailable", "online store (redis): " .. tostring(type(r) == "table" and r.err or r))
    end
    for j, i in ipairs(list) do out[i] = r[j] == 1 end
  end
  self.cl:release(b)
  return out
end

--- One row's newer-wins write (as put_many): true when it was written,
-- false when the stored value was as new; raises (errors.raise) when the
-- cluster cannot acknowledge it, so the caller's transaction rolls back.
function Backend:put(v, entity, t, encoded)
  local one = self.one or {}
  self.one = one
  one[1] = one[1] or {}
  one[1][1], one[1][2], one[1][3] = entity, t, encoded
  local out, e, code = self:put_many(v, one)
  if not out then errors.raise(code or errors.unavailable, e) end
  return out[1]
end

--- The stored online value (time .. row) of an entity, or nil; raises
-- (errors.raise, "unavailable") when the cluster does not answer: a write
-- transaction reads it, which must roll back then.
function Backend:get(v, entity)
  local key = self:key(v, tostring(entity))
  local r, e = self.cl:call(self.cl:slot(key), "HGET", key, field_of(self, v))
  if r == nil and e then errors.raise(errors.unavailable, "online store (redis): " .. e) end
  if type(r) == "table" then errors.raise(errors.unavailable, "online store (redis): " .. tostring(r.err)) end
  return r
end


--- Entity's online value of view v as a pointer to its bytes and the batch
-- holding them (valid until released: cl:release), or nil when it has
-- none; nil, "unavailable" when its node did not answer within read_ms.
function Backend:get_ptr(v, entity)
  local b = self.cl:batch_for(self.rb, self.read_ms)
  local key = self:key(v, entity)
  b:add(self.cl:slot(key), "HGET", key, field_of(self, v))
  self.cl:read(b, self.read_ms)
  local it = b:items(1)
  if it and it[0].type == redis.STRING and it[0].len >= 10 then return it[0].str, nil, b end
  self.cl:release(b)
  if not it or it[0].type == redis.UNAVAILABLE then return nil, errors.unavailable end
  return nil
end

--- Reads, for each entity key of ks[1..n], the fields of views (a list of
-- views of one entity) in one pipelined batch (one HMGET per entity).
-- Returns the batch, whose command i holds entity i's reply: items(i)
-- gives an ARRAY item then one STRING or NIL item per view, in order.
-- Pointers stay valid until the batch is released (cl:release).
-- Commands the cluster did not answer within read_ms are UNAVAILABLE items
-- (or have none); the second result is then the message.
function Backend:read_rows(views, ks, n)
  local cl, args = self.cl, self.args
  local b = self.cl:batch_for(self.rb, self.read_ms)
  local v1 = views[1]
  local nv = #views
  args[1] = "HMGET"
  for j = 1, nv do args[2 + j] = field_of(self, views[j]) end
  for i = 1, n do
    local key = self:key(v1, tostring(ks[i]))
    args[2] = key
    b:add_list(cl:slot(key), args, nv + 2)
  end
  local ok, e = cl:read(b, self.read_ms)
  return b, not ok and e or nil
end

M.Backend = Backend

return M
