"""simulator.sweep: the example file, identical rows whatever the scheduler (serial, a Dask
LocalCluster, a scheduler and worker started here on loopback), a worker killed mid-sweep, resume,
and bad sweep files. Campaigns are collected here."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.collect import main as collect
from simulator import sweep as sw
from tests.sshd import cmdline, descendants

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "simulator" / "examples" / "sweep.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real campaigns of a few bundled candidates (threads 1,2 x background load 0,1)."""
    root = tmp_path_factory.mktemp("sweep")
    for cands in ("dc-w025-d2-r32-int8,dc-w050-d0-r32-float32,dc-w100-d0-r64-float32",
                  "dc-w025-d0-r48-float32,dc-w075-d2-r48-float16"):
        assert collect(["--candidates", cands, "--out", str(root / "runs"), "--runs", "20", "--threads", "1,2",
                        "--background-load", "0,1", "--no-report", "-q", "--reference", "none"]) == 0
        time.sleep(1.1)   # campaign ids carry the second
    return root


def rows(out: Path) -> pd.DataFrame:
    df = pd.read_parquet(out)
    df = df.drop(columns=[c for c in df.columns if c.startswith(("decision_us_", "wall_"))])
    return df.sort_values(["cell", "policy"]).reset_index(drop=True)


def test_example_serial_and_local_identical(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs)
    assert sw.main([str(EXAMPLE), "--dry-run"]) == 0
    assert "72 cells x 6 policies" in capsys.readouterr().out
    assert sw.main([str(EXAMPLE), "--scheduler", "serial", "--out", "a", "-q"]) == 0
    assert sw.main([str(EXAMPLE), "--scheduler", "local", "--workers", "2", "--out", "b", "-q"]) == 0
    a, b = rows(runs / "a"), rows(runs / "b")
    assert len(a) == 72 * 6 and a.equals(b) and a["error"].isna().all()
    assert (runs / "a" / "_sweep.yaml").read_text() == EXAMPLE.read_text() and (runs / "a" / "_versions.json").exists()
    # the report of a sweep: a heatmap per metric and where each policy wins and loses
    import base64
    import re

    from reports.build import build_report
    html = build_report(runs / "a").read_text()
    assert "<h1>Sweep a</h1>" in html and "Where each policy wins and loses" in html
    imgs = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)
    assert len(imgs) == 2 and all(b"<svg" in base64.b64decode(i)[:400] for i in imgs)


def _grid(runs: Path, path: Path, policies="[all]") -> Path:
    camps = sorted(str(p) for p in (runs / "runs").iterdir())
    path.write_text(f"campaigns: {camps}\ntraces: [shipped]\npolicies: {policies}\n"
                    "deadlines_ms: [default, 0.05, 0.1]\nseeds: [0, 1, 2]\noptions: {batch: 3}\n")
    return path


def test_two_campaigns_all_policies_local_equals_serial(runs, tmp_path):
    f = _grid(runs, tmp_path / "grid.yaml")
    assert sw.main([str(f), "--scheduler", "serial", "--out", str(tmp_path / "s"), "-q"]) == 0
    assert sw.main([str(f), "--scheduler", "local", "--workers", "2", "--out", str(tmp_path / "l"), "-q"]) == 0
    s, lo = rows(tmp_path / "s"), rows(tmp_path / "l")
    assert s["cell"].nunique() == 2 * 6 * 3 * 3 and s.equals(lo)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scheduler_started_separately(runs, tmp_path):
    """`dask scheduler` and `dask worker` on loopback, started here: the same rows as serial."""
    f = _grid(runs, tmp_path / "grid.yaml", "[greedy, mpc]")
    port = _free_port()
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)]
    try:
        time.sleep(3)
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}",
                                       "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT))
        time.sleep(3)
        assert sw.main([str(f), "--scheduler", f"tcp://127.0.0.1:{port}", "--out", str(tmp_path / "c"), "-q"]) == 0
    finally:
        for p in procs[::-1]:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    assert sw.main([str(f), "--scheduler", "serial", "--out", str(tmp_path / "s"), "-q"]) == 0
    assert rows(tmp_path / "c").equals(rows(tmp_path / "s"))


