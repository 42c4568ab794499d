"""RDTech UM24C / UM25C / UM34C USB power meters over their serial port (Bluetooth RFCOMM, e.g.
/dev/rfcomm0, or a USB-serial adapter), 9600 8N1, termios only (no pyserial).

Protocol: send 0xF0, receive a 130-byte record. Bytes 0-1 model id (UM24C 0x0963, UM25C
0x09c9, UM34C 0x0d4c), 2-3 voltage (UM25C 1 mV, others 10 mV), 4-5 current (UM25C 0.1 mA,
others 1 mA), 6-9 power (1 mW). The meter answers a few times per second at best."""

import os
import select
import struct
import time

from harness.telemetry.meters.base import MeterError, PowerMeter

MODELS = {"um24c": (0x0963, 10.0, 1.0), "um25c": (0x09C9, 1.0, 0.1), "um34c": (0x0D4C, 10.0, 1.0)}
RECORD = 130


def decode(model, record):
    """(mV, mA, mW) from one 130-byte record of ``model``; MeterError if it is another model's."""
    if len(record) != RECORD:
        raise MeterError("%s: expected a %d-byte record, got %d bytes" % (model, RECORD, len(record)))
    mid, vs, cs = MODELS[model]
    got, v, c, p = struct.unpack(">HHHI", record[:10])
    if got != mid:
        raise MeterError("%s: the meter answered with model id 0x%04x (expected 0x%04x)" % (model, got, mid))
    return v * vs, c * cs, float(p)


def _raw_tty(fd):
    import termios
    a = termios.tcgetattr(fd)
    a[0] = 0                                   # iflag
    a[1] = 0                                   # oflag
    a[2] = termios.CS8 | termios.CREAD | termios.CLOCAL
    a[3] = 0                                   # lflag: raw
    a[4] = a[5] = termios.B9600
    a[6][termios.VMIN], a[6][termios.VTIME] = 0, 0
    termios.tcsetattr(fd, termios.TCSANOW, a)


class UsbMeter(PowerMeter):
    max_hz = 5.0

    def __init__(self, model, port, timeout_s=2.0):
        model = model.lower()
        if model not in MODELS:
            raise MeterError("unknown USB meter %r (expected one of %s)" % (model, ", ".join(sorted(MODELS))))
        self.model, self.port, self.timeout_s = model, port, timeout_s
        try:
            self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        except OSError as e:
            raise MeterError("%s: cannot open (%s)" % (port, e.strerror)) from None
        try:
            _raw_tty(self.fd)
        except Exception as e:
            os.close(self.fd)
            raise MeterError("%s: not a serial port (%s)" % (port, e)) from None
        self.name = "sensor:%s:%s" % (model, port)
        if self.read() is None:
            self.close()
            raise MeterError("%s: no answer from the %s within %.0f s" % (port, model.upper(), timeout_s))

    def record(self):
        os.write(self.fd, b"\xf0")
        buf = b""
        deadline = time.monotonic() + self.timeout_s
        while len(buf) < RECORD:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            buf += os.read(self.fd, RECORD - len(buf))
        return buf

    def read(self):
        rec = self.record()
        if rec is None:
            return None
        mv, ma, _ = decode(self.model, rec)
        return mv * ma / 1e3   # V x I at the meter's resolution (its power field has 1 mW steps)

    def close(self):
        try:
            os.close(self.fd)
        except OSError:
            pass
