"""Evaluation that cannot leak: every score comes from rows the model was not fitted on.

Metrics: acc@5/10/15% (|pred - true| / true <= x), RMSPE, MAPE, Spearman, Kendall.
CV: grouped K-fold by architecture (the same network at every quantization and context is one
group); for transfer, leave-one-device-out.

    python -m predictors.evaluate --data measurements.parquet [--data ...] [--zoo DIR]
        [--target latency_ms_median] [--folds 5] [--model model|kernel|both]
        [--holdout-family]        # also train without each zoo family, test on it
        [--shots K]               # ... and with K of its architectures measured, test on the rest
    python -m predictors.evaluate --artifact DIR --data other.parquet   # a saved predictor on new data
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GroupKFold

from harness.errors import HarnessError


def metrics(y_true, y_pred) -> dict[str, float]:
    from scipy.stats import kendalltau, spearmanr
    y_true = np.asarray(y_true, float)
    y_pred = np.asarray(y_pred, float)
    rel = np.abs(y_pred - y_true) / y_true
    out = {f"acc@{p}%": float(np.mean(rel <= p / 100)) for p in (5, 10, 15)}
    out["rmspe"] = float(np.sqrt(np.mean(((y_pred - y_true) / y_true) ** 2)))
    out["mape"] = float(np.mean(rel))
    if len(y_true) > 2 and np.ptp(y_true) > 0 and np.ptp(y_pred) > 0:
        out["spearman"] = float(spearmanr(y_true, y_pred).statistic)
        out["kendall"] = float(kendalltau(y_true, y_pred).statistic)
    out["n"] = int(len(y_true))
    return out


# one job: the same model file on the same target in the same context
JOB_KEY = ["target", "candidate_sha256", "threads", "background_load"]


def repeatability(df, target: str) -> dict[str, float] | None:
    """The ceiling of any predictor's acc@x% on this data: over every job measured in two or
    more campaigns, every pair of its campaigns' values, how often the second is within x% of the
    first (the score a perfect predictor of one campaign gets on the other). None when no job was
    measured twice."""
    key = [k for k in JOB_KEY if k in df.columns]
    rel = []
    for _, g in df[df.duplicated(key, keep=False)].groupby(key):
        v = g.groupby("campaign_id")[target].median().to_numpy(float)
        rel += [abs(b / a - 1) for i, a in enumerate(v) for j, b in enumerate(v) if i != j]
    if not rel:
        return None
    rel = np.asarray(rel)
    return {**{f"acc@{p}%": float(np.mean(rel <= p / 100)) for p in (5, 10, 15)}, "pairs": len(rel) // 2}


def grouped_cv(estimator, X, y, groups, folds: int = 5, sample_weight=None) -> tuple[dict, np.ndarray]:
    """Out-of-fold predictions over GroupKFold; returns (metrics, predictions). ``sample_weight``
    (one per row) weights the fits, never the scores."""
    X = X.reset_index(drop=True) if hasattr(X, "reset_index") else X
    y = np.asarray(y, float)
    groups = np.asarray(groups)
    k = min(folds, len(set(groups)))
    if k < 2:
        raise HarnessError("grouped CV needs at least two architectures")
    pred = np.full(len(y), np.nan)
    for tr, te in GroupKFold(n_splits=k).split(X, y, groups):
        assert not set(groups[tr]) & set(groups[te])
        fit_kw = {} if sample_weight is None else {"sample_weight": np.asarray(sample_weight, float)[tr]}
        m = clone(estimator).fit(X.iloc[tr] if hasattr(X, "iloc") else X[tr], y[tr], **fit_kw)
        pred[te] = m.predict(X.iloc[te] if hasattr(X, "iloc") else X[te])
    return metrics(y, pred), pred


def leave_family_out(estimator, X, y, families, balance: bool = False, groups=None, shots: int = 0,
                     draws: int = 10, seed: int = 0) -> dict[str, dict]:
    """Per family: trained on the other families, scored on it. ``balance``: every family in the
    training rows weighs the same (:func:`predictors.dataset.balanced_weights`).

    ``shots`` > 0 (with ``groups``): the few-shot case, a new family of which ``shots``
    architectures (at all their quantizations and contexts) were measured: they join the
    training rows, as a family of their own, and the family's other architectures are scored;
    metrics are the mean over ``draws`` random choices of those architectures."""
    from predictors.dataset import balanced_weights
    families = np.asarray(families)
    y = np.asarray(y, float)
    groups = None if groups is None else np.asarray(groups)
    if shots and groups is None:
        raise ValueError("shots need groups (architectures)")

    def fit_score(train, test):
        kw = {"sample_weight": balanced_weights(families[train])} if balance else {}
        m = clone(estimator).fit(X[train], y[train], **kw)
        assert not (train & test).any()
        return metrics(y[test], m.predict(X[test]))
    out = {}
    rng = np.random.default_rng(seed)
    for fam in sorted(set(families)):
        te = families == fam
        if te.all():
            continue
        if not shots:
            out[fam] = fit_score(~te, te)
            continue
        archs = np.unique(groups[te])
        if len(archs) <= shots:
            continue
        runs = []
        for _ in range(draws):
            seen = te & np.isin(groups, rng.choice(archs, shots, replace=False))
            runs.append(fit_score(~te | seen, te & ~seen))
        out[fam] = {k: float(np.mean([r[k] for r in runs if k in r])) for k in runs[0]}
        out[fam]["n"] = int(round(out[fam]["n"]))
    return out


def add_fit_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of how predictors are fitted, shared by ``train`` and ``evaluate``."""
    ap.add_argument("--weights", choices=("family", "none"), default="family",
                    help="family: every zoo family weighs the same in the fits (default); none: every row alike")
    ap.add_argument("--kernel-trees", type=int, default=100, metavar="N",
                    help="kernel level: boosted trees that correct the linear per-kernel costs (default 100; 0: "
                         "the linear costs alone)")
    from predictors.models import NETWORK_CORRECTIONS
    ap.add_argument("--network-correction", choices=(*NETWORK_CORRECTIONS, "none"), default="bytes",
                    help="measured level: what a network costs beyond the sum of its operators measured alone and in "
                         "pairs, learned from the training networks as a function of the bytes its operators touch "
                         "(default), of the sum, or of how many operators it has; none: the sums as they are")


