"""Cross-device scaling from a handful of measurements on a new device.

Two seed approaches, both usable from ``python -m predictors.transfer``:

* ``proxy``: choose the known device whose latencies rank the new device's samples best
  (Spearman on the samples), then map the proxy's latency to the new device with a monotone
  calibration (isotonic in log space, falling back to log-linear when the samples are too few
  or not monotone enough). Rank monotonicity is preserved by construction.
* ``bayes``: a device-conditioned additive cost model. Every device d is a vector
  w_d of per-feature costs (for NAS-Bench-201: one cost per op type, over all edges and over
  live edges, plus a fixed cost), latency_d(arch) / median_d = features(arch) . w_d. The w_d of
  the known devices are fitted on the whole table; they define a prior N(m, S) over a device's
  costs, weighted towards the known devices that rank the new samples alike (the proxy idea,
  made soft). Costs are in units of a device's median latency, and the median of 10 samples is
  a noisy estimate of it (more so for a phone that reports whole milliseconds), so each prior
  centre is also offered with its overall scale fitted to the samples, which otherwise the
  posterior would buy by bending the op costs. A new device's costs are the posterior mean given
  its few samples. Which centre, how wide the prior is and how noisy the samples are (relative to
  the known devices' spread and residual variance) is chosen per new device by the samples'
  marginal likelihood, so a noisy phone leans on the prior more than a quiet GPU. The posterior
  then takes the noise as Student-t (2 degrees of freedom, by EM), so that one outlying sample
  does not bend every cost. Adding a device that is in no table needs only its samples.
  A new device whose runtime executes a different graph than the table's devices (``--graph
  live``: TFLite and other graph compilers drop a NAS-Bench-201 cell's dead edges; the table's
  PyTorch devices run all six) keeps the known devices' op costs as its prior but applies them
  to the ops it really runs. ``--graph auto`` picks by leave-one-out error on the samples.
* ``stack`` (default): ``bayes`` blended with ``ridge`` in log space, w log bayes + (1 - w) log
  ridge, at the weight w in (1, 0.9, 0.8, 0.7, 0.5) whose leave-one-out error on the samples is
  least (ties go to bayes alone). Where the cost model's prior fits the new device less well than
  a plain regression on the known devices (on the shared table: two phones), the samples say so.
  A device that runs only live edges (``--graph live``, or ``auto`` choosing it) gets bayes alone:
  ridge regresses on devices that run a different graph (on this VM, blending it in lowered the
  local machine's Spearman from 0.982-0.993 to 0.968-0.986 over three campaigns).
* ``ridge`` (baseline): ridge regression of the new device's log latency on the known devices'
  log latencies, fitted to the samples.
* ``flops`` (baseline): the order of the architectures' MACs.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from harness.errors import BadInput, HarnessError

METHODS = ("stack", "bayes", "proxy", "ridge", "flops")
STACK_WEIGHTS = (1.0, 0.9, 0.8, 0.7, 0.5)   # of bayes against ridge, first = preferred on a tie
GRAPHS = ("all", "live", "auto")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr
    r = spearmanr(a, b).statistic
    return 0.0 if not np.isfinite(r) else float(r)


class FewShotCostModel:
    """Empirical-Bayes per-device cost model (see module doc). ``fit`` learns the prior from a
    table; ``adapt`` returns a predictor for one new device from its samples."""

    # Chosen per new device by marginal likelihood of its samples (type-II maximum likelihood):
    # how sharply the known devices are weighted by rank agreement, and how far the prior's spread
    # and the noise are scaled from what the known devices show.
    TAUS = (0.0, 5.0, 10.0, 20.0, 40.0)
    PRIOR_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
    NOISE_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)

    def __init__(self, taus: tuple[float, ...] = TAUS, prior_scales: tuple[float, ...] = PRIOR_SCALES,
                 noise_scales: tuple[float, ...] = NOISE_SCALES, jitter: float = 1e-3, fit_scale: bool = True,
                 robust_nu: float | None = 2.0):
        self.taus = taus
        self.fit_scale = fit_scale
        self.robust_nu = robust_nu
        self.prior_scales = prior_scales
        self.noise_scales = noise_scales
        self.jitter = jitter

    def fit(self, features: np.ndarray, latency: np.ndarray,
            target_features: np.ndarray | None = None) -> FewShotCostModel:
        """The prior from the table's devices (``features``: what they execute per architecture).
        ``target_features``, same columns: what the new device executes, when that differs."""
        lat = np.asarray(latency, float)
        if np.isnan(lat).any():
            raise BadInput("table: the bayes method needs every device measured on every architecture")
        self.phi_ = np.hstack([np.ones((len(features), 1)), np.asarray(features, float)])
        self.log_ = np.log(lat)
        t = lat / np.median(lat, axis=0)
        w, *_ = np.linalg.lstsq(self.phi_, t, rcond=None)
        self.noise_var_ = float((t - self.phi_ @ w).var(axis=0).mean())
        self.device_costs_ = w.T                       # one row per known device
        self.target_phi_ = (self.phi_ if target_features is None else
                            np.hstack([np.ones((len(target_features), 1)), np.asarray(target_features, float)]))
        self.same_graph_ = target_features is None
        return self

    def device_similarity(self, rows: np.ndarray, y_ms: np.ndarray) -> np.ndarray:
        """How each known device ranks the samples (Spearman): its measured latencies, or, on
        another graph, its op costs applied to the ops the new device runs."""
        known = self.log_[rows] if self.same_graph_ else self.target_phi_[rows] @ self.device_costs_.T
        return np.array([_spearman(known[:, d], y_ms) for d in range(known.shape[1])])

    def _centres(self, rows: np.ndarray, y_ms: np.ndarray, a: np.ndarray, t: np.ndarray):
        """Candidate prior centres: (mean costs, weights of the known devices, what they are).
        ``a``: the samples' features; ``t``: the samples relative to their median."""
        W = self.device_costs_
        sim = self.device_similarity(rows, y_ms)
        for tau in self.taus:
            wts = np.exp(tau * (sim - sim.max()))
            wts /= wts.sum()
            m0 = wts @ W
            yield m0, wts, {"tau": tau}
            p = a @ m0
            if self.fit_scale and p @ p > 0:
                c = float(p @ t / (p @ p))      # least squares: t ~ c * the centre's predictions
                if c > 0:
                    yield c * m0, wts, {"tau": tau, "scale": c}

    def prior(self, rows: np.ndarray, y_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, dict]:
        """(mean, covariance, noise variance, the chosen hyperparameters) of the new device's costs
        before its samples: those that maximise the samples' marginal likelihood."""
        W = self.device_costs_
        a = self.target_phi_[rows]
        t = y_ms / np.median(y_ms)
        n = len(rows)
        best = None
        for m0, wts, centre in self._centres(rows, y_ms, a, t):
            d = W - wts @ W
            cov = (d.T * wts) @ d / max(1e-9, 1 - (wts ** 2).sum()) + self.jitter * np.eye(W.shape[1])
            aca = a @ cov @ a.T
            r = t - a @ m0
            for ps in self.prior_scales:
                for ns in self.noise_scales:
                    k = ps * aca + ns * self.noise_var_ * np.eye(n)
                    _, logdet = np.linalg.slogdet(k)
                    ll = -0.5 * (r @ np.linalg.solve(k, r) + logdet)
                    if best is None or ll > best[0]:
                        best = (ll, m0, ps * cov, ns * self.noise_var_, dict(centre, prior_scale=ps, noise_scale=ns))
        return best[1:]

    def adapt(self, rows: np.ndarray, y_ms: np.ndarray) -> np.ndarray:
        """Predicted latency (ms) of every table row for a device measured on ``rows``.
        ``chosen_`` keeps the hyperparameters this call chose."""
        rows = np.asarray(rows, int)
        y_ms = np.asarray(y_ms, float)
        m0, cov, noise, self.chosen_ = self.prior(rows, y_ms)
        scale = float(np.median(y_ms))
        a = self.target_phi_[rows]
        t = y_ms / scale
        ci = np.linalg.inv(cov)
        prec = np.full(len(rows), 1 / noise)
        for _ in range(10 if self.robust_nu else 1):
            w = np.linalg.solve((a.T * prec) @ a + ci, (a.T * prec) @ t + ci @ m0)
            if self.robust_nu:
                # Student-t noise (EM): a sample far off the fit counts less (a phone's one
                # background hiccup), instead of bending every op cost towards it
                e2 = (t - a @ w) ** 2 / noise
                prec = (self.robust_nu + 1) / (self.robust_nu + e2) / noise
        return np.maximum(self.target_phi_ @ w, 1e-6) * scale


