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
    ctx_cols = ["threads", "background_load"]
    alone = dataset.alone_costs(df.loc[alone_rows, "kernels"], df.loc[alone_rows, ctx_cols].to_numpy(float),
                                us[alone_rows])
    floors: dict[tuple, float] = {}   # per context, the cheapest operator alone
    for (c, _), v in alone.items():
        floors[c] = min(v, floors.get(c, v))
    print(f"{len(alone)} operators measured alone; floor (the cheapest alone): "
          + ", ".join(f"{f:.2f} us" + (f" at threads, load {c}" if len(floors) > 1 else "") for c, f in floors.items()))
    kinds = [k for k in F.KIND_LIST if k != "other"]
    nets = df[~alone_rows].assign(us=us[~alone_rows])
    for fam, d in nets.groupby("zoo_family"):
        rows, ys, counted = [], [], 0
        g = d.groupby(["candidate_sha256", *ctx_cols])
        for ((_, *c), ks), y in zip(g["kernels"].first().items(), g["us"].median()):
            c = tuple(float(v) for v in c)
            ops = dataset.operators(ks)
            if not ops or any((c, dataset.kernel_signature(k)) not in alone for k in ops):
                continue
            counted += 1
            floor = floors[c]
            per = dict.fromkeys(kinds, 0.0)
            for k in ops:
                per[F.cost_kind(dict(zip(F.KERNEL_FIELDS, k)))] += alone[c, dataset.kernel_signature(k)] - floor
            rows.append([per[k] for k in kinds] + [len(ops), floor])
            ys.append(y)
        n_nets = g.ngroups   # networks, each context apart
        if not rows:
            print(f"{fam}: none of its {n_nets} networks has every operator measured alone")
            continue
        A, y = np.array(rows), np.array(ys)
        n_ops, floor = A[:, -2], A[:, -1]
        A = A[:, :-2]
        total = A.sum(axis=1) + n_ops * floor
        once = A.sum(axis=1) + floor
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