def fit_weights(df, how: str):
    """Sample weights for ``--weights how``: None when every row weighs alike."""
    from predictors import dataset
    return dataset.family_weights(df) if how == "family" else None


def estimators(kernel_trees: int = 100, network_correction: str = "bytes") -> dict:
    from predictors.models import BoostedKernelRegressor, MeasuredKernelRegressor, ModelLevelRegressor
    return {"model": ModelLevelRegressor(), "kernel": BoostedKernelRegressor(n_estimators=kernel_trees),
            "measured": MeasuredKernelRegressor(fallback=BoostedKernelRegressor(n_estimators=kernel_trees),
                                                network_correction=None if network_correction == "none"
                                                else network_correction)}


def _fmt(m: dict) -> str:
    return (f"acc@5%={m['acc@5%']:.3f} acc@10%={m['acc@10%']:.3f} acc@15%={m['acc@15%']:.3f} "
            f"RMSPE={m['rmspe']:.3f} MAPE={m['mape']:.3f} Spearman={m.get('spearman', float('nan')):.3f} "
            f"Kendall={m.get('kendall', float('nan')):.3f} n={m['n']}")


def main(argv=None) -> int:
    from predictors import dataset, store
    ap = argparse.ArgumentParser(prog="python -m predictors.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, action="append", required=True, help="measurements.parquet (repeatable)")
    ap.add_argument("--zoo", type=Path, action="append", default=[], help="zoo dir with manifests (repeatable)")
    ap.add_argument("--target", default="latency_ms_median",
                    help="a measurements column, or latency_ms_corrected (see python -m predictors.train -h; "
                         "default latency_ms_median)")
    ap.add_argument("--folds", type=int, default=5, help="folds of the grouped cross-validation (default 5)")
    ap.add_argument("--model", choices=("model", "kernel", "measured", "both", "all"), default="both",
                    help="model level, kernel level, measured (operators measured alone, summed; the kernel "
                         "level for the rest), both (model and kernel; the default) or all three")
    ap.add_argument("--holdout-family", action="store_true",
                    help="score each network family by a model trained without it (needs two families or more), "
                         "instead of grouped CV by architecture")
    ap.add_argument("--shots", type=int, default=0, metavar="K",
                    help="with --holdout-family: K architectures of the held-out family are measured and join the "
                         "training data; the rest are scored (mean of 10 random draws)")
    add_fit_arguments(ap)
    ap.add_argument("--artifact", type=Path, help="score a saved predictor (train --out DIR) on --data instead")
    ap.add_argument("--expect-sha256", metavar="HEX",
                    help="with --artifact: refuse its model.skops unless it has this sha256 (pin an artifact you trust)")
    ap.add_argument("--json", type=Path, help="also write the scores here")
    args = ap.parse_args(argv)
    try:
        df = dataset.load(args.data, args.zoo, args.target)
        report: dict = {}
        rep = repeatability(df, args.target)
        if rep:
            print(f"measurement repeatability (the ceiling of any score here): {rep['pairs']} pairs of campaigns "
                  f"measuring the same job agree within 5% {rep['acc@5%']:.2f}, 10% {rep['acc@10%']:.2f}, "
                  f"15% {rep['acc@15%']:.2f}")
            report["repeatability"] = rep
            by_family = {fam: repeatability(d, args.target) for fam, d in df.groupby("zoo_family")}
            by_family = {fam: r for fam, r in by_family.items() if r}
            if len(by_family) > 1:
                print("  within 10%, per family: " + ", ".join(f"{fam} {r['acc@10%']:.2f}"
                                                            for fam, r in sorted(by_family.items())))
                report["repeatability_by_family"] = by_family
        if args.artifact:
            est, card = store.load(args.artifact, expect_sha256=args.expect_sha256)
            m = metrics(df[args.target], est.predict(df[card["features"]]))
            print(f"{args.artifact} on {len(df)} rows: {_fmt(m)}")
            report["artifact"] = m
        else:
            cols = {"model": dataset.model_level_columns(df), "kernel": dataset.kernel_level_columns(df),
                    "measured": dataset.measured_kernel_columns(df)}
            wanted = {"both": ("model", "kernel"), "all": tuple(cols)}.get(args.model, (args.model,))
            full = df
            alone = together = None   # the same for every level that reads kernels: computed and printed once
            fams = sorted(set(df["zoo_family"]) - {dataset.KERNEL_FAMILY})
            if args.holdout_family and len(fams) < 2:
                print(f"note: --holdout-family needs two network families or more; the data has {', '.join(fams)} "
                      f"only, so the scores below are grouped CV by architecture alone", file=sys.stderr)
            if "measured" in wanted and not (df["zoo_family"] == dataset.KERNEL_FAMILY).any():
                print(f"note: measured level: no {dataset.KERNEL_FAMILY} family in the data (operators measured "
                      f"alone: harness.zoo build --family kernels --like ZOO), so it is the kernel level here",
                      file=sys.stderr)
            for name, est in estimators(args.kernel_trees, args.network_correction).items():
                if name not in wanted:
                    continue
                df = dataset.rows_for(name, full)
                if len(df) < len(full):
                    print(f"{name}-level: the {dataset.KERNEL_FAMILY} family's {len(full) - len(df)} rows are "
                          f"single operators, left to the kernel level")
                w = fit_weights(df, args.weights)
                m, _ = grouped_cv(est, df[cols[name]], df[args.target], df["group"], args.folds, w)
                print(f"{name}-level, grouped {args.folds}-fold CV by architecture ({df['group'].nunique()} "
                      f"architectures): {_fmt(m)}")
                report[name] = {"grouped_cv": m}
                for fam in sorted(df["zoo_family"].unique()):
                    sel = (df["zoo_family"] == fam).to_numpy()
                    if sel.all() or df.loc[sel, "group"].nunique() < 2:
                        continue
                    mf, _ = grouped_cv(est, df.loc[sel, cols[name]], df.loc[sel, args.target], df.loc[sel, "group"],
                                       args.folds)
                    print(f"  within {fam}: {_fmt(mf)}")
                    report[name][f"grouped_cv_{fam}"] = mf
                if args.holdout_family:
                    X = df[cols[name]]
                    if name != "model" and (df["zoo_family"] == dataset.KERNEL_FAMILY).any():
                        if alone is None:
                            alone = dataset.measured_alone(df)
                            print("  distinct operators of each family measured alone (kernels family): "
                                  + ", ".join(f"{fam} {a} of {n}" for fam, (a, n) in alone.items()))
                            together = dataset.measured_pairs(df)
                            if together:
                                print("  ... and of its pairs of consecutive operators, measured together: "
                                      + ", ".join(f"{fam} {a} of {n}" for fam, (a, n) in together.items()))
                        report[name]["measured_alone"] = alone
                        if together:
                            report[name]["measured_pairs"] = together
                    for k in sorted({0, args.shots}):
                        scores = leave_family_out(est, X, df[args.target], df["zoo_family"], w is not None,
                                                  df["group"], k)
                        for fam, mf in scores.items():
                            how = f"with {k} of its architectures" if k else "without it"
                            print(f"  trained {how}, tested on {fam}{' (the rest)' if k else ''}: {_fmt(mf)}")
                            report[name][f"holdout_{fam}" + (f"_shots{k}" if k else "")] = mf
                        nets = [mf for fam, mf in scores.items() if fam != dataset.KERNEL_FAMILY]
                        if len(nets) > 1:   # one figure to compare runs by; single operators are not a network
                            mean = {a: float(np.mean([mf[a] for mf in nets])) for a in ("acc@5%", "acc@10%", "acc@15%")}
                            print(f"  mean over the {len(nets)} network families{f' ({k} shots)' if k else ''}: "
                                  + " ".join(f"{a}={v:.3f}" for a, v in mean.items()))
                            report[name]["holdout_mean" + (f"_shots{k}" if k else "")] = mean
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
