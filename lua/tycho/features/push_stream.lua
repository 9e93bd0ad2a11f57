--- tycho.features, the push stream on a Redis Cluster: rows pushed to any
-- node, bound for the offline store, reach the node that keeps it.
--
--   local s = fs.stream                          -- set by features.open with a cluster
--   local id = assert(s:append("clicks", s.encode(rows)))   -- XADD, then WAIT 1
--   s:ensure_group("clicks", "offline")          -- XGROUP CREATE ... MKSTREAM
--   local entries = s:claim("clicks", "offline", me, 100)   -- XAUTOCLAIM
--   entries = s:read("clicks", "offline", me, 100)         -- XREADGROUP
--   s:ack("clicks", "offline", ids)              -- XACK, after applying them
--
-- One stream per view, `<ns>push:{<view>}`: a push is one entry (XADD),
-- so it is acknowledged by one node after one WAIT, and a consumer drains
-- a view by name (fs:drain_stream, `tycho features drain VIEW`). Fixed
-- partition streams would spread a hot view over the masters, but would
-- cost every push one XADD and one WAIT per partition it touches.
--
-- An entry holds a push's validated rows, { entity, time µs, values,
-- omitted features } each, in LuaJIT's string.buffer encoding (as the
-- prediction log's entries): numbers travel exactly, which JSON at 14
-- digits would not. PII travels as validated (tokenized unless the view
-- keeps it in clear).
--
-- The consumer (features/stream.lua) applies entries, then acknowledges
-- them: a consumer that dies between the two leaves them pending, and
-- another one (or itself, restarted under a new name) claims them once
-- they have been idle claim_idle_ms. Entries may thus apply twice, and do
-- so harmlessly: a row is keyed by view, entity and event time, and an
-- identical row counts as unchanged.
local buffer = require "string.buffer"
local uv = require "luv"
local errors = require "tycho.util.errors"

local M = {}
local Stream = {}
Stream.__index = Stream

--- The consumer group of the offline store (one per home that keeps one).
M.GROUP = "offline"

local WAIT_MS, CLAIM_IDLE_MS = 500, 30000

