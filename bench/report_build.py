"""Time to build the report of a 50-candidate, 3-target campaign.

    python bench/report_build.py

The campaign store is filled with SYNTHETIC latencies (lognormal around a MACs-based cost), so
that only the report build is timed; nothing here is a measurement of a device.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from harness.inventory import local_target  # noqa: E402
from harness.store import Store  # noqa: E402
from reports.build import build_report  # noqa: E402


@dataclass(frozen=True)
class FakeCandidate:
    id: str
    sha256: str
    family: str
    macs: int
    params: int
    file_bytes: int
    accuracy: float
    path: str
    entry: dict


def synthetic_run(d: Path, n_cand: int = 50, targets=("pi4", "orin", "pixel"), runs: int = 100) -> Path:
    rng = np.random.default_rng(0)
    run = d / "synthetic"
    s = Store(run / "campaign.sqlite")
    s.create_campaign("synthetic", {"grid": {}, "note": "synthetic data for a report benchmark"}, "bench")
    base = local_target()
    for t in targets:
        s.add_target("synthetic", type(base)(t, base.profile, "ssh", host=t))
    cands = []
    for i in range(n_cand):
        macs = int(10 ** rng.uniform(5, 7.5))
        c = FakeCandidate(f"cand-{i:02d}", f"{i:064x}", "synthetic", macs, macs // 50, macs // 20,
                          float(np.clip(0.5 + 0.08 * np.log10(macs) + rng.normal(0, 0.03), 0, 1)), "-",
                          {"knobs": {"i": i}})
        s.add_candidate("synthetic", c)
        cands.append(c)
    s.add_jobs("synthetic", [(t, c.id, th, bg, runs) for t in targets for c in cands for th in (1, 2) for bg in (0, 1)])
    for t_i, t in enumerate(targets):
        for job in s.pending_jobs("synthetic", t):
            c = next(c for c in cands if c.id == job["candidate_id"])
            med = c.macs / 1e6 * (1 + t_i) * (1.3 if job["background_load"] else 1) / job["threads"] ** 0.7
            samples = list(med * rng.lognormal(0, 0.05, runs))
            s.record_result(job["id"], {"runtime": "synthetic", "runtime_version": "0", "load_ms": 5 * med,
                                        "first_inference_ms": 2 * med, "samples_ms": samples, "warmup_ms": samples[:10],
                                        "peak_rss_mb": 50.0, "context_before": {}, "context_after": {}}, time.time())
    s.close()
    return run


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        run = synthetic_run(Path(tmp))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = build_report(run)
            times.append(time.perf_counter() - t0)
        print(f"50 candidates x 3 targets x 4 contexts (600 jobs, 60,000 synthetic samples): report "
              f"{out.stat().st_size / 1e6:.1f} MB built in median {statistics.median(times):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)}; goal < 10 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
