"""Overhead: wall time of a collection over loopback SSH / time the agent spent measuring.

    python bench/overhead.py [--candidates 32] [--runs 300]

"Measuring" = model load + first inference + warm-up + timed runs, as timed by the agent.
The naive baseline starts one fresh SSH connection and one fresh agent process per candidate
(what a shell loop of `ssh board python run_one.py model` does). Goal for ours: <= 1.15.

The ratio depends on how much measuring there is per campaign: the harness has a fixed cost
(SSH handshake, agent start with its runtime import, Parquet export) and a per-job cost. Both
are printed, so the ratio for another workload can be worked out.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._ssh import loopback_target  # noqa: E402
from harness.bundle import agent_bundle  # noqa: E402
from harness.collect import main as collect  # noqa: E402
from harness.transport.ssh import SSHParams, SSHTransport  # noqa: E402
from harness.zoo.manifest import BUNDLED, load_manifest  # noqa: E402


def agent_ms(r: dict) -> float:
    return r["load_ms"] + r["first_inference_ms"] + sum(r["warmup_ms"]) + sum(r["samples_ms"])


def harness_run(srv, inv, kh, tmp, pick, a, tag: str) -> tuple[float, float, float, int]:
    """One collection; returns (wall s, agent measuring s, span of the jobs s, jobs)."""
    out = tmp / f"runs-{tag}"
    t0 = time.perf_counter()
    rc = collect(["-i", str(inv), "--known-hosts", str(kh), "--ssh-config", str(tmp / "none"), "--out", str(out),
                  "--candidates", ",".join(c.id for c in pick), "--threads", a.threads, "--background-load", "0",
                  "--runs", str(a.runs), "--no-report", "-q"])
    wall = time.perf_counter() - t0
    assert rc == 0
    (db,) = out.glob("*/campaign.sqlite")
    con = sqlite3.connect(db)
    (t_first, t_last, n_jobs), = con.execute("SELECT min(started_at), max(finished_at), count(*) FROM jobs")
    busy = con.execute("SELECT sum(load_ms + first_inference_ms) FROM jobs").fetchone()[0]
    busy += con.execute("SELECT sum(latency_ms) FROM samples").fetchone()[0]  # warm-up and timed samples
    return wall, busy / 1e3, t_last - t_first, n_jobs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=32)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", default="1,2", help="thread counts: each pushed model is measured in each")
    a = ap.parse_args()
    _, cands = load_manifest(BUNDLED)
    cands = sorted(cands, key=lambda c: c.macs)
    pick = [cands[round(i * (len(cands) - 1) / (a.candidates - 1))] for i in range(a.candidates)]
    srv, inv, kh, tmp = loopback_target()
    try:
        first = harness_run(srv, inv, kh, tmp, pick, a, "first")     # models pushed
        cached = harness_run(srv, inv, kh, tmp, pick, a, "cached")   # models already on the target
        # naive: one fresh connection + fresh process per candidate and context, model pushed each time
        t0 = time.perf_counter()
        busy_naive = 0.0
        for c in pick:
            for th in a.threads.split(","):
                t = SSHTransport(SSHParams(srv.addr, srv.port, identity_file=str(srv.user_key), known_hosts=str(kh),
                                           ssh_config=str(tmp / "none")))
                t.connect()
                t.mkdir(f"{tmp}/naive")
                remote = f"{tmp}/naive/{c.path.name}"
                t.put(str(c.path), remote)
                t.put(str(agent_bundle()), f"{tmp}/naive/agent.pyz")
                p = t.start([sys.executable, f"{tmp}/naive/agent.pyz", "--log", f"{tmp}/naive/log"])
                p.write_line(json.dumps({"cmd": "measure", "model": remote, "threads": int(th), "n_runs": a.runs}))
                busy_naive += agent_ms(json.loads(p.read_line(300)))
                p.close()
                t.close()
        wall_naive = time.perf_counter() - t0
    finally:
        srv.kill_all()
    print(f"{len(pick)} candidates x threads {a.threads} x {a.runs} runs over loopback SSH, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    for name, (wall, busy, span, n) in (("first campaign (models pushed)", first), ("repeat (models cached)", cached)):
        print(f"harness, {name}: wall {wall:.2f} s, agent measuring {busy:.2f} s, overhead ratio {wall / busy:.3f} "
              f"(goal <= 1.15); per job {1e3 * (span - busy) / n:.1f} ms beyond measuring, fixed {wall - span:.2f} s")
    print(f"naive (fresh ssh + process per job): wall {wall_naive:.2f} s, measuring {busy_naive / 1e3:.2f} s, "
          f"overhead ratio {wall_naive / (busy_naive / 1e3):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
