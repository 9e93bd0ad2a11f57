--- The prediction log of a serving worker: every prediction's id, model,
-- version, output and latency (inputs for a sample), buffered and written
-- in batches off the request path together with their rollups per second,
-- minute and hour (monitor/rollup.lua), with the group commit that
-- outcomes and events join (prediction_log), and the retention that bounds
-- it (prune). batch() is the layout on its own, for whatever writes
-- entries in bulk (tests/lua/fixtures/prediction_history.lua).
local entries = require "tycho.monitor.entry"
local buffer_mod = require "string.buffer"
local ffi = require "ffi"
local keys = require "tycho.util.keys"
local rollup = require "tycho.monitor.rollup"
local timeutil = require "tycho.util.timeutil"
local uv = require "luv"
local store_mod = require "tycho.core.store"

local M = {}

--- Deletes up to `limit` (10000) prediction log entries logged before
-- `before` (µs), with their outcomes; their keys start with the time, so
-- they are the first ones in order. The bound keeps one flush short: a
-- large backlog goes over several flushes. Returns the count.
function M.prune(tx, before, limit)
  local old = {}
  for k, v in tx:scan("predictions", { to = keys.pack("i64", before), limit = limit or 10000 }) do
    old[#old + 1] = { k, v }
  end
  for _, kv in ipairs(old) do
    tx:delete("predictions", kv[1])
    local _, id = keys.unpack("i64 s", kv[1])
    tx:delete("outcomes", id)
  end
  return #old
end

--- A prediction's id: time-ordered and unique across workers (µs, pid,
-- the worker's counter).
local ID_FORMAT = "%016x-%x-%x"
function M.entry_id(now, pid, counter) return ID_FORMAT:format(now, pid, counter) end

local Batch = {}
Batch.__index = Batch

--- A batch of entries written together: add(entry, now, id) stamps
-- entry (id, at = now in µs, role "live" unless set), encodes it and
-- counts it in the batch's rollups, so the caller may reuse the table;
-- write(tx) stores the entries, adds the rollups and returns them (for
-- rollup.prune); append(other) puts other's entries after these; batch.n
-- counts them. Keys and entries stay in two buffers until written, with
-- where each ends in two arrays (the layout the writer behind the loop
-- reads): a Lua string each would be interned, and entries of 128 bytes
-- and more that differ in a few bytes share LuaJIT's sampled string hash,
-- so every new one was compared with the batch's others.
local FLUSH_ROOM = 512
local ends_type = ffi.typeof("uint32_t[?]")

function M.batch()
  -- Room for a flush's worth: growing on the request path left LuaJIT's
  -- traces for the interpreter.
  return setmetatable({ n = 0, cap = FLUSH_ROOM, acc = rollup.new(),
                        bytes = entries.buffer(), ends = ends_type(FLUSH_ROOM),
                        key_bytes = buffer_mod.new(), key_ends = ends_type(FLUSH_ROOM) },
                      Batch)
end

-- Doubles the room for ends (a buffer that grows past a flush's worth
-- while the writer behind the loop is busy).
function Batch:grow(n)
  local cap = self.cap
  while cap < n do cap = cap * 2 end
  local ends, key_ends = ends_type(cap), ends_type(cap)
  ffi.copy(ends, self.ends, self.n * 4)
  ffi.copy(key_ends, self.key_ends, self.n * 4)
  self.cap, self.ends, self.key_ends = cap, ends, key_ends
end

function Batch:add(entry, now, id)
  entry.id, entry.at, entry.role = id, now, entry.role or "live"
  local n = self.n
  if n == self.cap then self:grow(n + 1) end
  entries.encode_into(self.bytes, entry)
  rollup.add(self.acc, entry)
  keys.put_i64_s(self.key_bytes, now, id)
  self.n, self.ends[n], self.key_ends[n] = n + 1, #self.bytes, #self.key_bytes
  return id
end

function Batch:write(tx)
  local vals, ks, start, key_start = self.bytes:ref(), self.key_bytes:ref(), 0, 0
  for i = 0, self.n - 1 do
    local key_end, val_end = self.key_ends[i], self.ends[i]
    tx:append("predictions", ffi.string(ks + key_start, key_end - key_start), vals + start, val_end - start)
    start, key_start = val_end, key_end
  end
  rollup.write(tx, self.acc)
  return self.acc
end

function Batch:append(other)
  local n, base, key_base = self.n, #self.bytes, #self.key_bytes
  if n + other.n > self.cap then self:grow(n + other.n) end
  self.bytes:put(other.bytes)
  self.key_bytes:put(other.key_bytes)
  for i = 0, other.n - 1 do
    self.ends[n + i], self.key_ends[n + i] = base + other.ends[i], key_base + other.key_ends[i]
  end
  self.n = n + other.n
  rollup.merge(self.acc, other.acc)
end

--- Hands the batch to st's writer behind the loop (Store:behind_append);
-- returns the record to keep until Store:behind_done() says it is done
-- (the batch, whose buffers and arrays the writer reads), or nil when the
-- writer has the last batch still.
function Batch:send_behind(st, db)
  local sent = { batch = self }
  if not st:behind_append(db, self.key_bytes:ref(), self.key_ends, self.bytes:ref(), self.ends, self.n, sent) then
    return nil
  end
  return sent
end

--- A logger that buffers predictions and writes them every interval_ms
-- (200) or 500 entries: predictions alone on the store's writer behind the
-- loop (a commit waits for the disk, and requests arriving meanwhile would
-- wait with it), the rest on the loop in one transaction at least every
-- second (their rollups, the prune, the hook's and the group commit's
-- writes, and the predictions of that moment). Every prediction's id, model,
-- version, output and latency are kept; its inputs only for one in
-- sample_every (20) predictions, which is enough for drift statistics and
-- keeps the log small. opts.retain (a duration, default "7d") bounds the
-- log: every flush deletes a bounded batch of entries older than that.
-- opts.store is the home to write (default: this process's home).
-- opts.on_flush(tx) runs in each flush's transaction (experiment
-- exposures, pending feedback); opts.has_work() asks whether an idle log
-- should still flush for it. opts.ship(batch), with a cluster, gets each
-- batch once it is committed (monitor/log_stream.lua).
-- Returns log(entry) -> prediction id, where entry = { model, version,
-- inputs (a table, or a function that makes it, called only when kept),
-- output, ms, role ("live"/"shadow"), error, experiment, variant, unit };
-- flush(), which writes everything on the loop; and commit(write, done),
-- the group commit: write(tx) joins the
-- next flush, at most group_ms (5) away, and done(ok, result)
-- runs once that flush has committed and is on disk (or failed: ok false).
-- Writes that arrive together share one commit and its disk flushes. The group
-- closes early once opts.group_max (32) wait or opts.all_waiting() (the
-- HTTP server: every client waits for an answer) is true.
function M.prediction_log(opts)
  opts = opts or {}
  local buffer, counter = M.batch(), 0
  local waiting = {}  -- flat pairs: write, done
  local retain_us = timeutil.duration(opts.retain or "7d") * 1e6
  local sample_every = opts.sample_every or 20
  local pid = uv.os_getpid()
  local st = opts.store  -- the worker's home; else this process's, opened at the first flush
  local flush_max = 500
  local behind       -- the batch the writer behind the loop has (Batch:send_behind)
  local counted, counted_any = rollup.new(), false  -- rollups of batches written behind, for the loop
  local on_loop_next = false  -- the writer behind failed: the next flush is on the loop
  local behind_broken = false  -- it could not start: every flush is
  local loop_flushed = uv.now()
  local group_ms, group_max = opts.group_ms or 5, opts.group_max or 32
  local group_timer = uv.new_timer()
  group_timer:unref()
  -- Runs the waiting writes in tx, each under its own pcall so that one
  -- that raises fails alone; returns their outcomes as flat pairs. A full
  -- map is raised on: the update grows it and runs everything again. (A
  -- write whose LMDB call failed otherwise leaves the transaction unusable:
  -- its commit fails and every write in it is answered with that failure.)
  local MAP_FULL = store_mod.MAP_FULL
  local function run_waiting(tx, list)
    local out = {}
    for i = 1, #list, 2 do
      out[i], out[i + 1] = pcall(list[i], tx)
      if out[i + 1] == MAP_FULL then error(MAP_FULL, 0) end
    end
    return out
  end
  -- Every waiting write hears back, even if an earlier callback raises:
  -- with its outcome, or with failure `why` when outcomes is nil.
  local function answer(joined, outcomes, why)
    for i = 2, #joined, 2 do
      local dok, derr
      if outcomes then dok, derr = pcall(joined[i], outcomes[i - 1], outcomes[i])
      else dok, derr = pcall(joined[i], false, why) end
      if not dok then io.stderr:write("tycho serve: group commit callback: ", tostring(derr), "\n") end
    end
  end
  -- Checks on the batch written behind the loop (waiting for it when
  -- `wait`): once committed it is shipped and its rollups wait for the next
  -- flush on the loop; one that failed goes back to the buffer for that
  -- flush (which grows a full map). False while it is being written.
  local function settle(wait)
    if not behind then return true end
    local ok, why, code = st:behind_done(wait)
    if ok == false then return false end
    local batch = behind.batch
    behind = nil
    if ok then
      rollup.merge(counted, batch.acc)
      counted_any = true
      if opts.ship then opts.ship(batch) end
    else
      if code ~= "too_large" then io.stderr:write("tycho serve: prediction log: ", tostring(why), "\n") end
      on_loop_next = true
      if buffer.n + batch.n <= 100000 then
        batch:append(buffer)
        buffer = batch
      end
    end
    return true
  end
  -- flush(): one transaction for the buffered entries, the on_flush hook
  -- and the waiting group-commit writes; returns ok, error. An idle log
  -- writes nothing unless opts.has_work() says the hook has work.
  -- The commit flushes the data to disk but leaves its meta page to the
  -- next commit or to the sync that the waiting writes are answered after
  -- (Store:update_lazy): one disk flush on the event loop per commit instead
  -- of two, and none for the sync. Entries in the buffer were never durable,
  -- so a log commit undone by an OS crash loses nothing that was promised.
  local function flush()
    st = st or assert(store_mod.open())
    settle(true)
    local joined = waiting
    if buffer.n == 0 and #joined == 0 and not counted_any and not (opts.has_work and opts.has_work()) then
      return true
    end
    local batch = buffer
    buffer, waiting = M.batch(), {}
    if counted_any then
      rollup.merge(batch.acc, counted)
      counted, counted_any = rollup.new(), false
    end
    on_loop_next, loop_flushed = false, uv.now()
    group_timer:stop()
    local outcomes
    local ok, res = pcall(st.update_lazy, st, function(tx)
      local acc = batch:write(tx)
      local before = timeutil.now() - retain_us
      M.prune(tx, before, 1000)
      rollup.prune(tx, acc, math.floor(before / 1e6), 1000)
      if opts.on_flush then opts.on_flush(tx) end
      if #joined > 0 then outcomes = run_waiting(tx, joined) end
    end)
    if ok and opts.ship then opts.ship(batch) end
    if not ok then
      io.stderr:write("tycho serve: prediction log: ", tostring(res), "\n")
      -- Kept for the next flush (bounded: a store that keeps failing must
      -- not take the worker's memory with it).
      if buffer.n + batch.n <= 100000 then
        batch:append(buffer)
        buffer = batch
      end
    end
    if #joined > 0 then
      if ok then st:sync(function(sok, serr) answer(joined, sok and outcomes, serr) end)
      else answer(joined, nil, res) end
    end
    return ok, res
  end
  -- The buffered predictions go behind the loop, one batch at a time (the
  -- buffer grows meanwhile, up to 50,000 entries), unless the flush on the
  -- loop is due: a second since the last, group-commit writes or the
  -- hook's work waiting, or the writer behind failed.
  local function flush_soon()
    st = st or assert(store_mod.open())
    if on_loop_next or behind_broken or #waiting > 0 or uv.now() - loop_flushed >= 1000 or
       (opts.has_work and opts.has_work()) then
      return flush()
    end
    if not settle(false) then  -- the writer behind has the last batch still
      if buffer.n >= 50000 then flush() end
      return
    end
    if buffer.n == 0 then return end
    local ok, sent = pcall(buffer.send_behind, buffer, st, "predictions")
    if not ok then
      io.stderr:write("tycho serve: prediction log: ", tostring(sent), "; writing on the event loop\n")
      behind_broken = true
    end
    if not (ok and sent) then return flush() end  -- (not sent: another log of this store has the writer)
    behind, buffer = sent, M.batch()
  end
  local timer = uv.new_timer()
  timer:start(opts.interval_ms or 200, opts.interval_ms or 200, flush_soon)
  timer:unref()  -- the log never keeps a draining worker alive
  -- The waiting writes commit group_ms after the first, or on the next
  -- loop turn once group_max wait or once opts.all_waiting() says that
  -- every client waits for one of them (waiting longer would only add
  -- latency): a burst of outcomes is not held back by the window, a lone
  -- outcome is committed at once, and a steady trickle beside predictions
  -- shares commits.
  local function commit(write, done)
    local n = #waiting
    waiting[n + 1], waiting[n + 2] = write, done
    if n + 2 == 2 * group_max or (opts.all_waiting and opts.all_waiting()) then
      group_timer:start(0, 0, flush)
    elseif n == 0 then
      group_timer:start(group_ms, 0, flush)
    end
  end
  local function log(entry)
    counter = counter + 1
    local now = timeutil.now()
    if counter % sample_every ~= 1 % sample_every then entry.inputs = nil
    elseif type(entry.inputs) == "function" then entry.inputs = entry.inputs() end
    -- (M.entry_id's format, inline: a call here started traces of its own)
    local id = buffer:add(entry, now, ID_FORMAT:format(now, pid, counter))
    if buffer.n >= flush_max then flush_soon() end
    return id
  end
  return log, flush, commit
end

return M
