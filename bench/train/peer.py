"""The peer side of the training benchmark (bench/train): pandas, scikit-learn
and XGBoost on the shared data sets, run with Debian's Python:

    /usr/bin/python3 bench/train/peer.py [--data DIR] [--datasets spam,letter,...]
        [--models csv,gbt,forest,logistic,kmeans] [--threads 2] [--repeats 1]
        [--out FILE.json]

Every measurement (one data set x one model family) runs in a fresh child
process (this script re-invoked with the hidden `--one DATASET MODEL`), with
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS = --threads, so that
memory figures are not polluted by earlier work. The child prints a JSON list
of records; the parent collects them, writes the JSON list to --out (or
stdout) and a table to stderr. See bench/train/README.md for the fields.

Memory, in the child (Linux):
  * baseline_mb: VmRSS after the imports and the data load, just before the
    measured operation, right after the high-water mark was reset by writing
    "5" to /proc/self/clear_refs;
  * delta_mb: VmHWM after the operation minus baseline_mb, i.e. the peak RSS
    increase while the operation ran (for csv: while pandas.read_csv ran, the
    resulting frame included);
  * peak_rss_mb: the child's peak RSS over its whole life (max of
    getrusage(RUSAGE_SELF).ru_maxrss / VmHWM seen before each reset).
Without clear_refs, delta_mb falls back to ru_maxrss after minus ru_maxrss
before (a lower bound) and mem_method says so.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
ALL_DATASETS = ["spam", "letter", "diamonds", "breast_cancer", "digits"]
ALL_MODELS = ["csv", "gbt", "forest", "logistic", "kmeans"]
# Each (family, peer) runs in its own child, so peak_rss_mb is that peer's alone.
PEERS = {"csv": ["pandas.read_csv"], "gbt": ["xgboost", "sklearn-hgb"],
         "forest": ["sklearn-rf"], "logistic": ["sklearn-logistic"],
         "kmeans": ["sklearn-kmeans"]}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


# ---------------------------------------------------------------- memory --

class Mem:
    """Peak-RSS bookkeeping for the current process (see module doc)."""

    def __init__(self):
        self.can_reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.can_reset = self._status("VmHWM") is not None
        except OSError:
            pass
        self.lifetime_kb = self._maxrss_kb()
        self.base_kb = 0
        self.before_kb = 0

    @staticmethod
    def _status(key):
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    @staticmethod
    def _maxrss_kb():
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    def _hwm_kb(self):
        h = self._status("VmHWM") if self.can_reset else None
        return max(h or 0, self._maxrss_kb())

    def start(self):
        """Call just before the measured operation."""
        import gc
        gc.collect()
        self.lifetime_kb = max(self.lifetime_kb, self._hwm_kb())
        if self.can_reset:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.base_kb = self._status("VmRSS")
        else:
            self.base_kb = self._status("VmRSS") or self._maxrss_kb()
            self.before_kb = self._maxrss_kb()

    def stop(self):
        """Call right after it; returns (delta_mb, baseline_mb)."""
        if self.can_reset:
            hwm = self._status("VmHWM")
            delta = hwm - self.base_kb
        else:
            hwm = self._maxrss_kb()
            delta = hwm - self.before_kb
        self.lifetime_kb = max(self.lifetime_kb, hwm, self._maxrss_kb())
        return max(delta, 0) / 1024.0, self.base_kb / 1024.0

    def peak_mb(self):
        self.lifetime_kb = max(self.lifetime_kb, self._hwm_kb())
        return self.lifetime_kb / 1024.0

    def method(self):
        return ("VmHWM reset via /proc/self/clear_refs" if self.can_reset
                else "ru_maxrss after - before (lower bound)")


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


# ------------------------------------------------------------- the child --

def load(data_dir, name):
    """X (float64), y, mask (True = test), task info. Uses pandas.read_csv."""
    import numpy as np
    import pandas as pd
    df = pd.read_csv(os.path.join(data_dir, name + ".csv"))
    with open(os.path.join(data_dir, name + ".split")) as f:
        mask = np.array(f.read().split(), dtype=np.int8) == 1
    if len(mask) != len(df):
        raise SystemExit("%s: %d split lines for %d rows" % (name, len(mask), len(df)))
    ycol = df.columns[-1]
    X = df.iloc[:, :-1].to_numpy(dtype=np.float64)
    if ycol == "label":
        y = df[ycol].to_numpy(dtype=np.int64)
        k = int(y.max()) + 1
        task = "binary" if k == 2 else "multiclass"
    elif ycol == "target":
        y = df[ycol].to_numpy(dtype=np.float64)
        k = 0
        task = "regression"
    else:
        raise SystemExit("%s: last column is %r, not label/target" % (name, ycol))
    info = {"rows": int(len(df)), "cols": int(df.shape[1]), "features": int(X.shape[1]),
            "train_rows": int((~mask).sum()), "test_rows": int(mask.sum()),
            "task": task, "classes": k}
    return X, y, mask, info


def score(task, k, model, Xte, yte):
    """The task's metrics on the test rows, and the predict seconds."""
    import numpy as np
    from sklearn import metrics
    t0 = time.perf_counter()
    if task == "regression":
        p = model.predict(Xte)
        secs = time.perf_counter() - t0
        return {"rmse": float(math.sqrt(metrics.mean_squared_error(yte, p))),
                "r2": float(metrics.r2_score(yte, p))}, secs
    proba = model.predict_proba(Xte)
    secs = time.perf_counter() - t0
    pred = np.argmax(proba, axis=1)
    out = {"accuracy": float(metrics.accuracy_score(yte, pred))}
    if task == "binary":
        out["auc"] = float(metrics.roc_auc_score(yte, proba[:, 1]))
    else:
        out["logloss"] = float(metrics.log_loss(yte, proba, labels=list(range(k))))
    return out, secs


