--- The data home's LMDB store, over core/store through the FFI.
--
--   local st = tycho.store.open()                 -- the home of this process
--   st:update(function(tx) tx:put("things", "k", "v") end)
--   st:view(function(tx) return tx:get("things", "k") end)  --> "v"
--   for k, v in tx:scan("things", { prefix = "user:" }) do ... end
--
-- Keys and values are Lua strings (bytes); tycho.keys builds ordered keys.
-- A write transaction that fills the map is rolled back, the map doubled and
-- the function run again, so `update` functions must only touch the store
-- (no other side effects) or be safe to repeat. A change to state outside
-- the store goes in tx:on_commit(fn): it runs once, after the commit.
local ffi = require "ffi"
local internal = require "tycho.internal"

local base = require "tycho.core.base"
local suspend = require "tycho.core.suspend"
require "tycho.core.frame"  -- tz_column, for the as-of join

ffi.cdef [[
typedef struct tz_store tz_store;
typedef struct tz_store_txn tz_store_txn;
typedef struct tz_store_cursor tz_store_cursor;
typedef struct tz_store_val { size_t size; const void *data; } tz_store_val;
typedef struct tz_store_opts { size_t map_size; unsigned max_dbs; int read_only; int random_access; } tz_store_opts;
int  tz_store_open(const char *path, const tz_store_opts *opts, tz_store **out, tz_err *err);
void tz_store_close(tz_store *st);
size_t tz_store_map_size(tz_store *st);
int tz_store_random_access(tz_store *st);
uint64_t tz_store_last_txnid(tz_store *st);
int  tz_store_grow(tz_store *st, tz_err *err);
int  tz_store_reserve(tz_store *st, size_t bytes, tz_err *err);
int  tz_store_txn_db(tz_store_txn *txn, const char *name, int create, unsigned *dbi, tz_err *err);
int  tz_store_db(tz_store *st, const char *name, int create, unsigned *dbi, tz_err *err);
int  tz_store_txn_begin(tz_store *st, int write, tz_store_txn **out, tz_err *err);
int  tz_store_txn_commit(tz_store_txn *txn, tz_err *err);
int  tz_store_txn_commit_lazy(tz_store_txn *txn, tz_err *err);
int  tz_store_fd(tz_store *st);
void tz_store_txn_abort(tz_store_txn *txn);
void tz_store_txn_reset(tz_store_txn *txn);
int  tz_store_txn_renew(tz_store *st, tz_store_txn *txn, tz_err *err);
int  tz_store_behind_append(tz_store *st, unsigned dbi, const void *keys, const uint32_t *key_ends,
                            const void *vals, const uint32_t *val_ends, int n, tz_err *err);
int  tz_store_behind_poll(tz_store *st, int wait, tz_err *err);
int  tz_store_get(tz_store_txn *txn, unsigned dbi, const void *key, size_t klen, tz_store_val *val, tz_err *err);
int tz_store_append(tz_store_txn *txn, unsigned dbi, const void *key, size_t klen,
                    const void *val, size_t vlen, tz_err *err);
int  tz_store_put(tz_store_txn *txn, unsigned dbi, const void *key, size_t klen,
                  const void *val, size_t vlen, int no_overwrite, tz_err *err);
int  tz_store_put_new_many(tz_store_txn *txn, unsigned dbi, const void *prefix, size_t prefix_len,
                           const void *suffix, size_t suffix_len, size_t n,
                           const char *const *keys, const size_t *key_lens,
                           const char *const *vals, const size_t *val_lens,
                           unsigned char *added, tz_err *err);
int  tz_store_del(tz_store_txn *txn, unsigned dbi, const void *key, size_t klen, tz_err *err);
int  tz_store_clear(tz_store_txn *txn, unsigned dbi, tz_err *err);
int  tz_store_count(tz_store_txn *txn, unsigned dbi, uint64_t *count, tz_err *err);
int  tz_store_cursor_open(tz_store_txn *txn, unsigned dbi, tz_store_cursor **out, tz_err *err);
void tz_store_cursor_close(tz_store_cursor *cur);
typedef enum tz_store_move {
  TZ_STORE_FIRST, TZ_STORE_LAST, TZ_STORE_NEXT, TZ_STORE_PREV, TZ_STORE_SEEK
} tz_store_move;
int  tz_store_cursor_move(tz_store_cursor *cur, tz_store_move how, const void *seek, size_t seeklen,
                          tz_store_val *key, tz_store_val *val, tz_err *err);
/* The point-in-time join (core/store/tz_asof.h) reads the store into frame columns. */
typedef struct tz_asof_layout { int n_features; const int *types; const int *wanted; } tz_asof_layout;
typedef struct tz_asof_view {
  uint32_t view_id; int64_t ttl_us; size_t n_versions; const tz_asof_layout *layouts; size_t n_wanted;
} tz_asof_view;
int tz_asof_join_views(tz_store *st, const char *db, size_t n_views, const tz_asof_view *views,
                       const tz_column *const *entities, const int64_t *t, size_t n,
                       tz_column *const *const *outs, tz_err *err);
/* Feature rows landed from columns (core/store/tz_ingest.h). */
typedef struct tz_ingest_feature {
  const tz_column *col; int type; int required; int has_min, has_max; double min, max;
  const double *allowed; size_t n_allowed; const uint8_t *allowed_code; size_t n_codes;
  uint8_t *hll; int64_t nulls, numbers, others; double sum, m2, lo, hi;
  int has_hist; double hist_lo, hist_hi; int64_t hist[16], under, over;
} tz_ingest_feature;
typedef struct tz_ingest_batch {
  uint32_t view_id; uint16_t version; const tz_column *entity; const tz_column *time; size_t n;
  int n_features; tz_ingest_feature *features; int write_offline, write_online;
  unsigned dbi_offline, dbi_online; int hll_p; uint8_t *entity_hll;
  uint8_t *status; int64_t *detail; int64_t *times;
  size_t landed, unchanged, rejected, duplicates, online_updates, replaced;
  int64_t min_time, max_time, last_event;
  unsigned char *old_rows; size_t old_len; size_t *old_at;
} tz_ingest_batch;
int tz_ingest_run(tz_store_txn *txn, tz_ingest_batch *b, tz_err *err);
int tz_ingest_parse_time(const char *s, size_t len, int64_t *out);
int tz_ingest_column_times(const tz_column *c, int64_t *out, size_t *bad);
]]

