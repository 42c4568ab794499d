"""Power meters through their real read paths: tool subprocesses (a vcgencmd, tegrastats or
termux-battery-status on PATH that prints recorded device output), sysfs trees, a pty that
speaks the UM25C serial protocol, and the I2C register decoding. What cannot run here (real
I2C ioctl, a Monsoon) is covered only as far as these tests say."""

from __future__ import annotations

import json
import os
import pty
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.telemetry import meters
from harness.telemetry.meters import ina2xx, usb_meter
from harness.telemetry.meters.base import MeterError, PowerSampler
from tests.conftest import fake_tool, write_tree

FIX = Path(__file__).parent / "fixtures" / "device-output"


@pytest.fixture
def bindir(tmp_path, monkeypatch):
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}{os.pathsep}{os.environ['PATH']}")
    return d


def test_pi5_pmic_reads_vcgencmd_and_labels_not_board_input(bindir):
    fake_tool(bindir, "vcgencmd", f"import sys\nassert sys.argv[1:] == ['pmic_read_adc']\n"
                                  f"sys.stdout.write(open({str(FIX / 'vcgencmd-pmic_read_adc-pi5.txt')!r}).read())\n")
    m = meters.open_meter({"type": "pi5-pmic"})
    assert m.name == "sensor:pi5-pmic:pmic-rails-only:sum(12 rails),not-board-input"
    assert m.read() == pytest.approx(7239.8, abs=0.5) and m.max_hz == 20
    # discovery on a real root finds it too (no INA3221 here)
    assert meters.discover("").name == m.name


def test_pi5_pmic_failure_is_a_clear_error(bindir):
    fake_tool(bindir, "vcgencmd", "import sys\nprint('error=2 error_msg=\"Invalid arguments\"')\nsys.exit(2)\n")
    with pytest.raises(MeterError, match=r"vcgencmd pmic_read_adc failed \(exit 2\)"):
        meters.open_meter({"type": "pi5-pmic"})


def test_tegrastats_stream(bindir, tmp_path):
    line = (FIX / "tegrastats-jetson-orin-nx-jp5.txt").read_text().strip()
    ctl = tmp_path / "mw"
    ctl.write_text("5299")
    fake_tool(bindir, "tegrastats", f"""
import sys, time
assert sys.argv[1] == "--interval"
iv = int(sys.argv[2]) / 1000.0
while True:
    mw = open({str(ctl)!r}).read().strip()
    print({line!r}.replace("VDD_IN 5299mW/5299mW", "VDD_IN %smW/5299mW" % mw), flush=True)
    time.sleep(iv)
""")
    m = meters.open_meter({"type": "tegrastats", "interval_ms": 20})
    try:
        assert m.name == "sensor:tegrastats:board:VDD_IN" and m.max_hz == 50
        assert m.read() == 5299
        ctl.write_text("7100")
        time.sleep(0.3)
        assert m.read() == 7100
    finally:
        m.close()
    assert m.proc.poll() is not None           # the tegrastats process is stopped


def test_termux_battery_status(bindir, tmp_path):
    fake_tool(bindir, "termux-battery-status", "import json\nprint(json.dumps({'health': 'GOOD', 'percentage': 81, "
              "'plugged': 'UNPLUGGED', 'status': 'DISCHARGING', 'temperature': 29.5, 'current': -412000, "
              "'voltage': 3950}))\n")
    m = meters.open_meter({"type": "termux"})
    assert m.name == "sensor:termux-battery-status" and m.read() == pytest.approx(412.0 * 3.95 * 1000 / 1000)
    # without 'voltage' in the JSON and no readable voltage_now: unusable, said clearly
    fake_tool(bindir, "termux-battery-status", "print('{\"current\": -412000}')\n")
    with pytest.raises(MeterError, match="no current or voltage"):
        meters.open_meter({"type": "termux"}, root=str(tmp_path / "nothing"))


def test_android_sysfs_units(tmp_path):
    b = tmp_path / "sys/class/power_supply/battery"
    # uV, and uA negative while discharging (vendor sign)
    write_tree(b, {"voltage_now": "3900000", "current_now": "-500000"})
    m = meters.discover(str(tmp_path))
    assert m.name == "sensor:android-battery(uA)" and m.read() == pytest.approx(1950.0)
    (b / "current_now").write_text("480\n")                 # a vendor that reports mA
    m = meters.discover(str(tmp_path))
    assert m.name == "sensor:android-battery(mA)" and m.read() == pytest.approx(3.9 * 480)


