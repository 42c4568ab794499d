"""Power meters, one small module each behind one protocol (see base.PowerMeter), used by the
agent on the device. Stdlib only, Python 3.7: this package ships to devices with the agent.

``discover(root)`` finds what the device itself exposes, in this order: Jetson INA3221 (hwmon,
then IIO), Raspberry Pi 5 PMIC (vcgencmd pmic_read_adc), Android battery (sysfs, then
termux-battery-status), tegrastats, x86 RAPL. ``open_meter(spec)`` opens the one a target's
inventory names, external meters included:

    {type: ina3221}  {type: rapl}  {type: android-battery}  {type: termux}  {type: pi5-pmic}
    {type: tegrastats, interval_ms: 20}
    {type: ina260, bus: 1, address: 0x40}   {type: ina219, bus: 1, address: 0x41, shunt_ohm: 0.1}
    {type: ina226}                            (no bus: the ina2xx hwmon driver)
    {type: um25c, port: /dev/rfcomm0}        (also um24c, um34c)
    {type: monsoon, voltage_v: 4.0}
"""

from harness.telemetry.meters import android, ina2xx, ina3221, pi5_pmic, rapl, tegrastats, usb_meter
from harness.telemetry.meters.base import MeterError, PowerMeter, PowerSampler, SysfsPower, energy_summary, read_num, read_text

__all__ = ["MeterError", "PowerMeter", "PowerSampler", "SysfsPower", "energy_summary", "read_num", "read_text", "discover",
           "open_meter", "TYPES"]

TYPES = ("ina3221", "rapl", "android-battery", "termux", "pi5-pmic", "tegrastats", "ina219", "ina226", "ina260",
         "um24c", "um25c", "um34c", "monsoon")


def discover(root=""):
    """The best power source this device exposes, or None. ``root`` prefixes every sysfs path
    (tests point it at a tree they write). Tools are only tried on a real root."""
    m = ina3221.discover(root)
    if m:
        return m
    if not root:
        m = pi5_pmic.open_pmic(check=False)
        if m:
            return m
    m = android.discover_sysfs(root)
    if m:
        return m
    if not root:
        m = android.open_termux(root, check=False) or tegrastats.open_tegrastats(check=False)
        if m:
            return m
    return rapl.discover(root)


def open_meter(spec, root=""):
    """The meter ``spec`` (a dict with ``type``) names; MeterError saying why it cannot be used."""
    t = spec.get("type")
    if t not in TYPES:
        raise MeterError("power_meter.type: expected one of %s, got %r" % (", ".join(TYPES), t))
    if t == "ina3221":
        m = ina3221.discover(root)
    elif t == "rapl":
        m = rapl.discover(root)
    elif t == "android-battery":
        m = android.discover_sysfs(root)
    elif t == "termux":
        return android.open_termux(root)
    elif t == "pi5-pmic":
        return pi5_pmic.open_pmic()
    elif t == "tegrastats":
        return tegrastats.open_tegrastats(int(spec.get("interval_ms", 20)))
    elif t in ina2xx.CHIPS:
        return ina2xx.open_ina(t, spec.get("bus"), spec.get("address"), spec.get("shunt_ohm", 0.1), root)
    elif t in usb_meter.MODELS:
        if not spec.get("port"):
            raise MeterError("power_meter.port: %s needs its serial port (e.g. /dev/rfcomm0)" % t)
        return usb_meter.UsbMeter(t, spec["port"])
    else:
        from harness.telemetry.meters.monsoon import Monsoon
        return Monsoon(spec.get("voltage_v", 4.0), spec.get("serial"))
    if m is None:
        raise MeterError("power_meter %s: not found or not readable on this device" % t)
    return m