def test_worker_killed_then_resume(runs, tmp_path):
    """A worker killed mid-sweep: the sweep finishes (Dask reruns its task) or --resume completes
    only what is missing; either way every cell once, and the rows equal a serial run's."""
    f = _grid(runs, tmp_path / "grid.yaml")
    out = tmp_path / "k"
    rc = []
    th = threading.Thread(target=lambda: rc.append(sw.main([str(f), "--scheduler", "local", "--workers", "2", "--out",
                                                            str(out), "-q"])))
    th.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and len(list(out.glob("part-*.parquet"))) < 5:
        time.sleep(0.05)
    workers = [p for p in descendants(os.getpid()) if "spawn" in cmdline(p) or "forkserver" in cmdline(p)]
    assert workers
    os.kill(workers[0], signal.SIGKILL)
    th.join(300)
    assert rc and rc[0] in (0, 1)
    assert sw.main([str(f), "--out", str(out), "--resume", "--scheduler", "serial", "-q"]) == 0
    k = rows(out)
    assert k.groupby(["cell", "policy"]).size().max() == 1 and k["cell"].nunique() == 108
    assert sw.main([str(f), "--scheduler", "serial", "--out", str(tmp_path / "s"), "-q"]) == 0
    assert k.equals(rows(tmp_path / "s"))


def test_resume_runs_only_missing_cells(runs, tmp_path, capsys):
    f = _grid(runs, tmp_path / "grid.yaml", "[greedy]")
    out = tmp_path / "r"
    assert sw.main([str(f), "--scheduler", "serial", "--out", str(out), "-q"]) == 0
    parts = sorted(out.glob("part-*.parquet"))
    for p in parts[:7]:
        p.unlink()
    assert sw.main([str(f), "--scheduler", "serial", "--out", str(out)]) == 2      # not without --resume
    assert "--resume" in capsys.readouterr().err
    assert sw.main([str(f), "--scheduler", "serial", "--out", str(out), "--resume"]) == 0
    assert "101 done, 7 to run" in capsys.readouterr().err
    assert len(list(out.glob("part-*.parquet"))) == 108


@pytest.mark.parametrize("body, expect", [
    ("campaigns: [newest]\ntraces: [shipped]\npolicies: [greedy]\nspeed: 3\n", "speed: not a sweep field"),
    ("campaigns: [newest]\ntraces: [shipped]\npolicies: [greedy]\nseeds: [0]\nseeds: [1]\n", "key 'seeds' given twice"),
    ("campaigns: [newest]\ntraces: [shipped]\npolicies: [greedy]\ndeadlines_ms: [0]\n", "deadlines_ms: 0 is not"),
    ("campaigns: [newest]\ntraces: [nope.csv]\npolicies: [greedy]\n", "traces: nope.csv: no such file"),
    ("campaigns: [newest]\ntraces: [shipped]\npolicies: [fastest]\n", "policies: unknown fastest"),
    ("campaigns: [newest]\ntraces: [shipped]\npolicies: [greedy]\nusers: [bob]\n", "users: 'bob' is neither"),
    ("campaigns: newest\ntraces: [shipped]\npolicies: [greedy]\n", "campaigns: expected a non-empty list"),
])
def test_bad_sweep_file(runs, tmp_path, monkeypatch, capsys, body, expect):
    monkeypatch.chdir(runs)
    f = tmp_path / "bad.yaml"
    f.write_text(body)
    assert sw.main([str(f), "--out", str(tmp_path / "o"), "--scheduler", "serial"]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and str(f) in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
    shutil.rmtree(tmp_path / "o", ignore_errors=True)
