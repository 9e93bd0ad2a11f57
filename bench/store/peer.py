"""The peer of bench/store/bench.lua: the same workloads on the same sizes with
Python's lmdb binding (Debian python3-lmdb), run by bench/store/run as
    /usr/bin/python3 bench/store/peer.py DIR [N] [BATCH] [EACH] [MAP_MB]
Prints the same lines as bench.lua: name, rows, seconds, rows/s.

The environment is opened the way core/store opens the home (NOTLS, which
py-lmdb always sets; default sync; max_dbs 64; 1022 readers) with the same
initial map size, and the data goes into a named database, as in Tycho.
"""
import struct
import sys
import time

import lmdb

DIR = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
BATCH = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
EACH = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
MAP_MB = int(sys.argv[5]) if len(sys.argv) > 5 else 256
VALUE = b"v" * 56 + b"12345678"  # 64 bytes
assert len(VALUE) == 64


def report(name, rows, seconds):
    print("%-12s %8d %9.4f %12.0f" % (name, rows, seconds, rows / seconds))


def indices(count, seed):
    """MINSTD, the generator bench.lua uses: the same random keys."""
    idx, x = [], seed
    for _ in range(count):
        x = x * 48271 % 2147483647
        idx.append(x % N)
    return idx


# The bytes keys.pack("s u64", "user", i) gives: "user", NUL NUL, big-endian i.
keys = [b"user\0\0" + struct.pack(">Q", i) for i in range(1, N + 1)]
random_idx = indices(N, 42)
each_idx = indices(EACH, 7)

env = lmdb.open(DIR, map_size=MAP_MB << 20, max_dbs=64, max_readers=1022)
db = env.open_db(b"bench")

# (a) batched writes: BATCH puts per write transaction.
t0 = time.perf_counter()
for first in range(0, N, BATCH):
    with env.begin(write=True, db=db) as txn:
        for k in keys[first:first + BATCH]:
            txn.put(k, VALUE)
report("put_batched", N, time.perf_counter() - t0)

# (b) point reads: N random gets in one read transaction...
t0 = time.perf_counter()
with env.begin(db=db) as txn:
    found = sum(1 for i in random_idx if txn.get(keys[i]) is not None)
report("get_one_txn", N, time.perf_counter() - t0)
assert found == N, found

# ...and EACH gets, each in its own read transaction (what store:get does).
t0 = time.perf_counter()
found = 0
for i in each_idx:
    with env.begin(db=db) as txn:
        if txn.get(keys[i]) is not None:
            found += 1
report("get_txn_each", EACH, time.perf_counter() - t0)
assert found == EACH, found

# (c) full range scan in key order (values copied out, as tx:scan does).
t0 = time.perf_counter()
rows = 0
with env.begin(db=db) as txn:
    for _k, _v in txn.cursor():
        rows += 1
report("scan", rows, time.perf_counter() - t0)
assert rows == N, rows

env.close()
