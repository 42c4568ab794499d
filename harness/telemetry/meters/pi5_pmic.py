"""Raspberry Pi 5 PMIC rails through ``vcgencmd pmic_read_adc``: rail power = A x V, summed
over the rails that report both. EXT5V (the board's input) has no current sensor, so the sum is
not the board's input power: the label says ``not-board-input``. Each read costs about 23 ms
of firmware time, so the meter is sampled at most at 20 Hz."""

import shutil
import subprocess

from harness.telemetry.meters.base import MeterError, PowerMeter
from harness.telemetry.parsers import ParseError, parse_pmic_read_adc


class Pi5Pmic(PowerMeter):
    max_hz = 20.0

    def __init__(self, exe):
        self.exe = exe
        row = self._row()
        if "rails_power_w" not in row:
            raise MeterError("vcgencmd pmic_read_adc printed no rail with both current and voltage")
        self.name = "sensor:pi5-pmic:" + row["power_scope"]

    def _row(self):
        out = subprocess.run([self.exe, "pmic_read_adc"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             timeout=5, text=True)
        if out.returncode != 0:
            raise MeterError("vcgencmd pmic_read_adc failed (exit %d): %s" % (out.returncode, out.stderr.strip()[:200]))
        try:
            return parse_pmic_read_adc(out.stdout)[0]
        except ParseError as e:
            raise MeterError("vcgencmd pmic_read_adc: %s" % e) from None

    def read(self):
        row = self._row()
        return row["rails_power_w"] * 1e3 if "rails_power_w" in row else None


def open_pmic(check=True):
    exe = shutil.which("vcgencmd")
    try:
        if exe is None:
            raise MeterError("vcgencmd not on PATH (Raspberry Pi OS: package libraspberrypi-bin)")
        return Pi5Pmic(exe)
    except (MeterError, OSError, subprocess.TimeoutExpired) as e:
        if check:
            raise MeterError(str(e)) from None
        return None