def timed_fits(mem, repeats, make, fit):
    """Fit `repeats` fresh models; median seconds, max delta, the last model."""
    secs, deltas, base, model = [], [], 0.0, None
    for _ in range(repeats):
        model = None
        m = make()
        mem.start()
        t0 = time.perf_counter()
        fit(m)
        secs.append(time.perf_counter() - t0)
        d, base = mem.stop()
        deltas.append(d)
        model = m
    return median(secs), max(deltas), base, model, secs


def child_csv(args, name):
    import pandas as pd
    path = os.path.join(args.data, name + ".csv")
    size = os.path.getsize(path)
    mem = Mem()
    secs, deltas, base = [], [], 0.0
    df = None
    for _ in range(args.repeats):
        df = None
        mem.start()
        t0 = time.perf_counter()
        df = pd.read_csv(path)
        secs.append(time.perf_counter() - t0)
        d, b = mem.stop()
        deltas.append(d)
        if not base:
            base = b
    s = median(secs)
    rows, cols = df.shape
    dtypes = sorted(set(str(t) for t in df.dtypes))
    return [{
        "dataset": name, "model": "csv", "peer": "pandas.read_csv",
        "peer_version": pd.__version__,
        "seconds": s, "fit_seconds": s, "all_seconds": secs,
        "rows_per_s": rows / s, "mb_per_s": size / 1e6 / s, "bytes": size,
        "rows": int(rows), "cols": int(cols),
        "peak_rss_mb": mem.peak_mb(), "baseline_mb": base,
        "delta_mb": deltas[0], "all_delta_mb": deltas,
        "frame_mb": float(df.memory_usage(deep=True).sum()) / 2**20,
        "mem_method": mem.method(),
        "notes": "pd.read_csv(path), default engine (C) and type inference -> %s; "
                 "delta_mb from the first read (later reads reuse freed heap)"
                 % ",".join(dtypes),
    }]


