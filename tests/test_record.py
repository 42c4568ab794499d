"""python -m harness.record on the local target and on a loopback SSH target (a real sshd)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.record import main
from tests.conftest import write_tree
from tests.sshd import SSHD, keygen, make_server


def read_trace(path: Path) -> tuple[list[dict], dict]:
    rows = list(csv.DictReader(path.open()))
    return rows, json.loads(path.with_name(path.name + ".manifest.json").read_text())


def check_canonical(rows: list[dict], man: dict, period: float) -> None:
    assert man["schema_version"] == 1 and man["kind"] == "context-trace" and man["complete"] is True
    assert list(rows[0])[0] == "t_s" and man["columns"] == list(rows[0]) and man["rows"] == len(rows)
    assert set(man["units"]) == set(man["columns"])
    t = [float(r["t_s"]) for r in rows]
    assert t[0] == 0.0 and all(b > a for a, b in zip(t, t[1:]))
    gaps = sorted(b - a for a, b in zip(t, t[1:]))
    assert abs(gaps[len(gaps) // 2] - period) < 0.05          # median spacing is the period


@pytest.fixture
def device(tmp_path, monkeypatch):
    """A sysfs tree with a CPU frequency, a thermal zone, a battery and an INA3221 board rail."""
    root = write_tree(tmp_path / "root", {
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "1500000",
        "sys/class/thermal/thermal_zone0/type": "soc", "sys/class/thermal/thermal_zone0/temp": "47500",
        "sys/class/power_supply/battery/capacity": "76", "sys/class/power_supply/battery/status": "Discharging",
        "sys/class/power_supply/battery/temp": "301",
        "sys/class/hwmon/hwmon1/name": "ina3221", "sys/class/hwmon/hwmon1/in1_label": "VDD_IN",
        "sys/class/hwmon/hwmon1/in1_input": "5000", "sys/class/hwmon/hwmon1/curr1_input": "1000"})
    monkeypatch.setenv("EDGE_AGENT_SYSFS_ROOT", str(root))
    return root


def test_record_local_with_workload(tmp_path, device, capsys):
    out = tmp_path / "traces" / "local.csv"
    assert main(["--duration", "2.4", "--period", "0.2", "--load", "2", "--load-start", "1.2", "--out", str(out)]) == 0
    rows, man = read_trace(out)
    check_canonical(rows, man, 0.2)
    assert man["target"] == "local" and man["profile"] == "x86-linux" and man["period_s"] == 0.2
    assert man["power_source"] == "sensor:ina3221-hwmon:VDD_IN" and man["workload"]["background_load"] == 2
    r = rows[-1]
    assert float(r["power_mw"]) == 5000 and float(r["temp_c_max"]) == 47.5 and float(r["cpu_freq_mhz_mean"]) == 1500
    assert float(r["battery_pct"]) == 76 and r["charging"] == "0" and float(r["battery_temp_c"]) == pytest.approx(30.1)
    assert rows[0]["cpu_load_pct"] == ""                       # no previous sample: no rate, not 0
    assert man["units"]["power_mw"].startswith("mW") and man["units"]["temp_c_max"].startswith("deg C")
    before = [float(r["cpu_load_pct"]) for r in rows[1:] if float(r["t_s"]) < 1.1]
    during = [float(r["cpu_load_pct"]) for r in rows if float(r["t_s"]) > 1.5]
    assert {r["background_load"] for r in rows} == {"0", "2"}
    # the workload shows in the trace: medians, as another process busy on the machine (one core of
    # two) raises "before" to ~50% and can spike one sample, but cannot take the workload's place
    assert statistics.median(during) > statistics.median(before) + 25
    assert "-> " + str(out) in capsys.readouterr().out


def test_record_bad_arguments(tmp_path, capsys):
    assert main(["--duration", "1", "--period", "0", "--out", str(tmp_path / "x.csv")]) == 2
    assert main(["--target", "pi", "--duration", "1", "--period", "1", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --duration and --period: expected seconds > 0, got 1.0 and 0.0",
                   "error: --target: no target named 'pi' (known: local)"]


def _processes_with(marker: str) -> list[int]:
    """Pids whose environment holds ``marker`` (what a test started, and whatever that started)."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and marker.encode() in (d / "environ").read_bytes():
                found.append(int(d.name))
        except OSError:
            pass
    return found