def test_ina260_hwmon_and_register_decoding(tmp_path):
    write_tree(tmp_path / "sys/class/hwmon/hwmon7", {"name": "ina260", "power1_input": "2537500"})   # uW
    m = meters.open_meter({"type": "ina260"}, root=str(tmp_path))
    assert m.name == "sensor:ina260:hwmon(hwmon7)" and m.read() == pytest.approx(2537.5)
    with pytest.raises(MeterError, match="no ina219 hwmon device bound; give bus and address"):
        meters.open_meter({"type": "ina219"}, root=str(tmp_path))
    # Register values as the datasheets define them.
    assert ina2xx.decode("ina260", 0x0640, 0x0FA0) == (5000.0, 2000.0)            # 1.25 mV, 1.25 mA per LSB
    assert ina2xx.decode("ina260", 0xFFFF, 0)[1] == -1.25                           # signed current
    mv, ma = ina2xx.decode("ina219", 0x0FA0, (5000 // 4) << 3, shunt_ohm=0.1)      # 40 mV over 0.1 ohm
    assert mv == 5000 and ma == pytest.approx(400.0)
    assert ina2xx.decode("ina226", 0x0FA0, 0x0FA0, 0.01)[1] == pytest.approx(1000.0)   # 10 mV / 0.01 ohm

    class FakeBus:   # the register file of an INA260 at 5 V, 0.8 A
        def read_u16(self, reg):
            return {0x01: 640, 0x02: 4000}[reg]

        def close(self):
            pass
    m = ina2xx.InaI2C("ina260", 1, 0x40, device=FakeBus())
    assert m.name == "sensor:ina260:i2c-1@0x40" and m.read() == pytest.approx(4000.0)


def um25c_record(mv: float, ma: float) -> bytes:
    rec = struct.pack(">HHHI", 0x09C9, round(mv), round(ma * 10), round(mv * ma / 1e3))
    return rec + bytes(usb_meter.RECORD - len(rec))


def test_um25c_over_a_pty(tmp_path):
    """A thread plays the meter on the master side of a pty: it answers each 0xF0 with a record."""
    master, slave = pty.openpty()
    port = os.ttyname(slave)
    state = {"mv": 5123.0, "ma": 456.7, "stop": False, "asked": 0}

    def meter():
        while not state["stop"]:
            try:
                b = os.read(master, 1)
            except OSError:
                return
            if b == b"\xf0":
                state["asked"] += 1
                os.write(master, um25c_record(state["mv"], state["ma"]))
    t = threading.Thread(target=meter, daemon=True)
    t.start()
    try:
        m = meters.open_meter({"type": "um25c", "port": port})
        assert m.name == f"sensor:um25c:{port}" and m.max_hz == 5
        assert m.read() == pytest.approx(5.123 * 456.7, rel=1e-4)
        state["mv"], state["ma"] = 5001.0, 1200.0
        s = PowerSampler(m, hz=50).start()           # capped at the meter's 5 Hz
        time.sleep(0.7)
        s.stop()
        assert s.hz == 5 and 2 <= len(s.samples) <= 6
        assert all(v == pytest.approx(5.001 * 1200.0, rel=1e-4) for _, v in s.samples)
        m.close()
        # a UM24C configured on a port where a UM25C answers: refused by model id
        with pytest.raises(MeterError, match="model id 0x09c9 .expected 0x0963"):
            meters.open_meter({"type": "um24c", "port": port})
    finally:
        state["stop"] = True
        os.close(slave)
        os.close(master)


def test_meter_spec_errors(tmp_path):
    with pytest.raises(MeterError, match="power_meter.type: expected one of"):
        meters.open_meter({"type": "fluke"})
    with pytest.raises(MeterError, match="um34c needs its serial port"):
        meters.open_meter({"type": "um34c"})
    with pytest.raises(MeterError, match=f"{tmp_path}/nope: cannot open"):
        meters.open_meter({"type": "um25c", "port": str(tmp_path / "nope")})
    with pytest.raises(MeterError, match="not found or not readable"):
        meters.open_meter({"type": "ina3221"}, root=str(tmp_path))
    try:
        import Monsoon  # noqa: F401
    except ImportError:
        with pytest.raises(MeterError, match="pip install monsoon"):
            meters.open_meter({"type": "monsoon"})


def test_agent_uses_the_inventory_meter_and_answers_meter_errors(tmp_path):
    """The measure request names the meter; a meter that cannot open is an answer, not a crash."""
    from harness.bundle import agent_bundle
    from harness.transport.local import LocalTransport
    from harness.zoo.manifest import BUNDLED, load_manifest
    _, cands = load_manifest(BUNDLED)
    model = str(min(cands, key=lambda c: c.macs).path)
    write_tree(tmp_path / "root/sys/class/hwmon/hwmon0", {"name": "ina219", "power1_input": "1500000"})
    env_root = str(tmp_path / "root")
    os.environ["EDGE_AGENT_SYSFS_ROOT"] = env_root
    try:
        p = LocalTransport().start([sys.executable, str(agent_bundle())])
    finally:
        del os.environ["EDGE_AGENT_SYSFS_ROOT"]
    try:
        p.write_line(json.dumps({"cmd": "measure", "model": model, "n_runs": 5, "power_meter": {"type": "ina219"},
                                 "idle_s": 0.2, "id": 1}))
        r = json.loads(p.read_line(120))
        assert r["ok"], r
        assert r["energy"]["source"] == "sensor:ina219:hwmon(hwmon0)" and r["energy"]["idle_power_mw"] == 1500
        assert r["energy"]["window_s"] >= 0.2 and r["energy"]["n_inferences"] > 5   # window stretched to 10 periods
        p.write_line(json.dumps({"cmd": "measure", "model": model, "n_runs": 5, "power_meter": {"type": "ina260"},
                                 "id": 2}))
        r = json.loads(p.read_line(60))
        assert r == {"ok": False, "kind": "meter", "id": 2,
                     "error": "no ina260 hwmon device bound; give bus and address to read it over /dev/i2c"}
    finally:
        p.close()