--- The stream of a cluster's online backend (features/online_redis.lua),
-- sharing its client. wait_ms (500) and claim_idle_ms (30000) come from
-- the cluster URL. opts (for other streams on the same machinery, such as
-- the prediction log's, monitor/log_stream.lua): prefix of the keys
-- ("push"), maxlen (append trims the stream to about that many entries,
-- XADD MAXLEN ~), budget_ms (what append may wait out a failover: the
-- client's retry_ms by default).
function M.new(backend, opts)
  local o = backend.opts or {}
  opts = opts or {}
  local batch = backend.cl:batch()
  batch.kept = true  -- the stream's own, for calls that block: never in the client's pool
  return setmetatable({ cl = backend.cl, ns = backend.ns, wait_ms = o.wait_ms or WAIT_MS,
                        claim_idle_ms = o.claim_idle_ms or CLAIM_IDLE_MS, batch = batch,
                        prefix = opts.prefix or "push", maxlen = opts.maxlen, budget_ms = opts.budget_ms,
                        consumer = uv.os_gethostname() .. ":" .. uv.os_getpid() }, Stream)
end

--- The stream key of a view.
function Stream:key(view) return self.ns .. self.prefix .. ":{" .. view .. "}" end

--- An entry's bytes for rows { {entity, t, values, omitted}, ... }.
function M.encode(rows) return buffer.encode(rows) end
Stream.encode = M.encode

-- The client's redirect and reconnection counters: when they move during
-- an XADD and its WAIT, the WAIT may have gone to another connection than
-- the XADD, and confirms nothing.
local function moves(cl)
  local s = cl:stats()
  return s.moved + s.ask + s.reconnects + s.retries
end

local function unconfirmed(key, why)
  return errors.fail("unavailable", "push stream " .. key .. ": " .. why .. "; any online write stands, and the rows"
    .. " may be sent again (applying them twice changes nothing)")
end

--- Appends an entry (M.encode's bytes) to view's stream, then waits up to
-- wait_ms for a replica to hold it (WAIT 1). The entry's id, or nil,
-- message, "unavailable" when the cluster did not take it or no replica
-- confirmed it in time.
--
-- Inside a serving request that may wait (cl:write) the two go out on the
-- client's write connections, in order on one, and the request waits;
-- the XADD is never sent again there, so the WAIT that follows it on the
-- same connection confirms it. Elsewhere the client may send a command
-- again after a failover, and a moved node makes the WAIT confirm nothing.
function Stream:append(view, entry)
  local cl, key = self.cl, self:key(view)
  local waits = cl:waits()
  local b = cl:batch_for(self.batch)
  local slot, before = cl:slot(key), moves(cl)
  if self.maxlen then b:add(slot, "XADD", key, "MAXLEN", "~", self.maxlen, "*", "rows", entry)
  else b:add(slot, "XADD", key, "*", "rows", entry) end
  b:add(slot, "WAIT", "1", self.wait_ms)
  local ok, e
  if waits then ok, e = cl:write(b) else ok, e = cl:exec(b, self.budget_ms) end
  local id, replicas = b:value(1), b:value(2)
  cl:release(b)
  if not ok then return unconfirmed(key, e) end
  if type(id) ~= "string" then return unconfirmed(key, "XADD refused: " .. tostring(id and id.err)) end
  if not waits and moves(cl) ~= before then
    return unconfirmed(key, "its node changed during the push (failover or moved slot)")
  end
  if type(replicas) ~= "number" or replicas < 1 then
    return unconfirmed(key, "no replica confirmed entry " .. id .. " within " .. self.wait_ms .. " ms (WAIT 1)")
  end
  return id
end

-- A reply that is no answer (the cluster gave none, or refused), as a failure.
local function failed(what, r, e, code)
  if r == nil and e then return errors.fail(code or "unavailable", what .. ": " .. e) end
  return errors.fail("unavailable", what .. ": " .. tostring(type(r) == "table" and r.err or r))
end

--- Creates view's consumer group (reading from the stream's first entry,
-- and the stream itself when it does not exist yet); an existing group is
-- fine. true, or nil, message, code.
function Stream:ensure_group(view, group)
  local key = self:key(view)
  local r, e, code = self.cl:call(self.cl:slot(key), "XGROUP", "CREATE", key, group, "0", "MKSTREAM")
  if r == "OK" or (type(r) == "table" and r.err and r.err:sub(1, 9) == "BUSYGROUP") then return true end
  return failed("XGROUP CREATE " .. key, r, e, code)
end

-- Entries of a reply, { {id, {field, value, ...}}, ... }, as { id =, rows
-- = bytes } (rows nil for an entry without the field).
local function entries_of(list)
  local out = {}
  for _, en in ipairs(type(list) == "table" and list or {}) do
    if type(en) == "table" and type(en[1]) == "string" then
      local fields, rows = en[2], nil
      for i = 1, type(fields) == "table" and #fields or 0, 2 do
        if fields[i] == "rows" then rows = fields[i + 1] end
      end
      out[#out + 1] = { id = en[1], rows = rows }
    end
  end
  return out
end

--- Up to count entries of view's stream never delivered to the group,
-- now delivered to consumer (XREADGROUP): a list of { id, rows }, or nil,
-- message, code.
function Stream:read(view, group, consumer, count)
  local key = self:key(view)
  local r, e, code = self.cl:call(self.cl:slot(key), "XREADGROUP", "GROUP", group, consumer, "COUNT", count,
                                  "STREAMS", key, ">")
  if r == nil and not e then return {} end  -- nothing new
  if type(r) ~= "table" or r.err then return failed("XREADGROUP " .. key, r, e, code) end
  return entries_of(r[1] and r[1][2])
end

--- Up to count entries delivered to some consumer of the group but not
-- acknowledged for claim_idle_ms (one that died), now consumer's
-- (XAUTOCLAIM): a list of { id, rows }, or nil, message, code.
function Stream:claim(view, group, consumer, count)
  local key = self:key(view)
  local r, e, code = self.cl:call(self.cl:slot(key), "XAUTOCLAIM", key, group, consumer, self.claim_idle_ms, "0-0",
                                  "COUNT", count)
  if type(r) ~= "table" or r.err then return failed("XAUTOCLAIM " .. key, r, e, code) end
  return entries_of(r[2])
end

--- Acknowledges entries (ids, a list) of the group: they are done. The
-- count acknowledged, or nil, message, code.
function Stream:ack(view, group, ids)
  if #ids == 0 then return 0 end
  local key = self:key(view)
  local args = { "XACK", key, group }
  for i, id in ipairs(ids) do args[3 + i] = id end
  local b = self.batch
  b:clear()
  b:add_list(self.cl:slot(key), args)
  local ok, e, code = self.cl:exec(b)
  local r = b:value(1)
  if not ok or type(r) ~= "number" then return failed("XACK " .. key, r, e, code) end
  return r
end

-- Stream ids "ms-seq" compared as numbers.
local function id_parts(id)
  local ms, seq = id:match("^(%d+)%-(%d+)$")
  return tonumber(ms) or 0, tonumber(seq) or 0
end

local function id_before(a, b)
  local am, as = id_parts(a)
  local bm, bs = id_parts(b)
  return am < bm or (am == bm and as < bs)
end

-- The first id a group still needs: its oldest pending entry's, or the one
-- after the last it was delivered.
local function group_floor(self, key, g)
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if (info.pending or 0) > 0 then
    local p = self.cl:call(self.cl:slot(key), "XPENDING", key, info.name)
    return type(p) == "table" and type(p[2]) == "string" and p[2] or "0-0"
  end
  local ms, seq = id_parts(info["last-delivered-id"] or "0-0")
  return ms .. "-" .. (seq + 1)
end

--- Removes the entries of view's stream that every group has acknowledged
-- (XTRIM MINID), so the stream holds only what some consumer still needs.
-- Returns how many it removed, or nil, message, code.
function Stream:trim(view)
  local key = self:key(view)
  local slot = self.cl:slot(key)
  local groups, e, code = self.cl:call(slot, "XINFO", "GROUPS", key)
  if type(groups) ~= "table" or groups.err then return failed("XINFO GROUPS " .. key, groups, e, code) end
  local floor
  for _, g in ipairs(groups) do
    local f = group_floor(self, key, g)
    if not floor or id_before(f, floor) then floor = f end
  end
  if not floor then return 0 end
  local r, te, tcode = self.cl:call(slot, "XTRIM", key, "MINID", floor)
  if type(r) ~= "number" then return failed("XTRIM " .. key, r, te, tcode) end
  return r
end

--- Decodes an entry's rows; nil, why, "invalid" when they cannot be read
-- (an entry written by something else than Tycho).
function M.decode(bytes)
  if type(bytes) ~= "string" then return errors.fail("invalid", "the entry has no rows field") end
  local ok, rows = pcall(buffer.decode, bytes)
  if not ok or type(rows) ~= "table" then return errors.fail("invalid", "its rows cannot be decoded: " .. tostring(rows)) end
  return rows
end

return M