def test_ctrl_c_keeps_the_rows_and_says_so_in_one_line(tmp_path):
    """Ctrl-C at the terminal signals the whole foreground group: the recorder writes its manifest,
    prints one line (no traceback from it or its agent) and stops the workload it started."""
    out = tmp_path / "int.csv"
    marker = f"EDGE_TEST_MARK={os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, EDGE_TEST_MARK=marker.split("=", 1)[1])
    p = subprocess.Popen([sys.executable, "-m", "harness.record", "--duration", "60", "--period", "0.2", "--load", "1",
                          "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 4):
            time.sleep(0.1)
        os.killpg(p.pid, signal.SIGINT)
        so, se = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, se
    assert "Traceback" not in se and se.strip().splitlines() == [se.strip()]
    rows, man = read_trace(out)
    assert se.startswith(f"error: {out}: recording stopped after {len(rows)} rows: interrupted (Ctrl-C)")
    assert man["complete"] is False and man["interrupted"] is True and man["rows"] == len(rows) >= 3
    deadline = time.monotonic() + 10          # the agent sees its input close and stops the load
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == []


@pytest.mark.skipif(not Path(SSHD).exists(), reason="needs openssh-server (.ci/run installs it)")
def test_record_over_loopback_ssh_and_a_dropped_connection(tmp_path, capsys):
    key = keygen(tmp_path / "user_ed25519")
    srv = make_server(tmp_path / "srv", "127.0.0.6", key).start()
    kh = tmp_path / "known_hosts"
    kh.write_text(srv.known_hosts_line())
    inv = tmp_path / "inv.yaml"
    inv.write_text("targets:\n  - name: board\n    profile: raspberry-pi-4\n    transport: ssh\n"
                   f"    host: {srv.addr}\n    port: {srv.port}\n    user: {os.environ.get('USER') or 'root'}\n"
                   f"    identity_file: {key}\n    python: {sys.executable}\n    workdir: {tmp_path / 'wd'}\n")
    args = ["-i", str(inv), "--target", "board", "--known-hosts", str(kh), "--ssh-config", str(tmp_path / "none")]
    try:
        out = tmp_path / "ssh.csv"
        assert main(args + ["--duration", "1.5", "--period", "0.25", "--out", str(out)]) == 0
        rows, man = read_trace(out)
        check_canonical(rows, man, 0.25)
        assert man["transport"] == "ssh" and man["host"] == "127.0.0.6" and man["profile"] == "raspberry-pi-4"
        assert "cpu_load_pct" in man["columns"] and "mem_available_mb" in man["columns"]
        # The server goes away mid-recording: the rows so far stay, the manifest says what happened.
        out2 = tmp_path / "dropped.csv"
        threading.Timer(1.5, srv.kill_all).start()
        t0 = time.monotonic()
        assert main(args + ["--duration", "30", "--period", "0.2", "--out", str(out2)]) == 1
        assert time.monotonic() - t0 < 20
        rows, man = read_trace(out2)
        assert man["complete"] is False and man["error"] and man["rows"] == len(rows) >= 3
        err = capsys.readouterr().err
        assert f"error: {out2}: recording stopped after {len(rows)} rows" in err and "rows so far are kept" in err
    finally:
        srv.kill_all()


def test_shipped_traces_are_canonical():
    traces = Path(__file__).resolve().parent.parent / "traces"
    files = sorted(traces.glob("*.csv"))
    assert len(files) >= 2
    for f in files:
        rows, man = read_trace(f)
        check_canonical(rows, man, man["period_s"])
        assert man["file"] == f.name
        if "source" in man:   # imported by simulator.traces from a file shipped in traces/sources/
            src = traces / man["source"]["file"].removeprefix("traces/")
            assert hashlib.sha256(src.read_bytes()).hexdigest() == man["source"]["sha256"]
        else:
            assert man["target"] == "local"
