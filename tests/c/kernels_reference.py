#!/usr/bin/python3
# Reference numbers for the C kernel tests (test_linear.c, test_logistic.c,
# test_kmeans.c, test_metrics.c), computed once with Debian's scikit-learn
# 1.2.1 / numpy 1.24 on the shared splits, then hard-coded in the tests.
# Run: /usr/bin/python3 tests/c/kernels_reference.py  (a few seconds).
import os
import warnings

import numpy as np
from sklearn import metrics
from sklearn.cluster import KMeans
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

warnings.filterwarnings("ignore")
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/data/")


def load(name):
    a = np.loadtxt(D + name + ".csv", delimiter=",", skiprows=1)
    s = np.loadtxt(D + name + ".split").astype(bool)
    return a[~s, :-1], a[~s, -1], a[s, :-1], a[s, -1]


print("== test_linear.c: diamonds")
Xtr, ytr, Xte, yte = load("diamonds")
for name, m in [("OLS", LinearRegression()), ("RIDGE1", Ridge(alpha=1.0)),
                ("RIDGE100 (no intercept)", Ridge(alpha=100.0, fit_intercept=False))]:
    m.fit(Xtr, ytr)
    p = m.predict(Xte)
    print(name, "coef", list(m.coef_), "intercept", float(m.intercept_),
          "rmse", metrics.mean_squared_error(yte, p) ** 0.5, "r2", metrics.r2_score(yte, p))

print("== test_logistic.c: StandardScaler + LogisticRegression(C=1)")
for name in ["breast_cancer", "digits", "spam", "letter"]:
    Xtr, ytr, Xte, yte = load(name)
    sc = StandardScaler().fit(Xtr)
    m = LogisticRegression(C=1.0, max_iter=1000).fit(sc.transform(Xtr), ytr)
    P = m.predict_proba(sc.transform(Xte))
    print(name, "acc", metrics.accuracy_score(yte, m.predict(sc.transform(Xte))),
          "logloss", metrics.log_loss(yte, P), "n_iter", m.n_iter_)
    if name == "breast_cancer":
        print("  coef[:5]", list(m.coef_[0][:5]), "intercept", float(m.intercept_[0]))

print("== test_kmeans.c: KMeans(n_init=10) inertia on the train rows")
Xtr = load("digits")[0]
for seed in [0, 1, 2]:
    print("digits k=10 seed", seed, KMeans(n_clusters=10, n_init=10, random_state=seed).fit(Xtr).inertia_)
print("letter k=26 seed 0", KMeans(n_clusters=26, n_init=10, random_state=0).fit(load("letter")[0]).inertia_)

print("== test_metrics.c: arrays and references (C)")
rs = np.random.RandomState(42)
n = 40
yb = rs.randint(0, 2, n).astype(float)
score = np.round(rs.rand(n) * 0.6 + 0.4 * yb, 1)          # ties
p1 = np.round(np.clip(0.15 + 0.7 * yb + rs.randn(n) * 0.25, 0, 1), 3)   # some exact 0 / 1
predb = (score > 0.5).astype(float)
ym = rs.randint(0, 4, 30).astype(float)
pm = ym.copy(); flip = rs.rand(30) < 0.35; pm[flip] = rs.randint(0, 4, flip.sum())
P = rs.rand(30, 4) ** 3; P[np.arange(30), ym.astype(int)] += 0.5; P /= P.sum(1, keepdims=True); P = np.round(P, 3)
P[3] = [0, 1, 0, 0]; P[7] = [0.25, 0.25, 0.25, 0.25]
yr = np.round(rs.randn(n) * 3 + 10, 3); pr = np.round(yr + rs.randn(n), 3)
X = np.round(np.vstack([rs.randn(10, 3) + c for c in ([0,0,0],[4,0,1],[0,5,2])]), 3)
lab = np.repeat([0., 1., 2.], 10); lab[[4, 15]] = [1, 2]
def arr(name, a):
    return "static const double %s[%d] = { %s };" % (name, a.size, ", ".join(repr(float(v)) for v in a.ravel()))
for nm, a in [("YB", yb), ("SCORE", score), ("P1", p1), ("PREDB", predb), ("YM", ym), ("PM", pm), ("PROB", P), ("YR", yr), ("PR", pr), ("SX", X), ("SLAB", lab)]:
    print(arr(nm, a))
print("/* references */")
r = dict(
 acc_b=metrics.accuracy_score(yb, predb), acc_m=metrics.accuracy_score(ym, pm),
 prec_b=metrics.precision_score(yb, predb), rec_b=metrics.recall_score(yb, predb), f1_b=metrics.f1_score(yb, predb),
 prec_b0=metrics.precision_score(yb, predb, pos_label=0), f1_b0=metrics.f1_score(yb, predb, pos_label=0),
 prec_m=metrics.precision_score(ym, pm, average="macro"), rec_m=metrics.recall_score(ym, pm, average="macro"), f1_m=metrics.f1_score(ym, pm, average="macro"),
 auc=metrics.roc_auc_score(yb, score), auc_p1=metrics.roc_auc_score(yb, p1),
 ll_b=metrics.log_loss(yb, p1, eps=1e-15), ll_m=metrics.log_loss(ym, P, eps=1e-15),
 rmse=metrics.mean_squared_error(yr, pr) ** 0.5, mae=metrics.mean_absolute_error(yr, pr), r2=metrics.r2_score(yr, pr),
 sil=metrics.silhouette_score(X, lab),
)
for k, v in r.items(): print("#define REF_%s %r" % (k.upper(), float(v)))
print("/* confusion", metrics.confusion_matrix(ym, pm).ravel().tolist(), "*/")
# digits silhouette with true labels on the train rows

Xd, yd = load("digits")[:2]
print("#define REF_SIL_DIGITS %r" % float(metrics.silhouette_score(Xd, yd)))
