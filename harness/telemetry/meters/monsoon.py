"""Monsoon High Voltage Power Monitor (HVPM) through Monsoon's Python package (``pip install
monsoon``), which owns the USB protocol. The monitor supplies the device (battery bypass) at
``voltage_v`` and samples main current at 5 kHz; a reader thread keeps the mean of the newest
block. Not exercised by the test suite (no Monsoon here): only the missing-package error is."""

import threading
import time

from harness.telemetry.meters.base import MeterError, PowerMeter


class Monsoon(PowerMeter):
    max_hz = 100.0

    def __init__(self, voltage_v=4.0, serial=None):
        try:
            import Monsoon.HVPM as HVPM
            import Monsoon.sampleEngine as sampleEngine
        except ImportError:
            raise MeterError("monsoon: the Monsoon package is not installed (pip install monsoon)") from None
        self.mon = HVPM.Monsoon()
        self.mon.setup_usb(serial) if serial else self.mon.setup_usb()
        self.mon.setVout(float(voltage_v))
        self.engine = sampleEngine.SampleEngine(self.mon)
        self.engine.disableCSVOutput()
        self.engine.ConsoleOutput(False)
        self._se = sampleEngine
        self.latest = None
        self._stop = False
        self.name = "sensor:monsoon-hvpm:main@%.2fV" % float(voltage_v)
        t = threading.Thread(target=self._pump, name="monsoon")
        t.daemon = True
        t.start()

    def _pump(self):
        while not self._stop:
            self.engine.startSampling(50)          # 50 samples at 5 kHz: 10 ms
            s = self.engine.getSamples()
            cur = s[self._se.channels.MainCurrent]  # mA
            volt = s[self._se.channels.MainVoltage]  # V
            if cur:
                self.latest = (time.monotonic(), sum(c * v for c, v in zip(cur, volt)) / len(cur))

    def read(self):
        if self.latest is None or time.monotonic() - self.latest[0] > 1.0:
            return None
        return self.latest[1]

    def close(self):
        self._stop = True
        try:
            self.mon.closeDevice()
        except Exception:
            pass
