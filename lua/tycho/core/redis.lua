--- The face of core/io/tz_redis: a synchronous Redis Cluster client (slot
-- map, MOVED / ASK, reconnection after failover, commands pipelined by node).
--
--   local redis = require "tycho.core.redis"
--   local cl = assert(redis.open("redis://127.0.0.1:7000,127.0.0.1:7001"))
--   local b = cl:batch()
--   b:add(cl:slot("{u:1}"), "HSET", "{u:1}", "f", "v")
--   b:add(cl:slot("{u:2}"), "HGET", "{u:2}", "f")
--   assert(cl:exec(b))                 -- one round trip per node
--   b:value(2)                         --> "v" or nil
--
-- A command's reply as b:value(i): a string, a number, nil, a list, or
-- { err = "message" } for the server's error reply (or { err = ...,
-- unavailable = true } when the cluster gave no reply within retry_ms).
--
-- cl:read(b) is a serving path's read: inside a request that may wait
-- (tycho.core.suspend) it goes out on the client's non-blocking
-- connections, watched on the worker's loop through luv, and the request
-- waits while the worker serves others; elsewhere it is cl:exec(b, 0).
local ffi = require "ffi"
local uv = require "luv"
local base = require "tycho.core.base"
local errors = require "tycho.util.errors"
local suspend = require "tycho.core.suspend"

ffi.cdef [[
typedef struct tz_redis tz_redis;
typedef struct tz_redis_batch tz_redis_batch;
typedef struct tz_redis_opts { int timeout_ms; int retry_ms; size_t max_reply; int max_elements; } tz_redis_opts;
typedef struct tz_redis_item { int type; int64_t integer; const char *str; size_t len; } tz_redis_item;
typedef struct tz_redis_stats { int64_t moved, ask, reconnects, refreshes, retries, waited; } tz_redis_stats;
int tz_redis_key_slot(const char *key, size_t len);
int tz_redis_open(const char *seeds, const tz_redis_opts *opts, tz_redis **out, tz_err *err);
void tz_redis_close(tz_redis *r);
int tz_redis_refresh(tz_redis *r, tz_err *err);
int tz_redis_slot_node(const tz_redis *r, int slot, char *buf, size_t cap);
int tz_redis_master_slots(const tz_redis *r, int *slots, int max);
void tz_redis_get_stats(const tz_redis *r, tz_redis_stats *out);
tz_redis_batch *tz_redis_batch_new(void);
void tz_redis_batch_free(tz_redis_batch *b);
void tz_redis_batch_clear(tz_redis_batch *b);
int tz_redis_batch_count(const tz_redis_batch *b);
int tz_redis_batch_add(tz_redis_batch *b, int slot, int argc, const char **argv, const size_t *lens, tz_err *err);
int tz_redis_exec(tz_redis *r, tz_redis_batch *b, tz_err *err);
int tz_redis_exec_within(tz_redis *r, tz_redis_batch *b, int budget_ms, tz_err *err);
int tz_redis_batch_reply(const tz_redis_batch *b, int i, const tz_redis_item **items, int *n);
typedef struct tz_redis_watch { int fd; int want; } tz_redis_watch;
int tz_redis_async_send(tz_redis *r, tz_redis_batch *b, int lane, int ticket, tz_err *err);
int tz_redis_async_events(tz_redis *r, tz_redis_watch *out, int max);
void tz_redis_async_io(tz_redis *r, int fd, int readable, int writable);
int tz_redis_async_tick(tz_redis *r);
int tz_redis_async_take(tz_redis *r, int *tickets, int max);
void tz_redis_async_release(tz_redis *r, int fd);
]]

local C = ffi.C
local err = base.err

local M = {
  NIL = 0, STRING = 1, INTEGER = 2, STATUS = 3, ERROR = 4, ARRAY = 5, UNAVAILABLE = 6,
}

-- tz codes -> tycho.util.errors codes.
local CODES = { [base.EIO] = errors.unavailable, [base.EINVAL] = errors.invalid, [base.ETOOBIG] = errors.too_large,
                [base.ENOMEM] = errors.unavailable, [base.ENOTFOUND] = errors.not_found }

local function failure(rc)
  return nil, ffi.string(err.msg), CODES[rc] or errors.unavailable
end

local Cluster = {}
Cluster.__index = Cluster
local Batch = {}
Batch.__index = Batch

local handle_out = ffi.new("tz_redis*[1]")
local name_buf = ffi.new("char[300]")
local MAX_ARGS = 1024
local argv, lens = ffi.new("const char*[?]", MAX_ARGS), ffi.new("size_t[?]", MAX_ARGS)
local anchor = {}  -- Batch:add's arguments as a list
local items_out, n_out = ffi.new("const tz_redis_item*[1]"), ffi.new("int[1]")

