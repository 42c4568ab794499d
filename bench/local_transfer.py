"""The few-shot transfer through the CLI for the local machine.

nb201 candidates measured by the harness on the local target (a campaign folder) are bridged to
the NAS-Bench-201 index; the shared table's devices are the proxies. Each draw writes 10 local
measurements to SAMPLES.csv, runs ``python -m predictors.transfer``, and scores Spearman on the
other measured candidates. Prints every draw's Spearman, the mean, and the CLI's wall time.

The local latencies are, by default, each job's latency relative to the campaign's reference
model times the reference's median over the campaign: a shared machine's speed drifts during a
campaign of minutes, which reorders the jobs' own medians but not the paired ratios (``--latency
ms`` uses the raw medians; campaigns collected without a reference fall back to them).

    python -m harness.zoo build --family nb201 --sample 60 --seed 11 \\
        --table ../shared/data/nb201/latency_ms.csv --out zoo-nb201        # ~15 s per network
    python -m harness.collect --zoo zoo-nb201 --runs 50 --threads 1 --background-load 0
    python bench/local_transfer.py runs/<campaign> --zoo zoo-nb201 [--method stack] [--graph live|all|auto] \\
        [--latency auto|ms|rel]
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from predictors import dataset, nb201  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path, help="campaign folder with measurements.parquet")
    ap.add_argument("--zoo", type=Path, required=True, help="the nb201 zoo folder (manifest.json)")
    ap.add_argument("--table", type=Path, default=HERE.parent.parent / "shared/data/nb201/latency_ms.csv")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--method", default="stack")
    ap.add_argument("--latency", choices=("auto", "ms", "rel"), default="auto",
                    help="the local latencies given to the transfer: ms, the jobs' own medians; rel, "
                         "latency_ms_corrected (each job's latency relative to the reference model, times the "
                         "reference's median over the campaign); auto (default): rel when every job has it")
    ap.add_argument("--graph", default="live", help="passed to the transfer: the harness runs .tflite models, and "
                                                    "TFLite drops a cell's dead edges (default live)")
    args = ap.parse_args(argv)
    table = nb201.load_table(args.table)
    idx = nb201.bridge(args.zoo / "manifest.json", table)
    df = pd.read_parquet(args.run / "measurements.parquet")
    df = df[(df["status"] == "ok") & df["candidate_id"].isin(list(idx)) & (df["threads"] == args.threads)
            & (df["background_load"] == 0)]
    have_rel = "latency_rel_median" in df and df["latency_rel_median"].notna().all()
    if args.latency == "rel" and not have_rel:
        ap.error(f"{args.run}: --latency rel, but some jobs have no latency_rel_median (collected without a reference)")
    if args.latency == "rel" or (args.latency == "auto" and have_rel):
        lat = dataset.drift_corrected_ms(df)
        src = (f"{dataset.DRIFT_CORRECTED}, relative to {df['reference_id'].iloc[0]} x its median "
               f"{df['reference_ms_median'].median():.3f} ms")
    else:
        lat = df["latency_ms_median"]
        src = "the jobs' own ms medians"
    meas = {idx[c]: float(v) for c, v in zip(df["candidate_id"], lat)}
    first = df.iloc[0]
    archs = np.array(sorted(meas))
    print(f"{len(archs)} nb201 candidates measured on {first['target']} ({first['runtime']} "
          f"{first['runtime_version']}, {args.threads} thread); {args.samples} samples per draw, "
          f"Spearman on the other {len(archs) - args.samples}; latency: {src}")
    rng = np.random.default_rng(0)
    rhos, walls = [], []
    with tempfile.TemporaryDirectory() as tmp:
        s_csv, p_csv = Path(tmp) / "samples.csv", Path(tmp) / "pred.csv"
        for d in range(args.draws):
            perm = rng.permutation(archs)
            tr, te = perm[: args.samples], perm[args.samples:]
            s_csv.write_text("arch_index,latency_ms\n" + "".join(f"{a},{meas[a]}\n" for a in tr))
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "predictors.transfer", "--table", str(args.table), "--target-samples",
                            str(s_csv), "--out", str(p_csv), "--method", args.method, "--graph", args.graph], check=True,
                           stderr=subprocess.DEVNULL, cwd=HERE.parent)
            walls.append(time.perf_counter() - t0)
            pred = {int(r["arch_index"]): float(r["latency_ms_pred"]) for r in csv.DictReader(p_csv.open())}
            rho = spearmanr([pred[a] for a in te], [meas[a] for a in te]).statistic
            rhos.append(rho)
            print(f"draw {d:2d}: Spearman {rho:.3f}")
    print(f"{args.method}, graph {args.graph}: mean Spearman {np.mean(rhos):.3f} (min {np.min(rhos):.3f}) "
          f"over {args.draws} draws; "
          f"transfer CLI wall median {np.median(walls):.2f} s (max {np.max(walls):.2f} s, includes interpreter start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
