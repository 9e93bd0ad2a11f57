"""Trains a small XGBoost model on one of ../shared/data's sets for
tests/lua/integration/xgboost_import_spec.lua (Debian's python3-xgboost).

    /usr/bin/python3 tests/python/xgb_train.py --data ../shared/data/spam.csv \
        --split ../shared/data/spam.split --label label --objective binary:logistic \
        --rounds 30 --depth 5 --out DIR

Writes into DIR:
  m.json     Booster.save_model (XGBoost's JSON model format)
  test.csv   the test rows (the .split file's 1s), features and label, with
             about --missing of the feature cells blanked (missing values);
             the other cells are the data file's own text, so both sides
             read the same numbers
  pred.csv   xgboost's predict() on those rows, one line per row (the
             probability of class 1, the class probabilities, the class or
             the value), each float32 printed exactly
Some training cells are blanked too (--train-missing), so that the trees
learn default directions for missing values.
"""
import argparse
import csv
import os

import numpy as np
import xgboost as xgb


def read(path, split_path, label):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    with open(split_path) as f:
        split = [line.strip() == "1" for line in f if line.strip()]
    if len(split) != len(rows):
        raise SystemExit("%s: %d rows, %s: %d lines" % (path, len(rows), split_path, len(split)))
    li = header.index(label)
    features = [h for i, h in enumerate(header) if i != li]
    text = [[r[i] for i in range(len(header)) if i != li] for r in rows]
    y = np.array([float(r[li]) for r in rows])
    test = np.array(split)
    return features, text, y, test, label


def blank(text, fraction, rng):
    """The rows' cells with about `fraction` of them replaced by ""."""
    out = []
    for row in text:
        mask = rng.random(len(row)) < fraction
        out.append(["" if m else v for v, m in zip(row, mask)])
    return out


def matrix(text):
    return np.array([[float(v) if v != "" else np.nan for v in row] for row in text], dtype=np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--objective", required=True)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--eta", type=float, default=0.3)
    ap.add_argument("--missing", type=float, default=0.1)
    ap.add_argument("--train-missing", type=float, default=0.05)
    ap.add_argument("--base-score", type=float)
    ap.add_argument("--booster", default="gbtree")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    features, text, y, test, label = read(a.data, a.split, a.label)
    rng = np.random.default_rng(a.seed)
    train_text = blank([t for t, s in zip(text, test) if not s], a.train_missing, rng)
    test_text = blank([t for t, s in zip(text, test) if s], a.missing, rng)
    y_train, y_test = y[~test], y[test]

    params = {"objective": a.objective, "eta": a.eta, "nthread": 2, "seed": a.seed, "booster": a.booster}
    if a.booster != "gblinear":
        params.update(max_depth=a.depth, tree_method="hist")
    if a.objective.startswith("multi:"):
        params["num_class"] = int(y.max()) + 1
    if a.base_score is not None:
        params["base_score"] = a.base_score
    dtrain = xgb.DMatrix(matrix(train_text), label=y_train, feature_names=features, missing=np.nan)
    booster = xgb.train(params, dtrain, num_boost_round=a.rounds)

    os.makedirs(a.out, exist_ok=True)
    booster.save_model(os.path.join(a.out, "m.json"))
    dtest = xgb.DMatrix(matrix(test_text), feature_names=features, missing=np.nan)
    pred = booster.predict(dtest)
    with open(os.path.join(a.out, "test.csv"), "w") as f:
        f.write(",".join(features + [label]) + "\n")
        for row, yv in zip(test_text, y_test):
            f.write(",".join(row + [repr(float(yv))]) + "\n")
    with open(os.path.join(a.out, "pred.csv"), "w") as f:
        for p in pred:
            values = np.atleast_1d(p)
            f.write(",".join(repr(float(v)) for v in values) + "\n")
    print("xgboost %s: %s, %d test rows -> %s" % (xgb.__version__, a.booster, len(y_test), a.out))


if __name__ == "__main__":
    main()
