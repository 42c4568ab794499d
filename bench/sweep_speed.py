"""Sweep speed-up: a Dask LocalCluster of N workers against the same sweep run serially, and
the per-cell overhead Dask adds.

    python bench/sweep_speed.py [--campaign runs/C] [--workers 2] [--seeds 10]

The sweep: one campaign x the shipped traces x 4 deadlines x --seeds seeds (200 cells with 10),
all policies. Overhead per cell: (workers x LocalCluster wall - serial wall) / cells, i.e. the
worker-seconds a cell costs beyond its own compute (cluster start-up included).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator import replay as rp  # noqa: E402
from simulator import sweep as sw  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--campaign", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    camp = (args.campaign or rp.newest_campaign()).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    f = tmp / "sweep.yaml"
    f.write_text(f"campaigns: ['{camp}']\ntraces: [shipped]\npolicies: [all]\ndeadlines_ms: [default, 0.05, 0.1, 0.2]\n"
                 f"seeds: {list(range(args.seeds))}\noptions: {{batch: {args.batch}}}\n")
    _, cells, names = sw.load_sweep(f)
    print(f"command: python bench/sweep_speed.py {' '.join(sys.argv[1:])}")
    print(f"{len(cells)} cells x {len(names)} policies, campaign {camp.name}, batch {args.batch}")
    t = time.perf_counter()
    sw.sweep(f, tmp / "serial", "serial")
    serial = time.perf_counter() - t
    t = time.perf_counter()
    res = sw.sweep(f, tmp / "local", "local", args.workers)
    local = time.perf_counter() - t
    a, b = (sw_rows(tmp / d) for d in ("serial", "local"))
    print(f"serial: {serial:.1f} s ({serial / len(cells) * 1e3:.0f} ms per cell)")
    run = res["wall_s"]
    print(f"LocalCluster, {args.workers} workers: {local:.1f} s in all, {res['startup_s']:.1f} s of it starting the "
          f"cluster, {run:.1f} s running the cells")
    print(f"speed-up: {serial / local:.2f}x with start-up, {serial / run:.2f}x without (goal >= 1.7x on 2 cores); "
          f"Dask's overhead per cell: {(args.workers * run - serial) / len(cells) * 1e3:.0f} worker-ms (start-up aside); "
          f"rows identical: {a.equals(b)}")
    return 0


def sw_rows(d: Path):
    import pandas as pd
    df = pd.read_parquet(d)
    df = df.drop(columns=[c for c in df.columns if c.startswith(("decision_us_", "wall_"))])
    return df.sort_values(["cell", "policy"]).reset_index(drop=True)


if __name__ == "__main__":
    sys.exit(main())