def loo_log_error(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], rows: np.ndarray, y_ms: np.ndarray) -> float:
    """Mean squared log error of ``fn`` (rows, y -> predictions of every row) predicting each
    sample from the others."""
    err = []
    for i in range(len(rows)):
        keep = np.arange(len(rows)) != i
        err.append(np.log(fn(rows[keep], y_ms[keep])[rows[i]] / y_ms[i]) ** 2)
    return float(np.mean(err))


def proxy_predict(log_table: np.ndarray, rows: np.ndarray, y_ms: np.ndarray) -> tuple[np.ndarray, int]:
    """Proxy-device reuse: (predicted ms for every row, index of the chosen proxy device)."""
    from sklearn.isotonic import IsotonicRegression
    ly = np.log(y_ms)
    sims = [_spearman(log_table[rows, d], ly) for d in range(log_table.shape[1])]
    best = int(np.argmax(sims))
    x = log_table[rows, best]
    slope, icpt = np.polyfit(x, ly, 1) if np.ptp(x) > 0 else (0.0, float(ly.mean()))
    pred = slope * log_table[:, best] + icpt
    if len(rows) >= 5 and sims[best] > 0.5 and slope > 0:
        iso = IsotonicRegression(out_of_bounds="clip").fit(x, ly)
        # isotonic is flat between samples: keep the log-linear order inside each step
        pred = iso.predict(log_table[:, best]) + 1e-3 * (pred - pred.mean()) / (pred.std() or 1)
    return np.exp(pred), best


