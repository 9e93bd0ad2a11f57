-- Store throughput through the Lua API (lua/tycho/store.lua), run by
-- bench/store/run as:
--   ./build/tycho --home TMPDIR run bench/store/bench.lua [N] [BATCH] [EACH] [MAP_MB]
-- Prints one line per workload: name, rows, seconds, rows/s. bench/store/peer.py
-- does the same workloads with Python's lmdb binding and prints the same lines.
--
-- Keys and values are built before the clock starts, in both scripts, so the
-- numbers are the store's and its binding's, not key encoding's (that one
-- gets a line of its own, keys_pack, which has no peer).
local tycho = require "tycho"
local keys = require "tycho.keys"
local uv = require "luv"

local N = tonumber(arg[1]) or 200000     -- keys written, gets in one view
local BATCH = tonumber(arg[2]) or 1000   -- puts per store:update
local EACH = tonumber(arg[3]) or 20000   -- store:get calls, one read txn each
local MAP_MB = tonumber(arg[4]) or 256   -- same initial map as the peer: no
                                         -- growth in the middle of a timing
local DB = "bench"
local VALUE = string.rep("v", 56) .. "12345678"  -- 64 bytes
assert(#VALUE == 64)

local function now() return tonumber(uv.hrtime()) / 1e9 end

local function report(name, rows, seconds)
  print(string.format("%-12s %8d %9.4f %12.0f", name, rows, seconds, rows / seconds))
end

-- Key encoding, timed on its own.
local ks = {}
local t0 = now()
for i = 1, N do ks[i] = keys.pack("s u64", "user", i) end
report("keys_pack", N, now() - t0)

-- Random lookups: MINSTD (exact in doubles), so the peer draws the same indices.
local function indices(count, seed)
  local idx, x = {}, seed
  for i = 1, count do
    x = x * 48271 % 2147483647
    idx[i] = x % N + 1
  end
  return idx
end
local random_idx = indices(N, 42)
local each_idx = indices(EACH, 7)

local store = assert(tycho.store.open(tycho.home(), { map_size = MAP_MB * 1024 * 1024 }))

-- (a) batched writes: BATCH puts per write transaction (one commit each).
t0 = now()
for first = 1, N, BATCH do
  store:update(function(tx)
    for i = first, math.min(first + BATCH - 1, N) do tx:put(DB, ks[i], VALUE) end
  end)
end
report("put_batched", N, now() - t0)

-- (b) point reads: N random gets in one read transaction...
local found = 0
t0 = now()
store:view(function(tx)
  for i = 1, N do
    if tx:get(DB, ks[random_idx[i]]) then found = found + 1 end
  end
end)
report("get_one_txn", N, now() - t0)
assert(found == N, "get_one_txn found " .. found .. " of " .. N)

-- ...and EACH store:get calls, each its own read transaction.
found = 0
t0 = now()
for i = 1, EACH do
  if store:get(DB, ks[each_idx[i]]) then found = found + 1 end
end
report("get_txn_each", EACH, now() - t0)
assert(found == EACH, "get_txn_each found " .. found .. " of " .. EACH)

-- (c) full range scan in key order.
local rows = 0
t0 = now()
store:view(function(tx)
  for _, _ in tx:scan(DB) do rows = rows + 1 end
end)
report("scan", rows, now() - t0)
assert(rows == N, "scan saw " .. rows .. " of " .. N)

store:close()