local C = ffi.C
local M = {}

local OK, ENOTFOUND, EMAPFULL = base.OK, base.ENOTFOUND, base.EMAPFULL
-- What tz_store_put returns for a key that MDB_NOOVERWRITE found present.
local EKEYEXIST = base.EBUSY
local FIRST, LAST, NEXT, PREV, SEEK = C.TZ_STORE_FIRST, C.TZ_STORE_LAST, C.TZ_STORE_NEXT, C.TZ_STORE_PREV,
                                      C.TZ_STORE_SEEK

-- Scratch buffers reused by every call: hot paths allocate nothing.
local err = base.err
local val = ffi.new("tz_store_val[1]")
local key = ffi.new("tz_store_val[1]")
local txn_out = ffi.new("tz_store_txn*[1]")
local cur_out = ffi.new("tz_store_cursor*[1]")
local dbi_out = ffi.new("unsigned[1]")
local count_out = ffi.new("uint64_t[1]")

local MAP_FULL = setmetatable({}, { __tostring = function() return "store map is full" end })
-- What a write raises when the map is full: Store:update grows the map and
-- runs its function again. Code that catches errors inside an update must
-- let this one through.
M.MAP_FULL = MAP_FULL

local failure = base.failure

local function raise(level)
  local msg = failure()
  error("store: " .. msg, level + 1)
end

local Store, Txn = {}, {}
Store.__index, Txn.__index = Store, Txn

-- Point readers' open transactions (below).
local open_readers = {}

-- Point readers leave their transaction open after a read, so the pointer
-- they return stays valid while the caller decodes it (after a reset, a
-- writer in another process may reuse the page). One whose snapshot is
-- still the latest commit stays open across loop turns: renewing it would
-- only take the same snapshot again, at the cost of a reader-slot update
-- and of looking up each named database afresh (a Thompson bandit reads the
-- home on every new unit). Once anything is committed, the next read or
-- the next turn of the event loop resets it, so a snapshot is never pinned
-- for long after it stops being the latest.
local reset_check