def child_model(args, name, family, peer):
    import warnings
    import numpy as np
    import sklearn

    X, y, mask, info = load(args.data, name)
    task, k = info["task"], info["classes"]
    Xtr, Xte, ytr, yte = X[~mask], X[mask], y[~mask], y[mask]
    del X, y
    mem = Mem()
    th = args.threads
    out = []

    def rec(peer, version, secs, delta, base, metrics_, notes, **extra):
        r = {"dataset": name, "model": family, "peer": peer, "peer_version": version}
        r.update(info)
        r.update(metrics_)
        r.update({"seconds": secs, "fit_seconds": secs, "peak_rss_mb": mem.peak_mb(),
                  "baseline_mb": base, "delta_mb": delta, "threads": th,
                  "mem_method": mem.method(), "notes": notes})
        r.update(extra)
        if task == "multiclass" and r.get("logloss", 0) > math.log(k):
            r["diverged"] = True
            r["notes"] += ("; DIVERGED: test log loss %.2f is above the uniform guess "
                           "ln K = %.2f" % (r["logloss"], math.log(k)))
        out.append(r)

    if family == "gbt" and peer == "xgboost":
        import xgboost as xgb
        common = dict(tree_method="hist", n_estimators=100, max_depth=6,
                      learning_rate=0.3, n_jobs=th, max_bin=256, random_state=42)
        if task == "regression":
            make = lambda: xgb.XGBRegressor(**common)
        else:
            make = lambda: xgb.XGBClassifier(**common)
        s, d, b, m, alls = timed_fits(mem, args.repeats, make, lambda m: m.fit(Xtr, ytr))
        met, ps = score(task, k, m, Xte, yte)
        obj = m.get_xgb_params().get("objective")
        rec("xgboost", xgb.__version__, s, d, b, met,
            "hist, 100 rounds, depth 6, eta 0.3, max_bin 256, objective %s; xgboost "
            "defaults lambda=1, min_child_weight=1, no subsampling" % obj,
            predict_seconds=ps, all_seconds=alls)
    elif family == "gbt" and peer == "sklearn-hgb":
        from sklearn.ensemble import (HistGradientBoostingClassifier,
                                      HistGradientBoostingRegressor)
        hp = dict(max_iter=100, max_depth=6, learning_rate=0.3, early_stopping=False,
                  random_state=42)
        if task == "regression":
            make = lambda: HistGradientBoostingRegressor(**hp)
        else:
            make = lambda: HistGradientBoostingClassifier(**hp)
        s, d, b, m, alls = timed_fits(mem, args.repeats, make, lambda m: m.fit(Xtr, ytr))
        met, ps = score(task, k, m, Xte, yte)
        rec("sklearn-hgb", sklearn.__version__, s, d, b, met,
            "HistGradientBoosting max_iter 100, depth 6, lr 0.3, no early stopping; "
            "sklearn defaults max_leaf_nodes=31, min_samples_leaf=20, "
            "l2_regularization=0, max_bins=255; OpenMP threads = OMP_NUM_THREADS",
            predict_seconds=ps, all_seconds=alls, n_iter=int(m.n_iter_))

    elif family == "forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
        p = dict(n_estimators=100, n_jobs=th, random_state=42)
        if task == "regression":
            make = lambda: RandomForestRegressor(**p)
            mf = "max_features=1.0 (all features: sklearn 1.2 regressor default)"
        else:
            make = lambda: RandomForestClassifier(**p)
            mf = "max_features='sqrt' (sklearn 1.2 classifier default)"
        s, d, b, m, alls = timed_fits(mem, args.repeats, make, lambda m: m.fit(Xtr, ytr))
        met, ps = score(task, k, m, Xte, yte)
        nodes = int(sum(e.tree_.node_count for e in m.estimators_))
        depth = int(max(e.tree_.max_depth for e in m.estimators_))
        rec("sklearn-rf", sklearn.__version__, s, d, b, met,
            "RandomForest 100 trees, %s, bootstrap, max_depth=None, min_samples_leaf=1, "
            "criterion %s" % (mf, m.criterion),
            predict_seconds=ps, all_seconds=alls, total_nodes=nodes, max_tree_depth=depth)

    elif family == "logistic":
        if task == "regression":
            return []
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler
        mem.start()
        t0 = time.perf_counter()
        sc = StandardScaler().fit(Xtr)
        scaler_s = time.perf_counter() - t0
        Str, Ste = sc.transform(Xtr), sc.transform(Xte)
        scaler_d, _ = mem.stop()
        mc = "multinomial" if task == "multiclass" else "auto"
        warned = []

        def fit(m):
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always", ConvergenceWarning)
                m.fit(Str, ytr)
            warned[:] = [x for x in w if issubclass(x.category, ConvergenceWarning)]

        make = lambda: LogisticRegression(C=1.0, max_iter=100, solver="lbfgs",
                                          multi_class=mc)
        s, d, b, m, alls = timed_fits(mem, args.repeats, make, fit)
        met, ps = score(task, k, m, Ste, yte)
        n_iter = int(np.max(m.n_iter_))
        converged = not warned
        rec("sklearn-logistic", sklearn.__version__, s, d, b, met,
            "StandardScaler + LogisticRegression(C=1, lbfgs, max_iter=100, %s); "
            "seconds = LogisticRegression.fit only; %s after %d iterations"
            % ("multinomial" if mc == "multinomial" else "binary",
               "converged" if converged else "NOT converged (ConvergenceWarning)", n_iter),
            predict_seconds=ps, all_seconds=alls, scaler_seconds=scaler_s,
            scaler_delta_mb=scaler_d, n_iter=n_iter, converged=converged)

    elif family == "kmeans":
        from sklearn.cluster import KMeans
        from sklearn.preprocessing import StandardScaler
        t0 = time.perf_counter()
        Str = StandardScaler().fit_transform(Xtr)
        scaler_s = time.perf_counter() - t0
        nk = k if task != "regression" else 8
        make = lambda: KMeans(n_clusters=nk, n_init=3, random_state=42, algorithm="lloyd")
        s, d, b, m, alls = timed_fits(mem, args.repeats, make, lambda m: m.fit(Str))
        rec("sklearn-kmeans", sklearn.__version__, s, d, b,
            {"inertia": float(m.inertia_)},
            "KMeans(k=%d, n_init=3, lloyd, k-means++ init, tol=1e-4, max_iter=300) on "
            "the standardised training features (label/target excluded); inertia "
            "= best of the 3 inits on those rows" % nk,
            all_seconds=alls, k=nk, n_iter=int(m.n_iter_), scaler_seconds=scaler_s)
    else:
        raise SystemExit("unknown model family/peer %r/%r" % (family, peer))
    return out


