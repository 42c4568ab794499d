"""External INA219 / INA226 / INA260 power monitors, wired into the supply of the board under
test and read over I2C: through the Linux ``ina2xx`` hwmon driver when it is bound
(power1_input in uW), or directly from /dev/i2c-<bus> (stdlib ioctl, no smbus package).

Registers (big-endian 16 bit): INA260: 0x01 current (signed, 1.25 mA/LSB), 0x02 bus voltage
(1.25 mV/LSB). INA219: 0x01 shunt voltage (signed, 10 uV/LSB), 0x02 bus voltage (bits 15..3,
4 mV/LSB); current = shunt voltage / shunt resistance (``shunt_ohm``, 0.1 on common boards).
INA226: 0x01 shunt voltage (signed, 2.5 uV/LSB), 0x02 bus voltage (1.25 mV/LSB)."""

import glob
import os

from harness.telemetry.meters.base import MeterError, PowerMeter, read_num, read_text

I2C_SLAVE = 0x0703
CHIPS = ("ina219", "ina226", "ina260")


def _signed(v):
    return v - 0x10000 if v & 0x8000 else v


def decode(chip, shunt_reg, bus_reg, shunt_ohm=0.1):
    """(bus mV, current mA) from the raw 16-bit register values."""
    if chip == "ina260":
        return bus_reg * 1.25, _signed(shunt_reg) * 1.25
    if chip == "ina226":
        return bus_reg * 1.25, _signed(shunt_reg) * 2.5e-3 / shunt_ohm      # uV / ohm = uA -> mA: 1e-3
    if chip == "ina219":
        return (bus_reg >> 3) * 4.0, _signed(shunt_reg) * 10e-3 / shunt_ohm
    raise MeterError("unknown INA chip %r (expected one of %s)" % (chip, ", ".join(CHIPS)))


class I2CDevice:
    """A register-addressed device on /dev/i2c-<bus>."""

    def __init__(self, bus, address):
        import fcntl
        path = "/dev/i2c-%d" % int(bus)
        try:
            self.fd = os.open(path, os.O_RDWR)
            fcntl.ioctl(self.fd, I2C_SLAVE, int(address))
        except OSError as e:
            raise MeterError("%s address 0x%02x: %s" % (path, int(address), e.strerror)) from None

    def read_u16(self, reg):
        os.write(self.fd, bytes([reg]))
        b = os.read(self.fd, 2)
        if len(b) != 2:
            raise OSError("short I2C read")
        return (b[0] << 8) | b[1]

    def close(self):
        os.close(self.fd)


class InaI2C(PowerMeter):
    max_hz = 100.0

    def __init__(self, chip, bus, address, shunt_ohm=0.1, device=None):
        decode(chip, 0, 0, shunt_ohm)   # validates the chip name
        self.chip, self.shunt_ohm = chip, float(shunt_ohm)
        self.dev = device or I2CDevice(bus, address)
        self.name = "sensor:%s:i2c-%s@0x%02x" % (chip, bus, int(address)) + (
            "" if chip == "ina260" else ",shunt=%gohm" % self.shunt_ohm)

    def read(self):
        try:
            mv, ma = decode(self.chip, self.dev.read_u16(0x01), self.dev.read_u16(0x02), self.shunt_ohm)
        except OSError:
            return None
        return abs(mv * ma) / 1e3

    def close(self):
        self.dev.close()


class InaHwmon(PowerMeter):
    def __init__(self, d, chip):
        self.path = d + "/power1_input"
        self.name = "sensor:%s:hwmon(%s)" % (chip, os.path.basename(d))

    def read(self):
        uw = read_num(self.path)
        return None if uw is None else uw / 1e3


def find_hwmon(chip, root=""):
    for d in sorted(glob.glob(root + "/sys/class/hwmon/hwmon*")):
        if read_text(d + "/name") == chip and os.path.exists(d + "/power1_input"):
            return InaHwmon(d, chip)
    return None


def open_ina(chip, bus=None, address=None, shunt_ohm=0.1, root=""):
    if chip not in CHIPS:
        raise MeterError("unknown INA chip %r (expected one of %s)" % (chip, ", ".join(CHIPS)))
    if bus is None:
        m = find_hwmon(chip, root)
        if m is None:
            raise MeterError("no %s hwmon device bound; give bus and address to read it over /dev/i2c" % chip)
        return m
    return InaI2C(chip, bus, 0x40 if address is None else int(address), shunt_ohm)
