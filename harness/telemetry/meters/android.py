"""Android battery power: sysfs (current_now, voltage_now) or ``termux-battery-status``.

Vendors disagree on the sign of current_now and some report mA instead of uA: the magnitude
decides, and the label says which unit was assumed. The phone must not be charging while it is
measured (wireless adb, or the cable unplugged); the agent records the charging state."""

import json
import os
import shutil
import subprocess

from harness.telemetry.meters.base import MeterError, PowerMeter, SysfsPower, read_num

BATTERY = "/sys/class/power_supply/battery"


def _current_unit(value):
    """uA for a phone's typical 10 mA..10 A; small magnitudes mean the vendor reports mA."""
    return ("uA", 1e-3) if value is None or abs(value) >= 10000 else ("mA", 1.0)


def discover_sysfs(root=""):
    b = root + BATTERY
    if os.path.exists(b + "/current_now") and os.path.exists(b + "/voltage_now"):
        unit, to_ma = _current_unit(read_num(b + "/current_now"))
        # voltage_now is uV: uV x mA -> mW is 1e-6
        return SysfsPower("sensor:android-battery(%s)" % unit, [(to_ma * 1e-6, b + "/voltage_now", b + "/current_now")])
    return None


class TermuxBattery(PowerMeter):
    """``termux-battery-status`` (Termux:API, no root). Its JSON has ``current`` (uA, sign by
    vendor) and, on newer versions, ``voltage`` (mV); without it, sysfs voltage_now is used when
    readable. Each call goes through Android's API and takes a few hundred ms."""
    max_hz = 2.0

    def __init__(self, exe, root=""):
        self.exe = exe
        self.root = root
        self.name = "sensor:termux-battery-status"

    def status(self):
        out = subprocess.run([self.exe], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10,
                             text=True)
        if out.returncode != 0:
            raise MeterError("termux-battery-status failed (exit %d): %s" % (out.returncode, out.stderr.strip()[:200]))
        try:
            return json.loads(out.stdout)
        except ValueError:
            raise MeterError("termux-battery-status: not JSON: %r" % out.stdout[:80]) from None

    def read(self):
        st = self.status()
        cur = st.get("current")
        if cur is None:
            return None
        unit, to_ma = _current_unit(cur)
        mv = st.get("voltage")
        if mv is not None:
            mv = float(mv) * (1e3 if float(mv) < 100 else 1.0)   # some versions print volts
        else:
            uv = read_num(self.root + BATTERY + "/voltage_now")
            mv = uv / 1e3 if uv is not None else None
        if mv is None:
            return None
        return abs(float(cur) * to_ma * mv) / 1e3


def open_termux(root="", check=True):
    exe = shutil.which("termux-battery-status")
    if exe is None:
        if check:
            raise MeterError("termux-battery-status not on PATH (pkg install termux-api, and the Termux:API app)")
        return None
    m = TermuxBattery(exe, root)
    try:
        if m.read() is None:
            raise MeterError("termux-battery-status gives no current or voltage on this phone")
    except (MeterError, OSError, subprocess.TimeoutExpired) as e:
        if check:
            raise MeterError(str(e)) from None
        return None
    return m
