"""Overhead: wall time of a collection over loopback SSH / time the agent spent measuring.

    python bench/overhead.py [--candidates 8] [--runs 200]

"Measuring" = model load + first inference + warm-up + timed runs, as timed by the agent.
The naive baseline starts one fresh SSH connection and one fresh agent process per candidate
(what a shell loop of `ssh board python run_one.py model` does). Goal for ours: <= 1.15.
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
from harness.collect import main as collect  # noqa: E402
from harness.runner import AGENT_SOURCE  # noqa: E402
from harness.transport.ssh import SSHParams, SSHTransport  # noqa: E402
from harness.zoo.manifest import BUNDLED, load_manifest  # noqa: E402


def agent_ms(r: dict) -> float:
    return r["load_ms"] + r["first_inference_ms"] + sum(r["warmup_ms"]) + sum(r["samples_ms"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args()
    _, cands = load_manifest(BUNDLED)
    cands = sorted(cands, key=lambda c: c.macs)
    pick = [cands[round(i * (len(cands) - 1) / (a.candidates - 1))] for i in range(a.candidates)]
    srv, inv, kh, tmp = loopback_target()
    try:
        out = tmp / "runs"
        t0 = time.perf_counter()
        rc = collect(["-i", str(inv), "--known-hosts", str(kh), "--ssh-config", str(tmp / "none"), "--out", str(out),
                      "--candidates", ",".join(c.id for c in pick), "--threads", "1", "--background-load", "0",
                      "--runs", str(a.runs), "--no-report", "-q"])
        wall = time.perf_counter() - t0
        assert rc == 0
        (db,) = out.glob("*/campaign.sqlite")
        con = sqlite3.connect(db)
        busy = 0.0
        for (jid,) in con.execute("SELECT id FROM jobs"):
            load, first = con.execute("SELECT load_ms, first_inference_ms FROM jobs WHERE id=?", (jid,)).fetchone()
            s = con.execute("SELECT sum(latency_ms) FROM samples WHERE job_id=?", (jid,)).fetchone()[0]
            busy += load + first + s
        ours = wall / (busy / 1e3)

        # naive: one fresh connection + fresh process per candidate
        t0 = time.perf_counter()
        busy_naive = 0.0
        for c in pick:
            t = SSHTransport(SSHParams(srv.addr, srv.port, identity_file=str(srv.user_key), known_hosts=str(kh),
                                       ssh_config=str(tmp / "none")))
            t.connect()
            remote = f"{tmp}/naive/{c.path.name}"
            t.mkdir(f"{tmp}/naive")
            t.put(str(c.path), remote)
            t.put(str(AGENT_SOURCE), f"{tmp}/naive/agent.py")
            p = t.start([sys.executable, f"{tmp}/naive/agent.py"])
            p.write_line(json.dumps({"cmd": "measure", "model": remote, "threads": 1, "n_runs": a.runs}))
            busy_naive += agent_ms(json.loads(p.read_line(300)))
            p.close()
            t.close()
        wall_naive = time.perf_counter() - t0
        naive = wall_naive / (busy_naive / 1e3)
    finally:
        srv.kill_all()
    print(f"{len(pick)} candidates x {a.runs} runs over loopback SSH, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"harness: wall {wall:.2f} s, agent measuring {busy / 1e3:.2f} s, overhead ratio {ours:.3f} (goal <= 1.15)")
    print(f"naive (fresh ssh + process per candidate): wall {wall_naive:.2f} s, measuring {busy_naive / 1e3:.2f} s, "
          f"overhead ratio {naive:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