--- The hash slot of a key (CRC16 of the key or of its {hash tag}).
function M.slot(key) return C.tz_redis_key_slot(key, #key) end

--- Connects to the cluster of seeds ("redis://h:p[,h:p...]") and loads its
-- slot map. opts: timeout_ms (connect and each read, 1000), retry_ms (what
-- one exec may spend on redirects, reconnection and failover, 5000),
-- max_reply (bytes, 64 MiB), max_elements (of one array, 2^20). Returns the
-- client, or nil, message, code ("invalid" for a bad list, "unavailable"
-- when no seed answers).
function M.open(seeds, opts)
  if type(seeds) ~= "string" then error("redis.open: seeds must be a string", 2) end
  opts = opts or {}
  local o = ffi.new("tz_redis_opts", { opts.timeout_ms or 0, opts.retry_ms or 0, opts.max_reply or 0,
                                      opts.max_elements or 0 })
  local rc = C.tz_redis_open(seeds, o, handle_out, err)
  if rc ~= 0 then return failure(rc) end
  return setmetatable({ handle = ffi.gc(handle_out[0], C.tz_redis_close), seeds = seeds,
                        retry_ms = opts.retry_ms, pool = {} }, Cluster)
end

--- The hash slot of a key (as redis.slot).
function Cluster.slot(_, key) return C.tz_redis_key_slot(key, #key) end

--- A new, empty batch of commands (reusable: b:clear()).
function Cluster.batch(_)
  local h = C.tz_redis_batch_new()
  if h == nil then error("redis: out of memory", 2) end
  return setmetatable({ handle = ffi.gc(h, C.tz_redis_batch_free) }, Batch)
end

--- Sends the batch's commands (grouped by node, one round trip each) and
-- reads their replies. true, or nil, message, code when some command got no
-- reply within retry_ms ("unavailable") or a reply was too large
-- ("too_large"); replies that did arrive are readable either way.
-- budget_ms replaces retry_ms for this call: 0 waits for no node (a
-- serving path's read: what cannot be answered now is UNAVAILABLE at once,
-- redirects still followed).
function Cluster:exec(b, budget_ms)
  local rc
  if budget_ms then rc = C.tz_redis_exec_within(self.handle, b.handle, budget_ms, err)
  else rc = C.tz_redis_exec(self.handle, b.handle, err) end
  if rc ~= 0 then return failure(rc) end
  return true
end

--- One command, sent and answered: its reply (see b:value), or nil,
-- message, code when the cluster gave none. slot: the key's, or -1.
function Cluster:call(slot, ...)
  local b = self.scratch
  if not b then
    b = self:batch()
    self.scratch = b
  end
  b:clear()
  b:add(slot, ...)
  local ok, e, code = self:exec(b)
  if not ok then return nil, e, code end
  return b:value(1)
end

-- ---- reads that wait without blocking the loop ----------------------------

local TICK_MS = 25   -- how often reads in flight are checked against timeout_ms
local WANTS = { [1] = "r", [2] = "w", [3] = "rw" }
local watch_buf, ticket_buf = ffi.new("tz_redis_watch[32]"), ffi.new("int[64]")
local last_ticket = 0

local function report(e) io.stderr:write("tycho: redis: ", tostring(e), "\n") end

-- Applies the client's changes of what to watch to luv polls, one per
-- socket; a socket the client is done with is unwatched, then released.
local function sync_watches(self)
  local pump, h = self.pump, self.handle
  repeat
    local n = C.tz_redis_async_events(h, watch_buf, 32)
    for i = 0, n - 1 do
      local fd, want = watch_buf[i].fd, watch_buf[i].want
      local poll = pump.polls[fd]
      if want < 0 then
        if poll then
          poll:stop()
          poll:close()
          pump.polls[fd] = nil
        end
        C.tz_redis_async_release(h, fd)
      elseif want == 0 then
        if poll then poll:stop() end
      else
        if not poll then
          poll = uv.new_socket_poll(fd)
          poll:unref()  -- the connections the reads wait on keep a draining server up, not these
          pump.polls[fd] = poll
        end
        poll:start(WANTS[want], pump.on_io[fd] or pump.callback(fd))
      end
    end
  until n < 32
end

-- Wakes the requests whose reads are settled, then stops the timer when
-- nothing is in flight.
local function wake(self)
  repeat
    local n = C.tz_redis_async_take(self.handle, ticket_buf, 64)
    local waiting = self.pump.waiting
    for i = 0, n - 1 do
      local co = waiting[ticket_buf[i]]
      waiting[ticket_buf[i]] = nil
      if co then
        local ok, e = pcall(suspend.resume, co)
        if not ok then report(e) end
      end
    end
  until n < 64
  sync_watches(self)
end

local function start_pump(self)
  -- waiting: ticket -> the request's coroutine.
  local pump = { polls = {}, on_io = {}, waiting = {}, timer = uv.new_timer(), ticking = false }
  pump.timer:unref()
  self.pump = pump
  function pump.callback(fd)
    -- An error (libuv's EBADF for a socket in error: reset, refused) is
    -- handed on as readiness: the client's read then finds the failure and
    -- settles what the connection owed at once.
    local function on_io(e, events)
      if not self.handle then return end
      events = e and "rw" or events or ""
      C.tz_redis_async_io(self.handle, fd, events:find("r", 1, true) and 1 or 0, events:find("w", 1, true) and 1 or 0)
      local ok, werr = pcall(wake, self)
      if not ok then report(werr) end
    end
    pump.on_io[fd] = on_io
    return on_io
  end
  function pump.tick()
    if not self.handle then return end
    if C.tz_redis_async_tick(self.handle) == 0 then
      pump.timer:stop()
      pump.ticking = false
    end
    local ok, werr = pcall(wake, self)
    if not ok then report(werr) end
  end
  return pump
end

local LANE_READS, LANE_WRITES = 0, 1

-- true when every command of b has its reply, else nil, why, "unavailable".
local function settled(b)
  for i = 1, b:count() do
    local it = b:items(i)
    if not it or it[0].type == M.UNAVAILABLE then
      return nil, it and ffi.string(it[0].str, it[0].len) or "no reply from the cluster", errors.unavailable
    end
  end
  return true
end

-- Sends b on the lane's connections and waits, the worker serving others.
local function wait_on(self, b, lane)
  local pump = self.pump or start_pump(self)
  last_ticket = last_ticket < 0x7fffffff and last_ticket + 1 or 1
  local ticket = last_ticket
  local rc = C.tz_redis_async_send(self.handle, b.handle, lane, ticket, err)
  sync_watches(self)
  if rc < 0 then return failure(rc) end
  if rc == 0 then   -- else settled at once: every node down or unknown
    pump.waiting[ticket] = coroutine.running()
    if not pump.ticking then
      pump.ticking = true
      pump.timer:start(TICK_MS, TICK_MS, pump.tick)
    end
    suspend.wait()
  end
  return settled(b)
end

--- Whether a read within budget_ms (0 by default) waits on the loop:
-- inside a request that may wait (tycho.core.suspend), with no budget to
-- wait out a failover in.
function Cluster.waits(_, budget_ms)
  return (budget_ms or 0) == 0 and suspend.can()
end

--- An empty batch for one call: own (a batch its caller keeps for calls
-- that block, marked own.kept) when the call blocks (cl:waits(budget_ms);
-- budget_ms nil for a write), else one of the client's pool: requests
-- that wait at once each hold their own until they give it back.
function Cluster:batch_for(own, budget_ms)
  if not self:waits(budget_ms) then
    own:clear()
    return own
  end
  local pool = self.pool
  local b = pool[#pool]
  if not b then return self:batch() end
  pool[#pool] = nil
  b:clear()
  return b
end

--- Gives back a batch of batch_for once its replies are read.
function Cluster:release(b)
  if not b.kept then self.pool[#self.pool + 1] = b end
end

--- A serving path's read of batch b: what a node cannot answer within
-- budget_ms (0 by default: down, failing over, silent for timeout_ms) is
-- UNAVAILABLE, redirects are followed. When it waits (cl:waits) the
-- request waits for the replies while its worker serves others; else this
-- is cl:exec(b, budget_ms). true, or nil, message, "unavailable" when some
-- command got no reply (the others' replies are readable either way).
function Cluster:read(b, budget_ms)
  if not self:waits(budget_ms) then return self:exec(b, budget_ms or 0) end
  return wait_on(self, b, LANE_READS)
end

-- What a serving worker's blocking write may wait out at most (inside a
-- store transaction, where it cannot wait on the loop): a failover then
-- costs the worker this, not the client's retry_ms, and the write is
-- refused for its client to send again.
local SERVING_WRITE_MS = 250

--- A serving path's write: inside a request that may wait, as read, on
-- connections of their own (a WAIT, which holds its connection until a
-- replica answers, never delays a read), and what a node cannot take now
-- is refused at once for the client to send again, not waited out with
-- the worker held; elsewhere cl:exec(b), within the client's retry_ms
-- (at most 250 ms in a serving worker). Same returns as exec.
function Cluster:write(b)
  if self:waits() then return wait_on(self, b, LANE_WRITES) end
  if suspend.enabled then return self:exec(b, math.min(self.retry_ms or SERVING_WRITE_MS, SERVING_WRITE_MS)) end
  return self:exec(b)
end

--- Asks the cluster for its slot map again. true, or nil, message, code.
function Cluster:refresh()
  local rc = C.tz_redis_refresh(self.handle, err)
  if rc ~= 0 then return failure(rc) end
  return true
end

--- "host:port" of the master serving a slot in the client's map, or nil.
function Cluster:node_of(slot)
  if C.tz_redis_slot_node(self.handle, slot, name_buf, 300) ~= 0 then return nil end
  return ffi.string(name_buf)
end

--- One slot of each master in the map (to reach every master).
function Cluster:master_slots()
  local buf = ffi.new("int[1024]")
  local n = C.tz_redis_master_slots(self.handle, buf, 1024)
  local out = {}
  for i = 0, n - 1 do out[#out + 1] = buf[i] end
  return out
end

--- Counters since open: moved, ask, reconnects, refreshes, retries, waited
-- (reads sent by cl:read to wait on the loop).
function Cluster:stats()
  local s = ffi.new("tz_redis_stats")
  C.tz_redis_get_stats(self.handle, s)
  return { moved = tonumber(s.moved), ask = tonumber(s.ask), reconnects = tonumber(s.reconnects),
           refreshes = tonumber(s.refreshes), retries = tonumber(s.retries),
           waited = tonumber(s.waited) }
end

--- Closes the connections; the client is unusable afterwards.
function Cluster:close()
  local pump = self.pump
  if pump then
    -- Unwatched before the client closes the sockets.
    for fd, poll in pairs(pump.polls) do
      poll:stop()
      poll:close()
      pump.polls[fd] = nil
    end
    pump.timer:stop()
    pump.timer:close()
    self.pump = nil
  end
  if self.handle then
    C.tz_redis_close(ffi.gc(self.handle, nil))
    self.handle = nil
  end
  -- Requests still waiting go on with no reply: their commands read as
  -- unanswered, which callers take as unavailable.
  for _, co in pairs(pump and pump.waiting or {}) do
    local ok, e = pcall(suspend.resume, co)
    if not ok then report(e) end
  end
end

--- Appends a command for slot (cl:slot(key), or -1 for any node); the
-- arguments are strings or numbers. Returns its index (1-based).
function Batch:add(slot, ...)
  local n = select("#", ...)
  for i = 1, n do anchor[i] = select(i, ...) end
  return self:add_list(slot, anchor, n)
end

--- Appends a command from a list of arguments (as add); numbers in args
-- are replaced by their text, which argv points into until the call copies it.
function Batch:add_list(slot, args, n)
  n = n or #args
  if n > MAX_ARGS then error("redis: more than " .. MAX_ARGS .. " arguments", 2) end
  for i = 1, n do
    local a = args[i]
    if type(a) ~= "string" then a = tostring(a) end
    args[i] = a
    argv[i - 1], lens[i - 1] = a, #a
  end
  local rc = C.tz_redis_batch_add(self.handle, slot, n, argv, lens, err)
  if rc < 0 then error("redis: " .. ffi.string(err.msg), 2) end
  return rc + 1
end

--- Empties the batch, keeping its memory.
function Batch:clear() C.tz_redis_batch_clear(self.handle) end

--- Number of commands in the batch.
function Batch:count() return C.tz_redis_batch_count(self.handle) end

--- Command i's flattened reply items (a tz_redis_item pointer, valid until
-- the batch is cleared or executed again) and their count; nil when it has
-- no reply.
function Batch:items(i)
  if C.tz_redis_batch_reply(self.handle, i - 1, items_out, n_out) ~= 0 then return nil end
  return items_out[0], n_out[0]
end

local function convert(it, k)
  local item = it[k]
  local t = item.type
  if t == M.STRING or t == M.STATUS then return ffi.string(item.str, item.len), k + 1 end
  if t == M.INTEGER then return tonumber(item.integer), k + 1 end
  if t == M.ERROR then return { err = ffi.string(item.str, item.len) }, k + 1 end
  if t == M.UNAVAILABLE then return { err = ffi.string(item.str, item.len), unavailable = true }, k + 1 end
  if t == M.ARRAY then
    local out, n = {}, tonumber(item.integer)
    k = k + 1
    for j = 1, n do out[j], k = convert(it, k) end
    return out, k
  end
  return nil, k + 1
end

--- Command i's reply as a Lua value (see the module's comment); nil when
-- it is nil or there is none.
function Batch:value(i)
  local it = self:items(i)
  if not it then return nil end
  return (convert(it, 0))
end

return M
