"""Fidelity: median latency through the harness over loopback SSH vs in-process, same runtime/threads.

    python bench/fidelity.py [--candidates 6] [--runs 300] [--threads 1]

Prints one ratio per candidate (harness median / in-process median). Goal: within 3%.
In-process medians are taken before and after the harness run and averaged, to cancel drift
on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow.parquet as pq  # noqa: E402

from bench._ssh import loopback_target  # noqa: E402
from harness.agent import load_runtime, measure  # noqa: E402
from harness.collect import main as collect  # noqa: E402
from harness.zoo.manifest import BUNDLED, load_manifest  # noqa: E402


def in_process(rt, path: str, threads: int, runs: int) -> float:
    r = measure(rt, {"model": path, "threads": threads, "n_runs": runs})
    return statistics.median(r["samples_ms"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=6)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    _, cands = load_manifest(BUNDLED)
    # a spread over the MAC range, float and int8
    cands = sorted(cands, key=lambda c: c.macs)
    pick = [cands[round(i * (len(cands) - 1) / (a.candidates - 1))] for i in range(a.candidates)]
    rt = load_runtime()
    before = {c.id: in_process(rt, str(c.path), a.threads, a.runs) for c in pick}
    srv, inv, kh, tmp = loopback_target()
    try:
        out = tmp / "runs"
        rc = collect(["-i", str(inv), "--known-hosts", str(kh), "--ssh-config", str(tmp / "none"), "--out", str(out),
                      "--candidates", ",".join(c.id for c in pick), "--threads", str(a.threads),
                      "--background-load", "0", "--runs", str(a.runs), "--no-report", "-q"])
        assert rc == 0, rc
        (d,) = list(out.iterdir())
        harness = {r["candidate_id"]: r["latency_ms_median"] for r in pq.read_table(d / "measurements.parquet").to_pylist()}
    finally:
        srv.kill_all()
    after = {c.id: in_process(rt, str(c.path), a.threads, a.runs) for c in pick}
    print(f"runtime {rt.name} {rt.version}, threads={a.threads}, runs={a.runs}, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'candidate':32s} {'in-process ms':>14s} {'harness/ssh ms':>15s} {'ratio':>7s}")
    ratios = []
    for c in pick:
        ref = (before[c.id] + after[c.id]) / 2
        ratio = harness[c.id] / ref
        ratios.append(ratio)
        print(f"{c.id:32s} {ref:14.4f} {harness[c.id]:15.4f} {ratio:7.3f}")
    worst = max(abs(r - 1) for r in ratios)
    print(f"median ratio {statistics.median(ratios):.3f}; worst deviation {100 * worst:.1f}% (goal <= 3%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
