"""Held-out network families: the shipped kernel-level predictor against two other forms of
per-kernel cost, learned from whole networks.

For each network family in the data, trains without it and scores acc@10% on it (as
``python -m predictors.evaluate --holdout-family``), for three models:

* ``linear``: :class:`predictors.models.KernelLevelRegressor` (per (kind, dtype) cost linear in
  count, MACs, bytes and MACs padded to SIMD tiles, rows weighted for relative error and every
  family weighing the same): the shipped kernel level's first stage;
* ``powerlaw``: per kernel, cost = exp(theta . [1, log MACs, log bytes, log Cin, log Cout]) with
  theta per kind plus a ridge-penalized offset per (kind, dtype), plus one per-model overhead,
  fitted on log(sum) against log(latency) over whole networks and single kernels, each family
  weighted equally and the ``kernels`` family at ``--kernels-weight``. An experiment (not a
  shipped predictor): its per-kernel costs are nonlinear in the descriptors, as nn-Meter's
  per-kernel forests are, but learned from whole networks;
* ``shipped``: :class:`predictors.models.BoostedKernelRegressor`, the kernel level of
  ``predictors.train``: the linear costs times exp(g(kernel)), g boosted regression trees on
  each kernel's descriptors, learned from whole networks.

    python bench/kernel_forms.py --data runs/<dc>/measurements.parquet --data ... \\
        --zoo harness/zoo/bundled --zoo zoo/nb201 --zoo zoo/kernels --zoo zoo/mbv2 --zoo zoo/resnet
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.base import clone  # noqa: E402

from predictors import dataset, evaluate  # noqa: E402
from predictors import features as F  # noqa: E402
from predictors.models import KernelLevelRegressor  # noqa: E402

TARGET = dataset.DRIFT_CORRECTED


def kernel_table(df: pd.DataFrame, zoos: list[Path]) -> pd.DataFrame:
    zoo = dataset._manifests(zoos)
    rows = []
    for i, sha in enumerate(df["candidate_sha256"]):
        for r in F.kernel_rows(F.graph_of(zoo[sha]["path"])):
            kind = F.cost_kind(r)
            kind = f"other:{r['op']}" if kind == "other" else kind
            rows.append((i, kind, f"{kind}|{r['dtype']}", r["macs"], r["bytes"], r["cin"], r["cout"]))
    return pd.DataFrame(rows, columns=["row", "kind", "kd", "macs", "bytes", "cin", "cout"])


class PowerLaw:
    def __init__(self, k: pd.DataFrame, n_rows: int, lam: float = 0.3):
        self.kinds, self.kds = sorted(k["kind"].unique()), sorted(k["kd"].unique())
        self.ki = k["kind"].map({v: i for i, v in enumerate(self.kinds)}).to_numpy()
        self.kdi = k["kd"].map({v: i for i, v in enumerate(self.kds)}).to_numpy()
        self.phi = np.c_[np.ones(len(k)), np.log1p(k["macs"]) / 10, np.log1p(k["bytes"]) / 10,
                         np.log(k["cin"]) / 5, np.log(k["cout"]) / 5]
        self.row, self.n, self.lam = k["row"].to_numpy(), n_rows, lam

    def _split(self, t):
        p = self.phi.shape[1]
        na = len(self.kinds) * p
        return t[:na].reshape(-1, p), t[na:-1].reshape(-1, p), t[-1]

    def predict(self, t):
        a, b, c0 = self._split(t)
        cost = np.exp((self.phi * (a[self.ki] + b[self.kdi])).sum(axis=1))
        return np.exp(c0) + np.bincount(self.row, weights=cost, minlength=self.n)

    def fit(self, y, train, w):
        from scipy.optimize import least_squares
        p = self.phi.shape[1]
        t0 = np.zeros(len(self.kinds) * p + len(self.kds) * p + 1)
        t0[: len(self.kinds) * p].reshape(-1, p)[:, 0] = -9.0
        t0[-1] = np.log(2e-3)
        sw = np.sqrt(w[train] / w[train].mean())

        def res(t):
            a, b, _ = self._split(t)
            r = (np.log(self.predict(t)[train]) - np.log(y[train])) * sw
            return np.r_[r, self.lam * b.ravel(), 0.01 * a[:, 1:].ravel()]
        return least_squares(res, t0, method="trf", max_nfev=2000).x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, action="append", required=True)
    ap.add_argument("--zoo", type=Path, action="append", default=[])
    ap.add_argument("--kernels-weight", type=float, default=0.1)
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    df = dataset.load(a.data, a.zoo, TARGET)
    y, fam = df[TARGET].to_numpy(), df["zoo_family"].to_numpy()
    pl = PowerLaw(kernel_table(df, a.zoo), len(df))
    cols, sums = dataset.kernel_level_columns(df), dataset.kernel_sum_columns(df)
    lin, shipped = KernelLevelRegressor(), evaluate.estimators()["kernel"]
    fw = dataset.family_weights(df)
    print(f"{len(df)} rows; families: " + ", ".join(f"{f} {n}" for f, n in df["zoo_family"].value_counts().items()))
    print(f"{'held-out family':20s} {'linear':>8s} {'powerlaw':>9s} {'shipped':>8s}   (acc@10% on the held-out family)")
    for f in sorted(set(fam) - {dataset.KERNEL_FAMILY}):
        te = fam == f
        m = clone(lin).fit(df.loc[~te, sums], y[~te], sample_weight=fw[~te])
        acc_lin = evaluate.metrics(y[te], m.predict(df.loc[te, sums]))["acc@10%"]
        m = clone(shipped).fit(df.loc[~te, cols], y[~te], sample_weight=fw[~te])
        acc_bo = evaluate.metrics(y[te], m.predict(df.loc[te, cols]))["acc@10%"]
        w = np.zeros(len(y))
        for g in set(fam[~te]):
            w[(fam == g) & ~te] = 1.0 / np.sum((fam == g) & ~te)
        w[fam == dataset.KERNEL_FAMILY] *= a.kernels_weight
        acc_pl = evaluate.metrics(y[te], pl.predict(pl.fit(y, ~te, w))[te])["acc@10%"]
        print(f"{f:20s} {acc_lin:8.3f} {acc_pl:9.3f} {acc_bo:8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
