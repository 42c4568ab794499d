"""A network against the sum of its own operators measured alone, from collected campaigns.

Collect a family of networks and the kernels family built ``--like`` it (``python -m harness.zoo
build --family kernels --like ZOO``), then give both here. For every network whose operators
(but standalone ReLUs and reshapes) were all measured alone, at the same kind, dtype class,
shapes, kernel and stride, prints per family:

* ``net/sum``: the network's latency over the sum of its operators' latencies alone (the
  median over the campaigns of each);
* ``floor once``: the same with the per-invoke floor (the cheapest kernel alone) counted once
  rather than once per operator;
* per kind, the factor by which the kind's operators cost inside the network what they cost
  alone (above the floor): a non-negative least-squares fit of the family's networks, relative
  error, with the kind's share of the summed time. A factor far from 1, or different between
  families for the same kind, is what a predictor trained on kernels alone and other families
  cannot know about a new family.

The in-process counterpart, timed in interleaved rounds rather than taken from campaigns, is
``bench/kernel_additivity.py``.

    python bench/alone_vs_network.py --data runs/<nb201>/measurements.parquet \\
        --data runs/<k-nb201>/measurements.parquet --zoo zoo/nb201 --zoo zoo/k-nb201
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from scipy.optimize import nnls  # noqa: E402

from harness.errors import HarnessError  # noqa: E402
from predictors import dataset  # noqa: E402
from predictors import features as F  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, action="append", required=True)
    ap.add_argument("--zoo", type=Path, action="append", default=[])
    ap.add_argument("--target", default=dataset.DRIFT_CORRECTED)
    a = ap.parse_args(argv)
    try:
        df = dataset.load(a.data, a.zoo, a.target)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    us = df[a.target].to_numpy() * 1e3
    alone_rows = (df["zoo_family"] == dataset.KERNEL_FAMILY).to_numpy()
    if not alone_rows.any():
        print("error: no kernels-family rows in the data: collect a zoo built with --family kernels --like",
              file=sys.stderr)
        return 2
    by_sig: dict[tuple, list[float]] = {}
    for ks, t in zip(df.loc[alone_rows, "kernels"], us[alone_rows]):
        main_ops = [k for k in ks if k[0] != "other"]
        if len(main_ops) == 1:
            by_sig.setdefault(dataset.kernel_signature(main_ops[0]), []).append(t)
    alone = {s: float(np.median(v)) for s, v in by_sig.items()}
    floor = min(alone.values())
    print(f"{len(alone)} operators measured alone; floor (the cheapest alone): {floor:.2f} us")
    kinds = [k for k in F.KIND_LIST if k != "other"]
    nets = df[~alone_rows].assign(us=us[~alone_rows])
    for fam, d in nets.groupby("zoo_family"):
        rows, ys, counted = [], [], 0
        for (_, ks), y in zip(d.groupby("candidate_sha256")["kernels"].first().items(),
                              d.groupby("candidate_sha256")["us"].median()):
            ops = [k for k in ks if k[0] != "other"]
            if not ops or any(dataset.kernel_signature(k) not in alone for k in ops):
                continue
            counted += 1
            per = dict.fromkeys(kinds, 0.0)
            for k in ops:
                per[F.cost_kind(dict(zip(F.KERNEL_FIELDS, k)))] += alone[dataset.kernel_signature(k)] - floor
            rows.append([per[k] for k in kinds] + [len(ops)])
            ys.append(y)
        n_nets = d["candidate_sha256"].nunique()
        if not rows:
            print(f"{fam}: none of its {n_nets} networks has every operator measured alone")
            continue
        A, y = np.array(rows), np.array(ys)
        total = A[:, :-1].sum(axis=1) + A[:, -1] * floor
        once = A[:, :-1].sum(axis=1) + floor
        for name, s in (("net/sum", y / total), ("floor once", y / once)):
            print(f"{fam} ({counted} of {n_nets} networks) {name}: median {np.median(s):.3f}, SD {np.std(s):.3f}, "
                  f"range {s.min():.3f}-{s.max():.3f}, within 10% of 1: {np.mean(np.abs(s - 1) <= 0.1):.2f}")
        used = [i for i in range(len(kinds)) if A[:, i].any()]
        coef, _ = nnls(A[:, used] / y[:, None], (y - floor) / y)
        share = A[:, used].sum(axis=0) / A[:, used].sum()
        # a kind with under 1% of the time barely moves any network: its factor is not determined
        print("  in-network factor per kind (share of the summed time): "
              + ", ".join(f"{kinds[i]} {c:.2f} ({s:.0%})" if s >= 0.01 else f"{kinds[i]} - ({s:.1%})"
                          for i, c, s in zip(used, coef, share)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
