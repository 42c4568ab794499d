"""python -m predictors.train --data measurements.parquet --target latency_ms_median --out DIR

Trains a model-level (default), kernel-level or measured-kernel predictor on every ok row, scores it first with
grouped CV by architecture (the scores go into DIR/card.json), and saves it with skops."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.errors import HarnessError


def main(argv=None) -> int:
    from predictors import dataset, evaluate, store
    ap = argparse.ArgumentParser(prog="python -m predictors.train", description=__doc__.split("\n\n")[1])
    ap.add_argument("--data", type=Path, action="append", required=True, help="measurements.parquet (repeatable)")
    ap.add_argument("--zoo", type=Path, action="append", default=[], help="zoo dir with manifests (repeatable)")
    ap.add_argument("--target", default="latency_ms_median",
                    help="latency_ms_median, latency_ms_p90, energy_mj, ...; latency_ms_corrected: latency_rel_median "
                         "x the reference model's median over the data (ms without the machine's drift); "
                         "default latency_ms_median")
    ap.add_argument("--level", choices=("model", "kernel", "measured"), default="model",
                    help="measured: models whose operators were all measured alone (kernels built --like them) "
                         "are their sum (times what the training networks cost beyond theirs); the rest the kernel "
                         "level's (default: model, features of the whole graph)")
    ap.add_argument("--folds", type=int, default=5, help="folds of the grouped cross-validation on the card (default 5)")
    evaluate.add_fit_arguments(ap)
    ap.add_argument("--allow-estimates", action="store_true",
                    help="train energy on power-model estimates too (the card says so)")
    ap.add_argument("--out", type=Path, required=True, help="folder for model.skops and card.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        df = dataset.rows_for(args.level, dataset.load(args.data, args.zoo, args.target, args.allow_estimates))
        cols = {"model": dataset.model_level_columns, "kernel": dataset.kernel_level_columns,
                "measured": dataset.measured_kernel_columns}[args.level](df)
        est = evaluate.estimators(args.kernel_trees, args.network_correction)[args.level]
        X, y = df[cols], df[args.target].to_numpy(float)
        w = evaluate.fit_weights(df, args.weights)
        cv = None
        if df["group"].nunique() >= 2:
            cv, _ = evaluate.grouped_cv(est, X, y, df["group"], args.folds, w)
        est.fit(X, y, **({} if w is None else {"sample_weight": w}))
        card = {"target": args.target, "level": args.level, "features": cols, "n_rows": len(df),
                "n_architectures": int(df["group"].nunique()), "targets": sorted(df["target"].unique()),
                "families": sorted(df["zoo_family"].unique()), "sample_weights": args.weights,
                "energy_sources": sorted(df["energy_source"].astype(str).unique()) if "energy" in args.target else None,
                "training_data": dataset.data_hashes(args.data),
                "cv": {"scheme": f"GroupKFold({min(args.folds, df['group'].nunique())}) by architecture", "scores": cv}}
        if args.target == dataset.DRIFT_CORRECTED:
            # what the ms scale is: the reference model's median per device and context
            card["reference_ms_median"] = [
                {"target": t, "reference_id": r, "threads": int(th), "background_load": int(bg), "ms": float(v)}
                for (t, r, th, bg), v in df.groupby(dataset.REFERENCE_CONTEXT)["reference_ms_median"].median().items()]
        path = store.save(args.out, est, card)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    msg = f"acc@10%={cv['acc@10%']:.3f} MAPE={cv['mape']:.3f}" if cv else "no CV (one architecture)"
    print(f"{path}: {args.level}-level {args.target} on {len(df)} rows; grouped CV {msg}; {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
