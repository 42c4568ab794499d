"""A power meter attached to the host, aligned to the device's clock.

The device is the local machine with its agent in its own time namespace (``unshare --time``):
its monotonic clock runs 5000 s ahead of the host's, as a remote board's clock differs from the
collector's. A pty plays a UM25C USB meter on the host whose power follows a known curve of the
host's clock. The estimated offset must be the namespace's, and the energy the exact integral of
the curve over the device's window mapped onto the host's clock. Where time namespaces are not
available the test still runs, on an unshifted clock (offset 0), and warns that it did."""

from __future__ import annotations

import json
import math
import os
import pty
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import warnings

import pyarrow.parquet as pq
import pytest

from harness.collect import main
from harness.hostmeter import clock_offset
from tests.conftest import make_zoo
from tests.test_meters import um25c_record

SHIFT = 5000
P0, P1, PERIOD, VOLT = 3000.0, 1500.0, 4.0, 5000.0


def curve(t: float) -> float:
    return P0 + P1 * math.sin(2 * math.pi * t / PERIOD)


def curve_integral(t0: float, t1: float) -> float:
    w = 2 * math.pi / PERIOD
    return P0 * (t1 - t0) - P1 / w * (math.cos(w * t1) - math.cos(w * t0))


def shifted_python(tmp_path) -> tuple[str, int]:
    """(an interpreter whose monotonic clock runs SHIFT s ahead, SHIFT). Without time namespaces
    (no unshare, or not permitted) the device keeps the host's clock: (this interpreter, 0), and
    the alignment is then only checked to find no offset, with a warning saying so."""
    cmd = ["unshare", "--time", "--monotonic", str(SHIFT), "--boottime", str(SHIFT), sys.executable]
    probe = subprocess.run(cmd + ["-c", "import time; print(time.monotonic())"], capture_output=True, text=True) \
        if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        warnings.warn(f"no time namespaces here ({probe.stderr.strip() if probe else 'no unshare'}): "
                      f"the host meter is aligned to an unshifted clock", stacklevel=2)
        return sys.executable, 0
    assert float(probe.stdout) - time.monotonic() == pytest.approx(SHIFT, abs=5)
    w = tmp_path / "python-shifted"
    w.write_text("#!/bin/sh\nexec " + " ".join(cmd) + ' "$@"\n')
    w.chmod(0o755)
    return str(w), SHIFT


@pytest.fixture
def host_um25c():
    master, slave = pty.openpty()
    stop = threading.Event()

    def meter():
        while not stop.is_set():
            try:
                b = os.read(master, 1)
            except OSError:
                return
            if b == b"\xf0":
                os.write(master, um25c_record(VOLT, curve(time.monotonic()) * 1000.0 / VOLT))
    threading.Thread(target=meter, daemon=True).start()
    yield os.ttyname(slave)
    stop.set()
    os.close(slave)
    os.close(master)


def test_clock_offset_takes_the_fastest_exchange():
    delays = iter([0.030, 0.002, 0.050, 0.010])

    def ping():   # a device 1234.5 s ahead; the answer is stamped after a varying delay
        d = next(delays)
        time.sleep(d)
        t = time.monotonic() + 1234.5
        time.sleep(d)
        return t
    off, err = clock_offset(ping, n=4)
    assert off == pytest.approx(1234.5, abs=0.003) and 0.002 <= err < 0.006


def test_host_meter_energy_on_a_shifted_device_clock(tmp_path, host_um25c):
    py, shift = shifted_python(tmp_path)
    inv = tmp_path / "inv.yaml"
    inv.write_text(f"targets:\n  - name: board\n    profile: x86-linux\n    transport: local\n    python: {py}\n"
                   f"    power_meter: {{type: um25c, port: {host_um25c}, attached: host}}\n")
    zoo = make_zoo(tmp_path / "zoo", ["dc-w025-d2-r32-float32"])
    out = tmp_path / "runs"
    assert main(["-i", str(inv), "--zoo", str(zoo), "--out", str(out), "--runs", "20", "--threads", "1",
                 "--background-load", "0", "--no-report", "-q"]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    (res,) = [json.loads(r[0]) for r in sqlite3.connect(run / "campaign.sqlite").execute("SELECT result FROM jobs")]
    e = res["energy"]
    assert e["source"] == f"sensor:um25c:{host_um25c}@host" and "on the host" in e["method"]
    assert e["clock_offset_s"] == pytest.approx(shift, abs=0.02) and e["clock_uncertainty_s"] < 0.02
    assert e["t_start_mono"] - e["t_start_host"] == pytest.approx(e["clock_offset_s"])
    # The window is stretched to 10 meter periods (5 Hz: 2 s) with extra inferences.
    assert e["window_s"] >= 2.0 and e["n_inferences"] > 20 and e["n_power_samples"] >= 8
    truth = curve_integral(e["t_start_host"], e["t_end_host"])
    assert e["energy_total_mj"] == pytest.approx(truth, rel=0.03)
    (row,) = pq.read_table(run / "measurements.parquet").to_pylist()
    assert row["energy_source"] == e["source"]
    assert row["energy_mj"] == pytest.approx(e["energy_above_idle_mj"] / e["n_inferences"])


def test_record_reads_the_host_meter(tmp_path, host_um25c):
    from harness.record import main as record
    inv = tmp_path / "inv.yaml"
    inv.write_text(f"targets:\n  - name: board\n    profile: x86-linux\n    transport: local\n    python: {sys.executable}\n"
                   f"    power_meter: {{type: um25c, port: {host_um25c}, attached: host}}\n")
    out = tmp_path / "t.csv"
    assert record(["-i", str(inv), "--target", "board", "--duration", "1.2", "--period", "0.4", "--out", str(out)]) == 0
    man = json.loads((tmp_path / "t.csv.manifest.json").read_text())
    assert man["power_source"] == f"sensor:um25c:{host_um25c}@host" and man["complete"]
    import csv
    rows = list(csv.DictReader(out.open()))
    assert len(rows) >= 3 and all(P0 - P1 - 1 <= float(r["power_mw"]) <= P0 + P1 + 1 for r in rows)
    # A meter that is not there stops the target at setup, in one line, without retries.
    inv.write_text(inv.read_text().replace(host_um25c, str(tmp_path / "no-tty")))
    assert record(["-i", str(inv), "--target", "board", "--duration", "1", "--period", "0.5", "--out", str(out)]) == 1
    man = json.loads((tmp_path / "t.csv.manifest.json").read_text())
    assert man["complete"] is False and "power meter on the host" in man["error"] and "cannot open" in man["error"]