# ------------------------------------------------------------ the parent --

def run_one(args, name, family, peer):
    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = str(args.threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--one", name, family, "--peer", peer,
           "--data", args.data, "--threads", str(args.threads),
           "--repeats", str(args.repeats)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                           timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return [{"dataset": name, "model": family, "peer": peer, "error":
                 "timed out after %ds" % args.timeout}]
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        tail = (p.stderr or "").strip().splitlines()[-5:]
        return [{"dataset": name, "model": family, "peer": peer,
                 "error": "exit %d: %s" % (p.returncode, " | ".join(tail))}]
    recs = json.loads(p.stdout.strip().splitlines()[-1])
    for r in recs:
        r["child_wall_seconds"] = wall
    return recs


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(recs, out):
    cols = ("dataset", "model", "peer", "seconds", "metrics", "peak MB", "delta MB")
    rows = []
    for r in recs:
        if "error" in r:
            rows.append((r["dataset"], r["model"], r["peer"], "ERROR", r["error"][:60], "", ""))
            continue
        if r["model"] == "csv":
            m = "%.0f rows/s, %.1f MB/s" % (r["rows_per_s"], r["mb_per_s"])
        else:
            parts = []
            for key, f in (("auc", ".4f"), ("accuracy", ".4f"), ("logloss", ".4f"),
                           ("rmse", ".1f"), ("r2", ".4f"), ("inertia", ".1f")):
                if key in r:
                    parts.append("%s %s" % ("acc" if key == "accuracy" else key,
                                            format(r[key], f)))
            if r.get("diverged"):
                parts.append("DIVERGED")
            if r.get("converged") is False:
                parts.append("NOT CONVERGED")
            if "n_iter" in r and r["model"] in ("logistic", "kmeans"):
                parts.append("iter %d" % r["n_iter"])
            m = ", ".join(parts)
        rows.append((r["dataset"], r["model"], r["peer"], fmt(r["seconds"], ".3f"), m,
                     fmt(r["peak_rss_mb"], ".1f"), fmt(r["delta_mb"], ".1f")))
    w = [max(len(c), *(len(str(x[i])) for x in rows)) if rows else len(c)
         for i, c in enumerate(cols)]
    line = lambda xs: "  ".join(str(x).ljust(w[i]) if i in (0, 1, 2, 4) else
                                str(x).rjust(w[i]) for i, x in enumerate(xs))
    print(line(cols), file=out)
    print("  ".join("-" * x for x in w), file=out)
    for x in rows:
        print(line(x), file=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--datasets", default=",".join(ALL_DATASETS))
    ap.add_argument("--models", default=",".join(ALL_MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per child")
    ap.add_argument("--one", nargs=2, metavar=("DATASET", "MODEL"), help=argparse.SUPPRESS)
    ap.add_argument("--peer", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.data = os.path.abspath(args.data)
    args.repeats = max(1, args.repeats)

    if args.one:
        name, family = args.one
        peer = args.peer or PEERS.get(family, [None])[0]
        recs = (child_csv(args, name) if family == "csv"
                else child_model(args, name, family, peer))
        sys.stdout.write(json.dumps(recs) + "\n")
        return

    datasets = [d for d in args.datasets.split(",") if d]
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in ALL_MODELS:
            ap.error("unknown model %r (one of %s)" % (m, ",".join(ALL_MODELS)))
    t0 = time.perf_counter()
    recs = []
    for d in datasets:
        for m, peer in ((m, p) for m in models for p in PEERS[m]):
            got = run_one(args, d, m, peer)
            for r in got:
                print("bench/train peer: %-13s %-8s %-16s %s" % (
                    d, m, r.get("peer", "?"),
                    r["error"] if "error" in r else "%.3fs" % r["seconds"]),
                    file=sys.stderr, flush=True)
            recs.extend(got)
    total = time.perf_counter() - t0
    text = json.dumps(recs, indent=1) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    print("", file=sys.stderr)
    table(recs, sys.stderr)
    print("threads %d, repeats %d, total wall %.1fs" % (args.threads, args.repeats, total),
          file=sys.stderr)
    if any("error" in r for r in recs):
        sys.exit(1)


if __name__ == "__main__":
    main()
