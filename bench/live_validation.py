"""The simulator's error against live runs on the local target, and the error left once a live
run calibrated the world.

    python bench/live_validation.py [--campaign runs/C] [--trace traces/local-load1-step.csv] [--repeat 3]

For greedy and a policy that switches at every decision (cycle, bench/cycle_policy.py): simulated
vs live mean latency, p95, miss rate, QoE and chosen-candidate agreement over --repeat live runs
(the median; live_repeatability is how far the runs are from each other, the ceiling of any
simulator here); then the same with --calibrate from the first comparison.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator import live  # noqa: E402
from simulator import replay as rp  # noqa: E402

GOALS = {"latency_ms_mean": "within 10%", "miss_rate": "within 0.05", "candidate_agreement": ">= 0.90 (greedy)"}


def table(d: Path) -> dict:
    with (d / "validation.csv").open() as f:
        return {r["metric"]: r for r in csv.DictReader(f)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--campaign", type=Path)
    ap.add_argument("--trace", type=Path, default=ROOT / "traces" / "local-load1-step.csv")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    camp = args.campaign or rp.newest_campaign()
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    print(f"command: python bench/live_validation.py {' '.join(sys.argv[1:])}; campaign {camp}; trace {args.trace}")
    for policy in ("greedy", "cycle"):
        first = tmp / f"{policy}-raw"
        for label, extra, out in (("world as measured", [], first),
                                  ("world calibrated by a live run", ["--calibrate", str(first)], tmp / f"{policy}-cal")):
            with contextlib.redirect_stdout(io.StringIO()):   # the table below says it once
                rc = live.main(["--target", "local", "--campaign", str(camp), "--trace", str(args.trace), "--policy",
                                policy, "--plugin", str(ROOT / "bench" / "cycle_policy.py"), "--repeat", str(args.repeat),
                                "--out", str(out), "-q", *extra])
            if rc != 0:
                print(f"{policy}: live run failed ({rc})")
                continue
            v = table(out)
            print(f"\n{policy}, {label} ({args.repeat} live runs):")
            print(f"  {'metric':22s} {'simulated':>10s} {'live':>10s} {'error':>8s} {'live spread':>12s}  goal")
            for m in ("latency_ms_mean", "latency_ms_p95", "miss_rate", "qoe_mean", "switches", "candidate_agreement"):
                r = v[m]
                spread = v.get(f"live_repeatability:{m}", {}).get("error", "")
                print(f"  {m:22s} {float(r['simulated']):10.4f} {float(r['live']):10.4f} {float(r['error']):8.3f} "
                      f"{(f'{float(spread):12.3f}' if spread != '' else ''):>12s}  {GOALS.get(m, '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