def ridge_predict(log_table: np.ndarray, rows: np.ndarray, y_ms: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    from sklearn.linear_model import Ridge
    m = Ridge(alpha=alpha).fit(log_table[rows], np.log(y_ms))
    return np.exp(m.predict(log_table))


def stack_predict(adapt: Callable[[np.ndarray, np.ndarray], np.ndarray], log_table: np.ndarray, rows: np.ndarray,
                  y_ms: np.ndarray, weights=STACK_WEIGHTS) -> tuple[np.ndarray, float]:
    """``adapt`` (bayes) blended with :func:`ridge_predict` in log space at the weight of
    ``weights`` with the least leave-one-out squared log error on the samples; returns
    (predicted ms for every row, the weight)."""
    n = len(rows)
    loo = np.empty((2, n))
    for i in range(n):
        keep = np.arange(n) != i
        loo[0, i] = np.log(adapt(rows[keep], y_ms[keep])[rows[i]])
        loo[1, i] = np.log(ridge_predict(log_table, rows[keep], y_ms[keep])[rows[i]])
    err = [np.mean((w * loo[0] + (1 - w) * loo[1] - np.log(y_ms)) ** 2) for w in weights]
    w = float(weights[int(np.argmin(err))])
    blend = w * np.log(adapt(rows, y_ms)) + (1 - w) * np.log(ridge_predict(log_table, rows, y_ms))
    return np.exp(blend), w


def predict(method: str, table_latency: np.ndarray, features: np.ndarray, rows: np.ndarray, y_ms: np.ndarray,
            macs: np.ndarray | None = None, model: FewShotCostModel | None = None, graph: str = "all",
            live_split: int | None = None) -> np.ndarray:
    """``graph`` (bayes, stack): ``all`` the new device runs what the table's devices run (``features``
    whole); ``live`` it runs only the columns from ``live_split`` on, the table's devices those
    before it (same ops, in the same order); ``auto`` the better of the two by leave-one-out."""
    if graph not in GRAPHS:
        raise BadInput(f"unknown graph {graph!r} (choose from {', '.join(GRAPHS)})")
    if method in ("bayes", "stack"):
        live = None
        if graph == "all":
            best = model or FewShotCostModel().fit(features, table_latency)
        elif live_split is None:
            raise BadInput("--graph live needs features that separate all edges from live ones")
        else:
            best = live = FewShotCostModel().fit(features[:, :live_split], table_latency, features[:, live_split:])
            if graph == "auto":
                same = model or FewShotCostModel().fit(features, table_latency)
                best = min((same, best), key=lambda m: loo_log_error(m.adapt, rows, y_ms))
        if method == "stack" and best is not live:
            return stack_predict(best.adapt, np.log(table_latency), rows, y_ms)[0]
        return best.adapt(rows, y_ms)
    if method == "proxy":
        return proxy_predict(np.log(table_latency), rows, y_ms)[0]
    if method == "ridge":
        return ridge_predict(np.log(table_latency), rows, y_ms)
    if method == "flops":
        if macs is None:
            raise BadInput("flops baseline needs MACs")
        return np.asarray(macs, float)
    raise BadInput(f"unknown method {method!r} (choose from {', '.join(METHODS)})")


def nb201_macs(features: np.ndarray, graph: str = "all") -> np.ndarray:
    """Relative convolution MACs of a NAS-Bench-201 cell (from ``nb201.op_counts``): over all
    edges as NAS-Bench-201's own FLOPs count them, or over the live edges only (``graph=live``).
    A 3x3 conv costs 9 times a 1x1 conv."""
    f = features[:, 4:] if graph == "live" else features
    return 9 * f[:, 2] + f[:, 1] + 1e-3 * f[:, 3]


def read_samples(path: Path, known: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    try:
        f = path.open(newline="")
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    rows, ys = [], []
    with f:
        r = csv.DictReader(f)
        if not r.fieldnames or not {"arch_index", "latency_ms"} <= set(r.fieldnames):
            raise BadInput(f"{path}:1: expected columns arch_index,latency_ms, got {r.fieldnames}")
        for n, row in enumerate(r, start=2):
            try:
                a, y = int(row["arch_index"]), float(row["latency_ms"])
            except (TypeError, ValueError):
                raise BadInput(f"{path}:{n}: arch_index must be an integer and latency_ms a number") from None
            if a not in known:
                raise BadInput(f"{path}:{n}: arch_index {a} is not in the table")
            if not (y > 0 and np.isfinite(y)):
                raise BadInput(f"{path}:{n}: latency_ms must be a positive number, got {row['latency_ms']!r}")
            rows.append(known[a])
            ys.append(y)
    if len(set(rows)) < 3:
        raise BadInput(f"{path}: need at least 3 distinct architectures, got {len(set(rows))}")
    if len(set(rows)) != len(rows):   # repeated measurements of one architecture: use their median
        agg: dict[int, list[float]] = {}
        for r_, y in zip(rows, ys):
            agg.setdefault(r_, []).append(y)
        rows, ys = list(agg), [float(np.median(v)) for v in agg.values()]
    return np.array(rows), np.array(ys)


def main(argv=None) -> int:
    from predictors import nb201
    ap = argparse.ArgumentParser(prog="python -m predictors.transfer",
                                 description="Predict every architecture of a wide latency table on a new device "
                                             "from a few measurements of it.")
    from harness.zoo.nb201 import SHIPPED_TABLE
    ap.add_argument("--table", type=Path, default=SHIPPED_TABLE,
                    help="wide CSV (or .csv.gz): arch_index,arch,<device>,... (default: the NAS-Bench-201 latency table "
                         "shipped in harness/zoo/data, 15,625 architectures)")
    ap.add_argument("--target-samples", type=Path, required=True, help="CSV with arch_index,latency_ms")
    ap.add_argument("--out", type=Path, required=True, help="CSV written with arch_index,latency_ms_pred")
    ap.add_argument("--method", choices=METHODS, default="stack",
                    help="stack (the default): bayes blended with ridge at the weight the samples choose; bayes: "
                         "the table's devices as a prior, updated by the samples; proxy: the most rank-correlated "
                         "device, mapped monotonically; ridge: a regression on the table's devices; flops: the order of the "
                         "architectures' MACs (a baseline)")
    ap.add_argument("--graph", choices=GRAPHS, default="all",
                    help="what the new device executes (stack, bayes, flops): all six edges of a cell like the table's "
                         "PyTorch devices (default), live: only edges on an input-output path (TFLite/LiteRT and "
                         "other graph compilers drop dead ones), auto: choose by leave-one-out on the samples")
    ap.add_argument("--exclude-devices", default="", help="comma-separated table columns not to use")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        table = nb201.load_table(args.table)
        excluded = set(filter(None, args.exclude_devices.split(",")))
        keep = [i for i, d in enumerate(table.devices) if d not in excluded]
        lat = table.latency[:, keep]
        full = ~np.isnan(lat).any(axis=0)
        lat = lat[:, full]
        if lat.shape[1] == 0:
            raise BadInput(f"{args.table}: no device column is complete")
        rows, ys = read_samples(args.target_samples, table.row_of())
        feats = nb201.cell_features(table.arch)
        pred = predict(args.method, lat, feats, rows, ys, macs=nb201_macs(feats, "live" if args.graph == "live" else "all"),
                       graph=args.graph, live_split=len(nb201.OPS) - 1)
        tmp = args.out.with_name(args.out.name + ".tmp")
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["arch_index", "latency_ms_pred"])
            for a, p in zip(table.arch_index, pred):
                w.writerow([int(a), f"{p:.6g}"])
        tmp.replace(args.out)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {len(pred)} architectures predicted by {args.method} (graph {args.graph}) from {len(rows)} samples and "
          f"{lat.shape[1]} known devices in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
