"""HELP's few-shot protocol on the shared NAS-Bench-201 latency table.

Leave one device out; from it draw 10 random architectures (the "measurements") and 1,000 other
ones; each method predicts the 1,000 from the 10 (and the other devices' full columns); score
Spearman; average over 20 draws. Printed per device for our transfer methods (stack, the CLI's
default, is bayes blended with ridge at a weight the samples choose) and the two baselines the
issue names (FLOPs only; ridge on the other devices' log latencies), with the paired difference
of stack and ridge.

    python bench/help_protocol.py [--table ../shared/data/nb201/latency_ms.csv] [--draws 20]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from predictors import nb201, transfer  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", type=Path, default=HERE.parent.parent / "shared/data/nb201/latency_ms.csv")
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--test", type=int, default=1000)
    args = ap.parse_args(argv)
    t = nb201.load_table(args.table)
    feats = nb201.cell_features(t.arch)
    macs = transfer.nb201_macs(feats)
    methods = ("flops", "ridge", "proxy", "bayes", "stack")
    res = {m: {} for m in methods}
    se = {}
    t0 = time.perf_counter()
    for d, dev in enumerate(t.devices):
        others = [i for i in range(len(t.devices)) if i != d]
        lat = t.latency[:, others]
        model = transfer.FewShotCostModel().fit(feats, lat)
        rng = np.random.default_rng(1000 + d)
        scores = {m: [] for m in methods}
        for _ in range(args.draws):
            idx = rng.permutation(len(t.arch))
            tr, te = idx[: args.samples], idx[args.samples: args.samples + args.test]
            y = t.latency[tr, d]
            for m in methods:
                p = transfer.predict(m, lat, feats, tr, y, macs=macs, model=model)
                scores[m].append(spearmanr(p[te], t.latency[te, d]).statistic)
        for m in methods:
            res[m][dev] = float(np.mean(scores[m]))
        diff = np.subtract(scores["stack"], scores["ridge"])   # paired: same samples in each draw
        se[dev] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
    wall = time.perf_counter() - t0
    print(f"HELP protocol: {args.table.name}, {len(t.devices)} devices, leave one out, {args.samples} samples, "
          f"Spearman on {args.test} others, mean of {args.draws} draws")
    print(f"{'device':16s}" + "".join(f"{m:>9s}" for m in methods) + "   stack-ridge (paired s.e.)")
    for dev in t.devices:
        gap = res["stack"][dev] - res["ridge"][dev]
        print(f"{dev:16s}" + "".join(f"{res[m][dev]:9.3f}" for m in methods) + f"   {gap:+.3f} ({se[dev]:.3f})")
    print(f"{'mean':16s}" + "".join(f"{np.mean(list(res[m].values())):9.4f}" for m in methods))
    worse = [dev for dev in t.devices if res["stack"][dev] < res["ridge"][dev]]
    print(f"stack below ridge on {len(worse)} device(s): {', '.join(worse) or '-'}")
    clear = [dev for dev in worse if res["ridge"][dev] - res["stack"][dev] > 2 * se[dev]]
    print(f"of which by more than 2 paired standard errors: {', '.join(clear) or '-'}")
    print(f"wall {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
