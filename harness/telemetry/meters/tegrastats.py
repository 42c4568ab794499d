"""Jetson power through a running ``tegrastats --interval MS``: the fallback when the INA3221
sysfs files are not readable. A reader thread parses every line (harness.telemetry.parsers) and
keeps the newest board power (VDD_IN / POM_5V_IN, else the module-only rail sum)."""

import shutil
import subprocess
import threading
import time

from harness.telemetry.meters.base import MeterError, PowerMeter
from harness.telemetry.parsers import ParseError, parse_tegrastats_line


class Tegrastats(PowerMeter):
    def __init__(self, exe, interval_ms=20):
        self.max_hz = 1000.0 / interval_ms
        self.proc = subprocess.Popen([exe, "--interval", str(int(interval_ms))], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, universal_newlines=True)
        self.latest = None
        self.scope = None
        self.error = None
        self._first = threading.Event()
        t = threading.Thread(target=self._pump, name="tegrastats")
        t.daemon = True
        t.start()
        if not self._first.wait(5.0) or self.latest is None:
            self.close()
            raise MeterError("tegrastats printed no power rail within 5 s%s"
                             % (" (%s)" % self.error if self.error else ""))
        self.name = "sensor:tegrastats:" + self.scope

    def _pump(self):
        for n, line in enumerate(self.proc.stdout, 1):
            try:
                row = parse_tegrastats_line(line.strip(), n)
            except ParseError as e:
                self.error = str(e)
                continue
            p = row.get("board_power_mw", row.get("rails_power_sum_mw"))
            if p is not None:
                self.latest = (time.monotonic(), p)
                self.scope = row["power_scope"]
                self._first.set()
        self._first.set()

    def read(self):
        if self.latest is None or time.monotonic() - self.latest[0] > 5.0 / self.max_hz + 1.0:
            return None   # tegrastats stalled or exited: a gap, not a stale value
        return self.latest[1]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def open_tegrastats(interval_ms=20, check=True):
    exe = shutil.which("tegrastats")
    try:
        if exe is None:
            raise MeterError("tegrastats not on PATH")
        return Tegrastats(exe, interval_ms)
    except (MeterError, OSError) as e:
        if check:
            raise MeterError(str(e)) from None
        return None
