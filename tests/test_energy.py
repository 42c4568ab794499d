"""Energy and context telemetry, end to end on the local target.

A test process plays a Jetson-like INA3221 hwmon tree (files under tmp_path, the agent's sysfs
root moved there by EDGE_AGENT_SYSFS_ROOT) with a known power curve while a real model runs.
The agent samples it at 50 Hz in its background thread and integrates over the timed window;
the integral must be within 2% of the curve's exact integral over the same window."""
from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from harness.collect import main
from harness.telemetry import meters
from tests.conftest import make_zoo

P0, P1, PERIOD, VOLT = 4000.0, 2500.0, 0.37, 5000.0   # mW = P0 + P1 sin(2 pi t / PERIOD), at 5 V

WRITER = f"""
import math, os, sys, time
d = sys.argv[1]
while True:
    p = {P0} + {P1} * math.sin(2 * math.pi * time.monotonic() / {PERIOD})
    tmp = d + "/curr1_input.tmp"
    with open(tmp, "w") as f:
        f.write("%d\\n" % round(p * 1000.0 / {VOLT}))   # mA, integer like the driver
    os.replace(tmp, d + "/curr1_input")
    time.sleep(0.0005)
"""


def runs_for(cid: str, seconds: float, at_least: int) -> int:
    """Timed runs that make a ``seconds``-long window of bundled candidate ``cid`` on this
    machine (its speed varies several-fold between machines of one kind): timed here first."""
    from harness.agent import load_runtime
    from harness.zoo.manifest import BUNDLED
    interp = load_runtime().Interpreter(model_path=str(next(BUNDLED.rglob(f"{cid}.tflite"))), num_threads=1)
    interp.allocate_tensors()
    for _ in range(20):
        interp.invoke()
    t = time.perf_counter()
    for _ in range(100):
        interp.invoke()
    return max(at_least, math.ceil(seconds / ((time.perf_counter() - t) / 100)))


def power_integral(t0: float, t1: float) -> float:
    """Exact mJ of the curve over [t0, t1] (mW x s)."""
    w = 2 * math.pi / PERIOD
    return P0 * (t1 - t0) - P1 / w * (math.cos(w * t1) - math.cos(w * t0))


def hwmon_tree(root):
    d = root / "sys/class/hwmon/hwmon3"   # the index is discovered, not assumed
    d.mkdir(parents=True)
    (d / "name").write_text("ina3221\n")
    for k, label, mv, ma in ((1, "VDD_IN", VOLT, 800), (2, "VDD_CPU_GPU_CV", 5000, 100)):
        (d / f"in{k}_label").write_text(label + "\n")
        (d / f"in{k}_input").write_text(f"{int(mv)}\n")
        (d / f"curr{k}_input").write_text(f"{ma}\n")
    return d


@pytest.fixture
def live_power(tmp_path):
    root = tmp_path / "fake sysfs"
    d = hwmon_tree(root)
    w = subprocess.Popen([sys.executable, "-c", WRITER, str(d)])
    time.sleep(0.2)
    yield root
    w.kill()
    w.wait()


def test_discovery_prefers_board_rail_and_globs_indices(tmp_path):
    root = tmp_path / "r"
    hwmon_tree(root)
    src = meters.discover(str(root))
    assert src.name == "sensor:ina3221-hwmon:VDD_IN"
    assert src.read() == pytest.approx(VOLT * 800 / 1000)
    # no board rail: the rails are summed and the label says module-only
    (root / "sys/class/hwmon/hwmon3/in1_label").write_text("VDD_SOC\n")
    src = meters.discover(str(root))
    assert "module-only" in src.name and src.read() == pytest.approx(5000 * 800 / 1000 + 5000 * 100 / 1000)


def test_integration_is_exact_on_a_linear_ramp():
    class Ramp:
        kind = "power"

        def read(self):
            return 1000.0 + 500.0 * time.monotonic()
    s = meters.PowerSampler(Ramp(), hz=100).start()
    time.sleep(0.3)
    t0 = time.monotonic()
    time.sleep(0.5)
    t1 = time.monotonic()
    time.sleep(0.05)
    s.stop()
    e, n = s.integrate(t0, t1)
    truth = 1000.0 * (t1 - t0) + 250.0 * (t1 ** 2 - t0 ** 2)
    assert n >= 40 and e == pytest.approx(truth, rel=1e-3)


