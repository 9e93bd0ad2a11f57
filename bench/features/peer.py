#!/usr/bin/python3
"""Data and the pandas peer for bench/features/run.

  peer.py ingest-csv SRC DST         SRC plus `id` (row % 1000) and `event_time`
                                     (epoch seconds, one per row, increasing)
  peer.py gen DIR N_HIST N_SPINE N_ENT SEED
                                     DIR/hist.csv (entity,t,x,k) and
                                     DIR/spine.csv (entity,t), fixed seed
  peer.py merge DIR OUT [REPEATS]    pandas.merge_asof point-in-time join of the
                                     two CSVs, REPEATS times, each printing
                                     "pandas_merge ROWS SECONDS NULLS"; only the
                                     sorts and the merge are timed, not the CSV
                                     reading; writes the joined x per spine row
                                     (spine order) to OUT
  peer.py compare A B                x columns equal (NaN = NaN)? prints a line,
                                     exits 1 when they differ
"""
import sys
import time

import numpy as np
import pandas as pd

BASE = 1_600_000_000  # epoch seconds of the first event


def ingest_csv(src, dst):
    df = pd.read_csv(src)
    n = len(df)
    df.insert(0, "event_time", BASE + np.arange(n, dtype=np.int64))
    df.insert(0, "id", np.arange(n, dtype=np.int64) % 1000)
    df.to_csv(dst, index=False)


def gen_wide(dst, n, seed=7):
    """A CSV of n rows: id (n/10 entities), event_time, f0..f9 (4 decimals)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": ["e%d" % (i % max(1, n // 10)) for i in range(n)],
                       "event_time": BASE + np.arange(n, dtype=np.int64)})
    for j in range(10):
        df["f%d" % j] = np.round(rng.random(n), 4)
    df.to_csv(dst, index=False)


def read_csv(path, repeats=1):
    """pandas.read_csv of the file, timed (file to parsed frame)."""
    for _ in range(repeats):
        t0 = time.perf_counter()
        df = pd.read_csv(path)
        secs = time.perf_counter() - t0
        print(f"read_csv {len(df)} {secs:.6f}", flush=True)


def gen(out, n_hist, n_spine, n_ent, seed):
    rng = np.random.default_rng(seed)
    span = 100_000_000  # ~3 years of seconds: (entity, t) collisions are rare
    per = n_hist // n_ent
    hist = pd.DataFrame({
        "entity": np.repeat(np.arange(n_ent, dtype=np.int64), per),
        "t": BASE + rng.integers(0, span, n_ent * per, dtype=np.int64),
    })
    # Same entity and time twice would be a duplicate for the feature store
    # (it keeps the first and rejects the rest): keep the data free of them.
    hist = hist.drop_duplicates(["entity", "t"]).reset_index(drop=True)
    hist["x"] = np.round(rng.normal(0.0, 1.0, len(hist)), 6)
    hist["k"] = rng.integers(0, 1000, len(hist), dtype=np.int64)
    hist = hist.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # file order: random
    spine = pd.DataFrame({
        "entity": rng.integers(0, n_ent, n_spine, dtype=np.int64),
        # A little before the first event too, so some rows find nothing.
        "t": BASE + rng.integers(-span // 50, span, n_spine, dtype=np.int64),
    })
    hist.to_csv(f"{out}/hist.csv", index=False)
    spine.to_csv(f"{out}/spine.csv", index=False)
    print(f"gen hist={len(hist)} spine={len(spine)} entities={n_ent}")


def merge(d, out, repeats=1):
    # round_trip: pandas' default float parser can be one ulp off ("0.391771"
    # read as 0.3917709999999999); both sides must read the same numbers.
    hist = pd.read_csv(f"{d}/hist.csv", dtype={"entity": np.int64, "t": np.int64, "x": np.float64, "k": np.int64},
                       float_precision="round_trip")
    spine = pd.read_csv(f"{d}/spine.csv", dtype={"entity": np.int64, "t": np.int64})
    spine["row"] = np.arange(len(spine))
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = pd.merge_asof(spine.sort_values("t"), hist.sort_values("t"), on="t", by="entity",
                            direction="backward")
        seconds = time.perf_counter() - t0
        print(f"pandas_merge {len(spine)} {seconds:.6f} {int(res['x'].isna().sum())}", flush=True)
    x = np.empty(len(spine))
    x[res["row"].to_numpy()] = res["x"].to_numpy()
    pd.DataFrame({"x": x}).to_csv(out, index=False, float_format="%.17g", na_rep="")


def compare(a, b):
    xa = pd.read_csv(a, dtype={"x": np.float64}, skip_blank_lines=False, float_precision="round_trip")["x"].to_numpy()
    xb = pd.read_csv(b, dtype={"x": np.float64}, skip_blank_lines=False, float_precision="round_trip")["x"].to_numpy()
    if len(xa) != len(xb):
        print(f"compare: DIFFERENT lengths {len(xa)} vs {len(xb)}")
        sys.exit(1)
    same = (xa == xb) | (np.isnan(xa) & np.isnan(xb))
    bad = np.flatnonzero(~same)
    if len(bad):
        i = bad[0]
        print(f"compare: {len(bad)} of {len(xa)} rows DIFFER (first: spine row {i + 1}: {xa[i]!r} vs {xb[i]!r})")
        sys.exit(1)
    print(f"compare: equal ({len(xa)} rows, {int(np.isnan(xa).sum())} null)")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ingest-csv":
        ingest_csv(*args)
    elif cmd == "gen-wide":
        gen_wide(args[0], int(args[1]))
    elif cmd == "read-csv":
        read_csv(args[0], int(args[1]) if len(args) > 1 else 1)
    elif cmd == "gen":
        gen(args[0], *map(int, args[1:]))
    elif cmd == "merge":
        merge(args[0], args[1], int(args[2]) if len(args) > 2 else 1)
    elif cmd == "compare":
        compare(*args)
    else:
        sys.exit(f"peer.py: unknown command {cmd}")
