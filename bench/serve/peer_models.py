"""scikit-learn peers of the Tycho spam models, for bench/serve/run.

    python3 peer_models.py fit DATA_DIR OUT_DIR   # fit on spam's train split, pickle
    python3 peer_models.py body DATA_DIR ROW      # {"instances":[{57 features of data row ROW}]}
    python3 peer_models.py rows DATA_DIR N OUT    # spam's 57 features, its rows repeated to N rows
    python3 peer_models.py score MODELS CSV OUT   # the GBT peer scoring CSV: seconds, as JSON
                                                  # (and XGBoost's inplace_predict on the same rows)

The FastAPI and Flask apps (peer_fastapi.py, peer_flask.py) load the pickles
from $PEER_MODELS and predict one instance list at a time.
"""
import csv
import json
import os
import pickle
import sys
import time

import numpy as np

MODELS = ("spam", "spam_logistic")  # the URL names, as Tycho hosts them


def read_spam(data):
    with open(os.path.join(data, "spam.csv"), newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    with open(os.path.join(data, "spam.split")) as f:
        test = np.array([line.strip() == "1" for line in f if line.strip()])
    x = np.array([[float(v) for v in r] for r in rows])
    label = header.index("label")
    names = [h for h in header if h != "label"]
    return names, np.delete(x, label, axis=1), x[:, label].astype(int), test


def fit(data, out):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    names, x, y, test = read_spam(data)
    estimators = {
        # Tycho's GBT row: gbt{rounds=100, depth=6, eta=0.3}.
        "spam": GradientBoostingClassifier(n_estimators=100, max_depth=6, learning_rate=0.3, random_state=0),
        # Tycho's logistic row; scaled so lbfgs converges on the raw counts.
        "spam_logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    }
    os.makedirs(out, exist_ok=True)
    for name, est in estimators.items():
        t = time.time()
        est.fit(x[~test], y[~test])
        auc = roc_auc_score(y[test], est.predict_proba(x[test])[:, 1])
        with open(os.path.join(out, name + ".pkl"), "wb") as f:
            pickle.dump({"names": names, "model": est}, f)
        print(f"peer {name}: {type(est).__name__} fitted in {time.time() - t:.1f}s, test AUC {auc:.4f}",
              file=sys.stderr)
    fit_xgboost(names, x, y, test, out)


def fit_xgboost(names, x, y, test, out):
    """XGBoost's GBT of the same shape, for score(): a tree predictor built
    for speed beside scikit-learn's. Skipped when Debian's python3-xgboost
    is not installed."""
    try:
        import xgboost
    except ImportError:
        print("peer spam_xgb: python3-xgboost is not installed; skipped", file=sys.stderr)
        return
    from sklearn.metrics import roc_auc_score

    t = time.time()
    m = xgboost.XGBClassifier(n_estimators=100, max_depth=6, learning_rate=0.3, tree_method="hist", n_jobs=2)
    m.fit(x[~test], y[~test])
    auc = roc_auc_score(y[test], m.predict_proba(x[test])[:, 1])
    m.get_booster().save_model(os.path.join(out, "spam_xgb.json"))
    with open(os.path.join(out, "spam_xgb.names"), "w") as f:
        f.write("\n".join(names) + "\n")
    print(f"peer spam_xgb: XGBClassifier {xgboost.__version__} fitted in {time.time() - t:.1f}s, test AUC {auc:.4f}",
          file=sys.stderr)


def body(data, row):
    with open(os.path.join(data, "spam.csv"), newline="") as f:
        reader = csv.DictReader(f)
        for i, r in enumerate(reader, 1):
            if i == row:
                inst = {k: float(v) for k, v in r.items() if k != "label"}
                return json.dumps({"instances": [inst]}, separators=(",", ":"))
    raise SystemExit(f"spam.csv has no data row {row}")


class Predictor:
    """The pickled models; predict(name, instances) -> response dict."""

    def __init__(self, directory=None):
        directory = directory or os.environ["PEER_MODELS"]
        self.models = {}
        for name in MODELS:
            with open(os.path.join(directory, name + ".pkl"), "rb") as f:
                self.models[name] = pickle.load(f)

    def predict(self, name, instances):
        m = self.models.get(name)
        if m is None:
            return None
        # Missing features are NaN-free zeros here: the bench always sends all 57.
        x = np.array([[float(inst.get(n, 0.0)) for n in m["names"]] for inst in instances])
        p = m["model"].predict_proba(x)[:, 1]
        return {"predictions": [{"probability": float(v), "prediction": int(v >= 0.5)} for v in p],
                "model_version": "1.0.0"}


def rows(data, n, out):
    """spam.csv without its label, its rows repeated to n rows: the file
    both sides score (tycho score, and score() below)."""
    with open(os.path.join(data, "spam.csv"), newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        label = header.index("label")
        lines = [",".join(v for j, v in enumerate(r) if j != label) for r in reader]
    with open(out, "w") as f:
        f.write(",".join(h for h in header if h != "label") + "\n")
        for i in range(n):
            f.write(lines[i % len(lines)] + "\n")


def score(models, path, out):
    """The scikit-learn side of tycho score: read the CSV with pandas,
    predict_proba with the GBT peer, write rows + prediction + probability.
    Prints each phase's seconds (predict_proba's the median of 3 calls)."""
    import pandas as pd

    with open(os.path.join(models, "spam.pkl"), "rb") as f:
        m = pickle.load(f)
    t = time.perf_counter()
    df = pd.read_csv(path)
    read_s = time.perf_counter() - t
    x = df[m["names"]].to_numpy(dtype=float)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        p = m["model"].predict_proba(x)[:, 1]
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    df["prediction"] = (p >= 0.5).astype(int)
    df["probability"] = p
    df.to_csv(out, index=False)
    write_s = time.perf_counter() - t
    result = {"rows": len(df), "read_s": read_s, "predict_proba_s": sorted(times)[1], "write_s": write_s}
    xgb_path = os.path.join(models, "spam_xgb.json")
    if os.path.exists(xgb_path):
        import xgboost

        booster = xgboost.Booster(model_file=xgb_path)
        booster.set_param({"nthread": 2})
        x = df[m["names"]].to_numpy(dtype=float)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            booster.inplace_predict(x)
            times.append(time.perf_counter() - t)
        result["xgboost_predict_s"] = sorted(times)[1]
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "fit":
        fit(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "body":
        print(body(sys.argv[2], int(sys.argv[3])))
    elif len(sys.argv) == 5 and sys.argv[1] == "rows":
        rows(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 5 and sys.argv[1] == "score":
        score(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(__doc__)
