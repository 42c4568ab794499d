"""Measurement hygiene on the local target: governor and nvpmodel pinning (restored afterwards),
thread pinning, cool-down to the idle baseline, all recorded with every job. The cpufreq and
thermal files are a tree under tmp_path (the agent's sysfs root); nvpmodel is a script on PATH
that keeps its mode in that tree, as JetPack keeps it in /var/lib/nvpmodel/status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from harness.bundle import agent_bundle
from harness.collect import main
from harness.transport.local import LocalTransport
from tests.conftest import fake_tool, make_zoo, write_tree

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "device-output")

NVPMODEL = """
import os, sys
st = os.path.join(sys.argv[0] + ".d", "status")
calls = os.path.join(sys.argv[0] + ".d", "calls")
with open(calls, "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
mode = open(st).read().split("pmode:")[1][:4] if os.path.exists(st) else "0000"
if sys.argv[1] == "-q":
    print("NVPM WARN: fan mode is not set!\\nNV Power Mode: MODE_%d\\n%d" % (int(mode), int(mode)))
elif sys.argv[1] == "-m":
    open(st, "w").write("pmode:%04d fmode:quiet" % int(sys.argv[2]))
"""


@pytest.fixture
def device(tmp_path, monkeypatch):
    cpufreq = {f"sys/devices/system/cpu/cpu{cpu}/cpufreq/{k}": v for cpu in (0, 1) for k, v in (
        ("scaling_governor", "schedutil"), ("scaling_available_governors", "performance powersave schedutil"),
        ("scaling_cur_freq", "1800000"))}
    root = write_tree(tmp_path / "root", {**cpufreq, "sys/class/thermal/thermal_zone0/type": "cpu-thermal",
                                          "sys/class/thermal/thermal_zone0/temp": "40000"})
    bindir = tmp_path / "bin"
    fake_tool(bindir, "nvpmodel", NVPMODEL)
    state = bindir / "nvpmodel.d"
    state.mkdir()
    (root / "var/lib").mkdir(parents=True)
    os.symlink(state, root / "var/lib/nvpmodel")
    (state / "status").write_text("pmode:0002 fmode:quiet")
    monkeypatch.setenv("EDGE_AGENT_SYSFS_ROOT", str(root))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return root, state


def inventory(tmp_path, **extra) -> str:
    lines = ["targets:", "  - name: board", "    profile: jetson-orin-nano", "    transport: local",
             f"    python: {sys.executable}"] + [f"    {k}: {json.dumps(v)}" for k, v in extra.items()]
    p = tmp_path / "inv.yaml"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def governors(root):
    return [(root / f"sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor").read_text().strip() for c in (0, 1)]


def test_pinning_recorded_and_restored(tmp_path, device):
    root, state = device
    zoo = make_zoo(tmp_path / "zoo", ["dc-w025-d2-r32-float32"])
    inv = inventory(tmp_path, governor="performance", nvpmodel=0, cpus=[0], cooldown_c=2.0)
    out = tmp_path / "runs"
    assert main(["-i", inv, "--zoo", str(zoo), "--out", str(out), "--runs", "5", "--threads", "1",
                 "--background-load", "0", "--no-report", "-q"]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    (row,) = pq.read_table(run / "measurements.parquet").to_pylist()
    assert row["pinned"] == "governor=performance,nvpmodel=0" and row["cpu_affinity"] == "0"
    assert row["cooldown_s"] is not None and row["cooldown_s"] < 1.0     # already at the baseline
    import sqlite3
    (res,) = [json.loads(r[0]) for r in sqlite3.connect(run / "campaign.sqlite").execute("SELECT result FROM jobs")]
    ctx = json.loads(sqlite3.connect(run / "campaign.sqlite").execute(
        "SELECT data FROM contexts WHERE phase='before'").fetchone()[0])
    assert ctx["governor"] == {"cpu0": "performance", "cpu1": "performance"} and ctx["nvpmodel"] == 0
    assert res["hygiene"]["cooldown"]["reached"] is True
    # Restored after the session: the governors and the power mode the board had before.
    assert governors(root) == ["schedutil", "schedutil"]
    assert (state / "status").read_text().startswith("pmode:0002")
    assert (state / "calls").read_text().split("\n")[:3] == ["-q", "-m 0", "-m 2"]


def test_unavailable_governor_stops_the_target_with_a_clear_error(tmp_path, device, capsys):
    root, _ = device
    zoo = make_zoo(tmp_path / "zoo", ["dc-w025-d2-r32-float32"])
    inv = inventory(tmp_path, governor="ondemand")
    assert main(["-i", inv, "--zoo", str(zoo), "--out", str(tmp_path / "runs"), "--runs", "5", "--threads", "1",
                 "--background-load", "0", "--no-report", "-q", "--backoff", "0"]) == 1
    out = capsys.readouterr().out
    assert "setup: setup on board failed:" in out and "governor 'ondemand' not available" in out
    assert out.count("setup on board failed") == 1      # not retried: it would fail the same way
    assert governors(root) == ["schedutil", "schedutil"]


def test_cooldown_waits_for_the_idle_baseline(tmp_path, device):
    root, _ = device
    temp = root / "sys/class/thermal/thermal_zone0/temp"
    temp.write_text("55000\n")
    # A process cools the zone from 55 C to 40 C over about 1.5 s.
    cool = subprocess.Popen([sys.executable, "-c", f"import time\nfor t in range(55000, 39999, -500):\n"
                             f"    open({str(temp)!r}, 'w').write('%d\\n' % t)\n    time.sleep(0.05)\n"])
    from harness.zoo.manifest import BUNDLED, load_manifest
    _, cands = load_manifest(BUNDLED)
    model = str(min(cands, key=lambda c: c.macs).path)
    p = LocalTransport().start([sys.executable, str(agent_bundle())])
    try:
        t0 = time.monotonic()
        p.write_line(json.dumps({"cmd": "measure", "model": model, "n_runs": 5, "id": 1,
                                 "cooldown": {"baseline": {"cpu-thermal:0": 40.0}, "above_c": 1.0}}))
        r = json.loads(p.read_line(120))
        assert r["ok"], r
        cd = r["hygiene"]["cooldown"]
        assert cd["reached"] and cd["above_baseline_c"] <= 1.0 and 1.0 <= cd["waited_s"] <= time.monotonic() - t0
        assert r["context_before"]["temp_c"]["cpu-thermal:0"] <= 41.0
        # A CPU list the machine does not have is a setup error, answered.
        p.write_line(json.dumps({"cmd": "measure", "model": model, "n_runs": 5, "id": 2, "cpus": [4096]}))
        r = json.loads(p.read_line(60))
        assert r["ok"] is False and r["kind"] == "setup" and "cannot pin" in r["error"]
    finally:
        p.close()
        cool.wait()


DUMPSYS = """
import sys
if sys.argv[1:] == ["battery"]:
    sys.stdout.write(open(sys.argv[0] + "-battery.txt").read())
elif sys.argv[1:] == ["thermalservice"]:
    sys.stdout.write(open(sys.argv[0] + ".txt").read())
else:
    sys.exit("unknown service")
"""


def test_capped_frequency_and_android_thermal_status_are_flagged(tmp_path, device):
    """A CPU below the frequency its pinned governor holds, and the framework's thermal status (a
    dumpsys on PATH printing recorded Android output with the status raised), flag the job; the
    battery comes from dumpsys when sysfs has none."""
    root, _ = device
    for c in (0, 1):
        write_tree(root, {f"sys/devices/system/cpu/cpu{c}/cpufreq/scaling_max_freq": "1800000",
                          f"sys/devices/system/cpu/cpu{c}/cpufreq/scaling_driver": "cpufreq-dt"})
    (root / "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq").write_text("1200000\n")   # capped
    fixture = open(os.path.join(FIXTURES, "dumpsys-thermalservice-qcom.txt")).read()
    fake_tool(tmp_path / "bin", "dumpsys", DUMPSYS)
    (tmp_path / "bin/dumpsys.txt").write_text(fixture.replace("Thermal Status: 0", "Thermal Status: 2"))
    (tmp_path / "bin/dumpsys-battery.txt").write_text(open(os.path.join(FIXTURES, "dumpsys-battery.txt")).read())
    zoo = make_zoo(tmp_path / "zoo", ["dc-w025-d2-r32-float32"])
    out = tmp_path / "runs"
    assert main(["-i", inventory(tmp_path, governor="performance"), "--zoo", str(zoo), "--out", str(out),
                 "--runs", "5", "--threads", "1", "--background-load", "0", "--no-report", "-q"]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    (row,) = pq.read_table(run / "measurements.parquet").to_pylist()
    assert row["context_flags"] == "freq-below-set:cpu1,android-thermal-status:2" and row["throttled"] is True
    import sqlite3
    ctx = json.loads(sqlite3.connect(run / "campaign.sqlite").execute(
        "SELECT data FROM contexts WHERE phase='after'").fetchone()[0])
    assert ctx["cpu_set_freq_mhz"] == {"cpu0": 1800.0, "cpu1": 1800.0} and ctx["android_thermal_status"] == 2
    assert ctx["temp_c"]["hal:cpu1_silver_usr"] == pytest.approx(44.1) and ctx["temp_c"]["cpu-thermal:0"] == 40.0
    # No power_supply in sysfs: battery level, state and temperature from dumpsys battery.
    assert (ctx["battery_pct"], ctx["battery_status"], ctx["charging"]) == (100.0, "full", False)
    assert ctx["battery_temp_c"] == pytest.approx(27.4)
    # Status back to none and the CPU at its set frequency: nothing flagged.
    (tmp_path / "bin/dumpsys.txt").write_text(fixture)
    (root / "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq").write_text("1800000\n")
    assert main(["-i", inventory(tmp_path, governor="performance"), "--zoo", str(zoo), "--out", str(out),
                 "--runs", "5", "--threads", "1", "--background-load", "0", "--no-report", "-q"]) == 0
    (run2,) = [p for p in out.iterdir() if p.is_dir() and p != run]
    (row,) = pq.read_table(run2 / "measurements.parquet").to_pylist()
    assert row["context_flags"] in (None, "") and row["throttled"] is False