local function reset_reader(txn, state)
  if state.open then C.tz_store_txn_reset(txn) state.open = false end
  open_readers[txn] = nil
end

local function reset_stale_readers()
  for txn, state in pairs(open_readers) do
    if state.store:version() ~= state.version then reset_reader(txn, state) end
  end
end

-- Before the map is resized: LMDB wants no transaction of this process
-- open then.
local function reset_open_readers()
  for txn, state in pairs(open_readers) do reset_reader(txn, state) end
end

--- Opens the home directory (default: this process's home), creating it.
-- opts: map_size (bytes, initial), read_only. Returns store or nil, msg, code.
-- LMDB forbids opening one environment twice in a process (the second
-- open's lock file handling breaks the first's reader slots), so every
-- open of a home returns the one shared store, counted.
local open_stores = {}

local function canonical(path)
  return require("luv").fs_realpath(path) or path
end

--- What open() uses when its opts leave it out. random_access: no
-- readahead on the map (tz_store_opts.random_access says why); a serving
-- worker sets it before it opens anything.
M.defaults = { random_access = false }

function M.open(path, opts)
  opts = opts or {}
  path = path or internal.home
  local shared = open_stores[canonical(path)]
  if shared and shared.handle then
    shared.users = shared.users + 1
    return shared
  end
  local random = opts.random_access
  if random == nil then random = M.defaults.random_access end
  local o = ffi.new("tz_store_opts", { map_size = opts.map_size or 0, read_only = opts.read_only and 1 or 0,
                                       random_access = random and 1 or 0 })
  local out = ffi.new("tz_store*[1]")
  if C.tz_store_open(path, o, out, err) ~= OK then return nil, failure() end
  -- Parked read transactions (point readers) must end before the
  -- environment closes, whatever order the collector finalises things in:
  -- the store's finaliser ends them first.
  -- So does what the writer behind the loop reads (Store:behind_append):
  -- kept by the finaliser, it outlives the close, which waits for the writer.
  local parked, behind = {}, {}
  local handle = ffi.gc(out[0], function(h)
    for _, txn in pairs(parked) do
      open_readers[txn] = nil
      C.tz_store_txn_abort(txn)
    end
    C.tz_store_close(h)
    behind.batch = nil
  end)
  local st = setmetatable({ handle = handle, path = path, dbis = {}, writing = false, parked = parked,
                            behind = behind, point_readers = {}, users = 1 }, Store)
  open_stores[canonical(path)] = st
  return st
end

--- The store a module should use given its opts: opts.store when given,
-- else the home opts.home (default: this process's). store or nil, message.
function M.from(opts)
  if opts and opts.store then return opts.store end
  return M.open(opts and opts.home)
end

--- Closes the store now (otherwise the garbage collector does).
--- Releases this use of the store; the environment closes with the last one.
function Store:close()
  if self.writing then error("store: close() inside a transaction", 2) end
  if self.users and self.users > 1 then
    self.users = self.users - 1
    return
  end
  if self.handle then
    open_stores[canonical(self.path)] = nil
    for k, txn in pairs(self.parked) do
      open_readers[txn] = nil
      C.tz_store_txn_abort(txn)
      self.parked[k] = nil
    end
    self.point_readers = {}
    C.tz_store_close(ffi.gc(self.handle, nil))
  end
  self.handle = nil
end

function Store:map_size() return tonumber(C.tz_store_map_size(self.handle)) end

--- Grows the map ahead of an update known to write about `bytes` (an
-- ingest): growing when full would run the whole update again. Outside a
-- transaction.
function Store:reserve(bytes)
  if self.writing then error("store: reserve() inside a transaction", 2) end
  if C.tz_store_reserve(self.handle, bytes, err) ~= OK then raise(1) end
end

--- Hands n entries for db to the store's writer behind the loop
-- (tz_store_behind_append), which appends them in a transaction of its own
-- on its thread and commits them in full while this thread goes on. keys
-- and vals point at the entries' bytes, key_ends and val_ends (uint32_t
-- arrays) at where each ends; `keep`, what holds all four, is kept until
-- behind_done() says the batch is done. Returns true when sent, false while
-- the last batch is still being written. Outside a transaction.
function Store:behind_append(db, keys, key_ends, vals, val_ends, n, keep)
  if self.writing then error("store: behind_append() inside a transaction", 2) end
  local h = self.dbis[db]
  if not h then
    if C.tz_store_db(self.handle, db, 1, dbi_out, err) ~= OK then raise(1) end
    h = dbi_out[0]
    self.dbis[db] = h
  end
  local rc = C.tz_store_behind_append(self.handle, h, keys, key_ends, vals, val_ends, n, err)
  if rc == EKEYEXIST then return false end
  if rc ~= OK then raise(1) end
  self.behind.batch = keep
  return true
end

--- The fate of the last batch sent to behind_append(): false while it is
-- written (wait: waits for it), true once committed (or when none was
-- sent); nil, message, code when it failed, which is said once. Code
-- "too_large" is a full map (or one grown elsewhere): nothing was written,
-- and an update() writes it, growing the map.
function Store:behind_done(wait)
  local rc = C.tz_store_behind_poll(self.handle, wait and 1 or 0, err)
  if rc == EKEYEXIST then return false end
  self.behind.batch = nil
  if rc == OK then return true end
  return require("tycho.util.errors").fail(rc == EMAPFULL and "too_large" or "unavailable",
                                           "store: " .. ffi.string(err.msg))
end

function Store:__tostring() return string.format("tycho.store(%s)", self.path) end

local function begin(store, write)
  if not store.handle then error("store: used after close()", 3) end
  if write and store.writing then
    -- LMDB's writer lock is not re-entrant: this would wait forever.
    error("store: update() inside another update()", 3)
  end
  if C.tz_store_txn_begin(store.handle, write and 1 or 0, txn_out, err) ~= OK then raise(2) end
  return setmetatable({ store = store, handle = txn_out[0], write = write, cursors = {}, new_dbs = {} }, Txn)
end

-- commit: nil (abort), "sync" or "lazy" (tz_store_txn_commit_lazy).
local function finish(tx, commit)
  for c in pairs(tx.cursors) do C.tz_store_cursor_close(c) end
  tx.cursors = {}
  local h = tx.handle
  tx.handle = nil
  if tx.write then tx.store.writing = false end
  if commit then
    local rc = commit == "lazy" and C.tz_store_txn_commit_lazy(h, err) or C.tz_store_txn_commit(h, err)
    if rc == OK then return true end
    for name in pairs(tx.new_dbs) do tx.store.dbis[name] = nil end
    return nil, rc
  end
  C.tz_store_txn_abort(h)
  -- Handles first opened by an aborted transaction are closed by LMDB.
  for name in pairs(tx.new_dbs) do tx.store.dbis[name] = nil end
  return true
end

-- Runs a committed transaction's on_commit functions, each on its own: the
-- commit stands whatever they do, so an error is reported, not raised.
local function committed(fns)
  for _, f in ipairs(fns) do
    local ok, e = pcall(f)
    if not ok then io.stderr:write("tycho: store: on_commit: ", tostring(e), "\n") end
  end
end

-- write: false (a read transaction), "sync" or "lazy" (how to commit).
local function run(store, write, fn, ...)
  local tx = begin(store, write)
  if write then store.writing = true end
  -- LMDB gives a thread one transaction at a time: a request must not wait
  -- (and let another open one) inside it.
  suspend.pinned = suspend.pinned + 1
  local res = { pcall(fn, tx, ...) }
  suspend.pinned = suspend.pinned - 1
  if not res[1] then
    finish(tx, nil)
    if res[2] == MAP_FULL then return MAP_FULL end
    error(res[2], 0)
  end
  if write then
    local ok, rc = finish(tx, write)
    if not ok then
      if rc == EMAPFULL then return MAP_FULL end
      raise(3)
    end
    if tx.on_commit_fns then committed(tx.on_commit_fns) end
  else
    finish(tx, nil)
  end
  return res
end

--- Runs fn(tx, ...) in a read transaction (a consistent snapshot) and
-- returns what fn returns.
function Store:view(fn, ...)
  local res = run(self, false, fn, ...)
  return unpack(res, 2, table.maxn(res))
end

--- Runs fn(tx, ...) in a write transaction, committed when fn returns and
-- rolled back when it raises. Grows the map and repeats fn when full.
local function update(store, how, fn, ...)
  for _ = 1, 40 do
    local res = run(store, how, fn, ...)
    if res ~= MAP_FULL then return unpack(res, 2, table.maxn(res)) end
    reset_open_readers()
    if C.tz_store_grow(store.handle, err) ~= OK then raise(2) end
  end
  error("store: map still full after growing 40 times", 3)
end

function Store:update(fn, ...) return update(self, "sync", fn, ...) end

--- update() with one disk flush per commit instead of two: the data is
-- flushed, the meta page that makes it current is not. A process crash
-- loses nothing; an OS crash may undo this commit (only this one, leaving
-- the home consistent) until a later commit or `sync(done)` has finished.
-- For writers that acknowledge nothing before that sync (the prediction log
-- and its group commit).
function Store:update_lazy(fn, ...) return update(self, "lazy", fn, ...) end

--- Makes lazy commits durable off the event loop: done(ok, err) runs once
-- the data file is flushed (fdatasync in libuv's thread pool).
function Store:sync(done)
  require("luv").fs_fdatasync(C.tz_store_fd(self.handle), function(e)
    if e then done(false, "store: sync: " .. tostring(e)) else done(true) end
  end)
end

local function mark_open(txn, state)
  state.open = true
  open_readers[txn] = state
  if not reset_check then
    local uv = require "luv"
    reset_check = uv.new_check()
    reset_check:start(reset_stale_readers)
    reset_check:unref()
  end
end

--- How many of this store's point readers hold a snapshot open now.
function Store:open_readers()
  local n = 0
  for _, state in pairs(open_readers) do if state.store == self and state.open then n = n + 1 end end
  return n
end

--- Whether this process opened the home without readahead (M.defaults).
function Store:random_access() return C.tz_store_random_access(self.handle) ~= 0 end

--- The id of the last commit, by any process: a value read while this was
-- N is still current while it stays N (cheap: no transaction).
function Store:version() return tonumber(C.tz_store_last_txnid(self.handle)) end

--- The point-in-time join (core/store/tz_asof) of n_views views over
-- database db, in parts on the pool's threads, all in one snapshot: fills outs[i]
-- (view i's n_wanted tz_column*, n rows) with the latest values of
-- entities[i] at or before each time. Call it outside a transaction.
-- true, or nil and the message.
function Store:asof_join_views(db, n_views, views, entities, times, n, outs)
  if C.tz_asof_join_views(self.handle, db, n_views, views, entities, times, n, outs, err) ~= OK then
    return nil, ffi.string(err.msg)
  end
  return true
end

--- A point reader for hot paths: reader(key) -> pointer, length of the value
-- of key in db or nil; reader(ptr, len) reads the key at ptr (a buffer's,
-- so a caller building keys makes no string per read). The pointer is valid until the next call of this
-- reader or the event loop's next turn, whichever comes first. One read
-- transaction per reader is renewed when anything was committed since its
-- snapshot (by any process; else reused), so each read sees the latest
-- commit without the cost of a new transaction.
local new_point_reader

function Store:point_reader(db)
  -- The lookup apart from the making: a function that returns before
  -- locals its closures capture leaves their scope with UCLO, which
  -- LuaJIT does not compile (every fs:online call aborted its trace here).
  return self.point_readers[db] or new_point_reader(self, db)
end

new_point_reader = function(self, db)
  -- The handle must outlive any one transaction (tz_store_db commits the
  -- one that opens it) and exist before the parked transaction begins: a
  -- transaction only knows the handles opened before it.
  local h
  local rc = C.tz_store_db(self.handle, db, 0, dbi_out, err)
  if rc == OK then h = dbi_out[0] elseif rc ~= ENOTFOUND then raise(1) end
  if C.tz_store_txn_begin(self.handle, 0, txn_out, err) ~= OK then raise(1) end
  local txn = txn_out[0]
  self.parked[#self.parked + 1] = txn
  C.tz_store_txn_reset(txn)
  local value = ffi.new("tz_store_val[1]")
  local store = self
  local state = { open = false, store = store }
  local function read(k, len)
    if not h then
      -- The database did not exist yet: start over once it does.
      if C.tz_store_db(store.handle, db, 0, dbi_out, err) ~= OK then return nil end
      store.point_readers[db] = nil
      read = store:point_reader(db)
      return read(k, len)
    end
    -- A snapshot taken at the last commit is still the latest: reuse it.
    local version = store:version()
    if not (state.open and state.version == version) then
      if state.open then C.tz_store_txn_reset(txn) state.open = false end
      if C.tz_store_txn_renew(store.handle, txn, err) ~= OK then raise(1) end
      mark_open(txn, state)
      state.version = version  -- read before the renew: a commit in between only renews again
    end
    if C.tz_store_get(txn, h, k, len or #k, value, err) ~= OK then return nil end
    return value[0].data, tonumber(value[0].size)
  end
  self.point_readers[db] = read
  return read
end

--- Shorthands, each in a transaction of its own. get is the hot one: it
-- skips view()'s closure and result tables.
function Store:get(db, k)
  local tx = begin(self, false)
  local ok, v = pcall(tx.get, tx, db, k)
  finish(tx, nil)
  if not ok then error(v, 2) end
  return v
end
local function put_one(tx, db, k, v) return tx:put(db, k, v) end
function Store:put(db, k, v) return self:update(put_one, db, k, v) end
function Store:delete(db, k) return self:update(function(tx) return tx:delete(db, k) end) end
function Store:scan(db, opts)
  return self:view(function(tx)
    local rows = {}
    for k, v in tx:scan(db, opts) do rows[#rows + 1] = { k, v } end
    return rows
  end)
end

-- Resolves a database name to its handle: nil when it does not exist and
-- cannot be created here (read transaction).
local function dbi(tx, name)
  if not tx.handle then error("store: transaction already finished", 3) end
  local h = tx.store.dbis[name]
  if h then return h end
  if type(name) ~= "string" then error("store: database name must be a string", 3) end
  local rc = C.tz_store_txn_db(tx.handle, name, tx.write and 1 or 0, dbi_out, err)
  if rc == ENOTFOUND then return nil end
  if rc ~= OK then raise(3) end
  h = dbi_out[0]
  tx.store.dbis[name] = h
  tx.new_dbs[name] = true
  return h
end

local MAX_KEY = 511  -- LMDB's default key size

local function check_key(k, level)
  if type(k) ~= "string" or #k == 0 or #k > MAX_KEY then
    error("store: key must be a string of 1 to " .. MAX_KEY .. " bytes", level or 3)
  end
end

--- Lands a batch of feature rows from columns (core/store/tz_ingest) in
-- this write transaction: batch is a tz_ingest_batch whose dbi fields this
-- fills. Returns the stored rows the batch corrected, { { row (0-based),
-- old bytes } }. A full map raises as every write does (update() grows and
-- repeats).
function Txn:ingest(batch)
  if not self.write then error("store: ingest() in a read transaction", 2) end
  batch.dbi_offline = batch.write_offline ~= 0 and dbi(self, "offline") or 0
  batch.dbi_online = batch.write_online ~= 0 and dbi(self, "online") or 0
  local rc = C.tz_ingest_run(self.handle, batch, err)
  if rc == EMAPFULL then error(MAP_FULL, 0) end
  if rc ~= OK then raise(2) end
  local olds = {}
  for k = 0, tonumber(batch.replaced) - 1 do
    local at, off, len = batch.old_at[3 * k], batch.old_at[3 * k + 1], batch.old_at[3 * k + 2]
    olds[k + 1] = { tonumber(at), ffi.string(batch.old_rows + off, len) }
  end
  C.free(batch.old_rows)
  C.free(batch.old_at)
  batch.old_rows, batch.old_at = nil, nil
  return olds
end

local bad_row = ffi.new("size_t[1]")

--- Epoch microseconds of every row of a frame column c (a tz_column*) of
-- times, parsed in C as timeutil.parse reads them, into int64_t out[n]:
-- true, or nil and the first row (1-based) that is null or no time.
function M.column_times(c, out)
  if C.tz_ingest_column_times(c, out, bad_row) == 0 then return true end
  return nil, tonumber(bad_row[0]) + 1
end

--- Runs fn() once this write transaction has committed; never when it is
-- rolled back or repeated (a full map). For state outside the home that
-- the transaction wrote out: a buffer is emptied only once its contents
-- are stored, so a failed or repeated transaction writes it again.
function Txn:on_commit(fn)
  if not self.write then error("store: on_commit() in a read transaction", 2) end
  local fns = self.on_commit_fns or {}
  self.on_commit_fns = fns
  fns[#fns + 1] = fn
end

--- Value of key k in database db, or nil. A key past LMDB's 511 bytes
-- is simply absent (none can be stored): a name from a URL reads as
-- unknown rather than failing.
function Txn:get(db, k)
  if type(k) == "string" and #k > MAX_KEY then return nil end
  check_key(k)
  local h = dbi(self, db)
  if not h then return nil end
  local rc = C.tz_store_get(self.handle, h, k, #k, val, err)
  if rc == ENOTFOUND then return nil end
  if rc ~= OK then raise(1) end
  return ffi.string(val[0].data, val[0].size)
end

--- The value of k decoded as JSON, or nil (catalog and registry records).
function Txn:get_json(db, k)
  local v = self:get(db, k)
  return v and require("tycho.util.json").decode(v)
end

--- Stores value encoded as JSON under k.
function Txn:put_json(db, k, value) return self:put(db, k, require("tycho.util.json").encode(value)) end

-- Txn:put and Txn:put_new (name, for messages): their checks and the
-- put; returns true when stored, false when no_overwrite found k present.
local function put(tx, db, k, v, no_overwrite, name)
  if not tx.write then error("store: " .. name .. "() in a read transaction", 3) end
  check_key(k, 4)
  if type(v) ~= "string" then error("store: value must be a string", 3) end
  local rc = C.tz_store_put(tx.handle, dbi(tx, db), k, #k, v, #v, no_overwrite, err)
  if rc == OK then return true end
  if rc == EKEYEXIST then return false end
  if rc == EMAPFULL then error(MAP_FULL, 0) end
  raise(2)
end

--- Stores v under k (write transactions only).
function Txn:put(db, k, v) put(self, db, k, v, 0, "put") end

--- Stores v under k, k expected after every key of db (a log's time-ordered
-- keys): then appended (LMDB's MDB_APPEND: no B-tree search, pages filled
-- whole); else put as Txn:put would. v is a string, or a pointer to vlen
-- bytes (a value still in a buffer: no Lua string made for it).
function Txn:append(db, k, v, vlen)
  if not self.write then error("store: append() in a read transaction", 2) end
  check_key(k, 3)
  if vlen == nil then
    if type(v) ~= "string" then error("store: value must be a string", 2) end
    vlen = #v
  end
  local h = dbi(self, db)
  local rc = C.tz_store_append(self.handle, h, k, #k, v, vlen, err)
  if rc == EKEYEXIST then rc = C.tz_store_put(self.handle, h, k, #k, v, vlen, 0, err) end
  if rc == EMAPFULL then error(MAP_FULL, 0) end
  if rc ~= OK then raise(2) end
  return true
end

--- Stores v under k unless k is present (MDB_NOOVERWRITE: a check and a
-- put in one B-tree descent). Returns true when stored, false when present.
function Txn:put_new(db, k, v)
  local stored = put(self, db, k, v, 1, "put_new")  -- not a tail call: errors name the caller's line
  return stored
end

--- For i = 1..#ks, puts prefix .. ks[i] .. suffix = vs[i] where that key
-- is absent (MDB_NOOVERWRITE: one B-tree descent, no get then put). Returns added, a 0-based byte array:
-- added[i - 1] is 1 when ks[i]'s key was put. One C call for the batch.
function Txn:put_new_many(db, prefix, suffix, ks, vs)
  if not self.write then error("store: put_new_many() in a read transaction", 2) end
  local n = #ks
  local kp, kl = ffi.new("const char*[?]", n), ffi.new("size_t[?]", n)
  local vp, vl = ffi.new("const char*[?]", n), ffi.new("size_t[?]", n)
  local added = ffi.new("unsigned char[?]", n)
  for i = 1, n do
    local k, v = ks[i], vs[i]
    kp[i - 1], kl[i - 1], vp[i - 1], vl[i - 1] = k, #k, v, #v
  end
  -- ks and vs hold the strings: they stay alive through the call.
  local rc = C.tz_store_put_new_many(self.handle, dbi(self, db), prefix, #prefix, suffix, #suffix, n, kp, kl, vp, vl,
    added, err)
  if rc == EMAPFULL then error(MAP_FULL, 0) end
  if rc ~= OK then raise(1) end
  return added
end

--- Deletes k; returns true when it existed.
function Txn:delete(db, k)
  if not self.write then error("store: delete() in a read transaction", 2) end
  check_key(k)
  local rc = C.tz_store_del(self.handle, dbi(self, db), k, #k, err)
  if rc == ENOTFOUND then return false end
  if rc == EMAPFULL then error(MAP_FULL, 0) end
  if rc ~= OK then raise(1) end
  return true
end

--- Deletes every key of db.
function Txn:clear(db)
  if not self.write then error("store: clear() in a read transaction", 2) end
  if C.tz_store_clear(self.handle, dbi(self, db), err) ~= OK then raise(1) end
end

--- Number of keys in db (0 when it does not exist).
function Txn:count(db)
  local h = dbi(self, db)
  if not h then return 0 end
  if C.tz_store_count(self.handle, h, count_out, err) ~= OK then raise(1) end
  return tonumber(count_out[0])
end

local function open_cursor(tx, h)
  if C.tz_store_cursor_open(tx.handle, h, cur_out, err) ~= OK then raise(2) end
  local c = cur_out[0]
  tx.cursors[c] = true
  return c
end

local function close_cursor(tx, c)
  if tx.cursors[c] then
    tx.cursors[c] = nil
    C.tz_store_cursor_close(c)
  end
end

--- Iterates keys in byte order: for k, v in tx:scan(db, opts).
-- opts: prefix, from (inclusive), to (exclusive), reverse, limit.
function Txn:scan(db, opts)
  opts = opts or {}
  local h = dbi(self, db)
  if not h then return function() return nil end end
  local lo, hi = opts.from, opts.to
  if opts.prefix then
    lo = lo or opts.prefix
    -- The first key after every key that starts with prefix.
    local p = opts.prefix:gsub("\255+$", "")
    if p ~= "" then hi = hi or (p:sub(1, -2) .. string.char(p:byte(-1) + 1)) end
  end
  local limit, seen = opts.limit or math.huge, 0
  local c = open_cursor(self, h)
  local reverse, started = opts.reverse, false
  return function()
    if not self.handle or not self.cursors[c] then return nil end
    local rc
    if not started then
      started = true
      if reverse then
        if hi then
          rc = C.tz_store_cursor_move(c, SEEK, hi, #hi, key, val, err)
          rc = rc == OK and C.tz_store_cursor_move(c, PREV, nil, 0, key, val, err)
              or C.tz_store_cursor_move(c, LAST, nil, 0, key, val, err)
        else
          rc = C.tz_store_cursor_move(c, LAST, nil, 0, key, val, err)
        end
      elseif lo then
        rc = C.tz_store_cursor_move(c, SEEK, lo, #lo, key, val, err)
      else
        rc = C.tz_store_cursor_move(c, FIRST, nil, 0, key, val, err)
      end
    else
      rc = C.tz_store_cursor_move(c, reverse and PREV or NEXT, nil, 0, key, val, err)
    end
    if rc ~= OK or seen >= limit then close_cursor(self, c) return nil end
    local k = ffi.string(key[0].data, key[0].size)
    if (reverse and lo and k < lo) or (not reverse and hi and k >= hi) then
      close_cursor(self, c)
      return nil
    end
    seen = seen + 1
    return k, ffi.string(val[0].data, val[0].size)
  end
end

return M
