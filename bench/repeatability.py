"""How well does this machine agree with itself? The acc@x% ceiling of any latency predictor.

Given two or more campaigns that measured the same candidates in the same contexts (e.g. the
same ``python -m harness.collect`` run twice), prints the fraction of (candidate, context) pairs
whose medians agree within 5/10/15% between every pair of campaigns, with the spread of the
ratios: for the latency in ms and for the relative latency (to the reference model measured in
pairs with each job). A predictor scored against one campaign cannot be expected to beat the fraction a second
measurement of the same thing reaches.

    python -m harness.collect --out runs/a && python -m harness.collect --out runs/b
    python bench/repeatability.py runs/a/<campaign> runs/b/<campaign>
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

KEY = ("target", "candidate_id", "threads", "background_load")


def medians(run: Path, column: str = "latency_ms_median", reference: str | None = None) -> dict[tuple, float]:
    """``column`` per (target, candidate, context); only the jobs paired with ``reference`` if given."""
    rows = pq.read_table(run / "measurements.parquet").to_pylist()
    return {tuple(r[k] for k in KEY): r[column] for r in rows if r["status"] == "ok" and r.get(column)
            and (reference is None or r.get("reference_id") == reference)}


def references(run: Path) -> set[str]:
    t = pq.read_table(run / "measurements.parquet")
    return {r for r in t.column("reference_id").to_pylist() if r} if "reference_id" in t.column_names else set()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path, help="campaign folders (measurements.parquet)")
    ap.add_argument("--column", action="append", help="measurements.parquet column(s) to compare "
                    "(default: latency_ms_median and latency_rel_median)")
    args = ap.parse_args(argv)
    if len(args.runs) < 2:
        ap.error("need at least two campaigns")
    for col in args.column or ("latency_ms_median", "latency_rel_median"):
        print(f"[{col}]")
        compare(args.runs, [medians(r, col) for r in args.runs])
        refs = set.union(*(references(r) for r in args.runs))
        if col == "latency_rel_median" and len(refs) > 1:
            # --reference auto pairs each candidate with a reference of its own dtype class
            for ref in sorted(refs):
                print(f"  paired with {ref}:")
                compare(args.runs, [medians(r, col, ref) for r in args.runs], indent="  ")
    return 0


def compare(runs: list[Path], ms: list[dict], indent: str = "") -> None:
    for (i, a), (j, b) in itertools.combinations(enumerate(ms), 2):
        common = sorted(set(a) & set(b))
        if not common:
            print(f"{indent}{runs[i].name} vs {runs[j].name}: nothing measured in both")
            continue
        r = np.array([b[k] / a[k] for k in common])
        dev = np.abs(r - 1)
        print(f"{indent}{runs[i].name} vs {runs[j].name}: {len(common)} (candidate, context) pairs; "
              f"within 5% {np.mean(dev <= 0.05):.2f}, 10% {np.mean(dev <= 0.10):.2f}, 15% {np.mean(dev <= 0.15):.2f}; "
              f"ratio median {np.median(r):.3f}, 5-95% {np.percentile(r, 5):.3f}-{np.percentile(r, 95):.3f}")


if __name__ == "__main__":
    sys.exit(main())