def test_energy_end_to_end_within_2_percent_at_50hz(tmp_path, live_power, monkeypatch):
    cid = "dc-w100-d0-r64-float32"           # the slowest bundled candidate
    zoo = make_zoo(tmp_path / "zoo", [cid])
    monkeypatch.setenv("EDGE_AGENT_SYSFS_ROOT", str(live_power))
    out = tmp_path / "runs"
    runs = runs_for(cid, 1.0, 800)           # a ~1 s timed window
    assert main(["--zoo", str(zoo), "--out", str(out), "--runs", str(runs), "--threads", "1",
                 "--background-load", "0", "--no-report", "-q"]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    db = sqlite3.connect(run / "campaign.sqlite")
    (res,) = [json.loads(r[0]) for r in db.execute("SELECT result FROM jobs")]
    e = res["energy"]
    assert e["source"] == "sensor:ina3221-hwmon:VDD_IN" and e["method"].startswith("sampled 50 Hz")
    assert e["window_s"] > 0.5 and e["n_power_samples"] >= 0.9 * 50 * e["window_s"]
    truth = power_integral(e["t_start_mono"], e["t_end_mono"])
    assert e["energy_total_mj"] == pytest.approx(truth, rel=0.02)
    (row,) = pq.read_table(run / "measurements.parquet").to_pylist()
    assert row["energy_source"] == "sensor:ina3221-hwmon:VDD_IN"
    n = e["n_inferences"]
    assert n == row["n_runs"]           # a 1 s window is long enough: no extra inferences
    assert row["energy_mj"] == pytest.approx((e["energy_total_mj"] - row["idle_power_mw"] * e["window_s"]) / n)
    assert P0 - P1 <= row["idle_power_mw"] <= P0 + P1


def test_local_without_sensor_says_estimate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGE_AGENT_SYSFS_ROOT", str(tmp_path / "empty"))   # no RAPL, no INA3221
    zoo = make_zoo(tmp_path / "zoo", ["dc-w025-d2-r32-float32"])
    out = tmp_path / "runs"
    assert main(["--zoo", str(zoo), "--out", str(out), "--runs", "5", "--threads", "1",
                 "--background-load", "0", "--no-report"]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    (row,) = pq.read_table(run / "measurements.parquet").to_pylist()
    assert row["energy_source"] == "estimate:power_model(x86-linux)" and row["energy_mj"] > 0
    assert "ESTIMATE" in capsys.readouterr().out


def test_rapl_or_estimate_on_this_machine(tmp_path):
    """On the real sysfs: RAPL when readable (root, Intel/AMD), otherwise no source at all."""
    src = meters.discover("")
    assert src is None or src.name.startswith(("sensor:rapl", "sensor:ina3221", "sensor:android"))


def test_collect_flags_external_load(tmp_path, capsys):
    """A background process started by the test (not by the job) keeps both CPUs busy while
    a job runs: the job is flagged, in the summary and in measurements.parquet."""
    zoo = make_zoo(tmp_path / "zoo", ["dc-w100-d0-r64-float32"])
    runs = runs_for("dc-w100-d0-r64-float32", 0.7, 600)   # before the hog starts
    hog = subprocess.Popen([sys.executable, "-c", "import multiprocessing as m\n"
                            "def f():\n  while True: pass\n"
                            "ps=[m.Process(target=f) for _ in range(2)]\n[p.start() for p in ps]\n[p.join() for p in ps]"],
                           start_new_session=True)     # its own group: stopped with its children by its pid
    try:
        time.sleep(0.5)
        out = tmp_path / "runs"
        assert main(["--zoo", str(zoo), "--out", str(out), "--runs", str(runs), "--threads", "1",
                     "--background-load", "0", "--no-report"]) == 0
    finally:
        os.killpg(hog.pid, signal.SIGKILL)
        hog.wait()
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    (row,) = pq.read_table(run / "measurements.parquet").to_pylist()
    assert row["context_flags"] and row["context_flags"].startswith("external-load:")
    text = capsys.readouterr().out
    assert "CONTEXT-CHANGED" in text and "context changed during 1 measurement" in text
