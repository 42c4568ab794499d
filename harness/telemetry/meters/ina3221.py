"""NVIDIA Jetson INA3221 rail monitors through sysfs: the hwmon driver (JetPack 5+) and the IIO
driver (JetPack 4). Bus numbers and device indices are globbed, never hard-coded. The board
input rail (VDD_IN / POM_5V_IN) is used when present; otherwise the rails are summed and the
label says module-only."""

import glob
import os

from harness.telemetry.meters.base import SysfsPower, read_text
from harness.telemetry.parsers import BOARD_RAILS


def rails_to_meter(kind, rails):
    """rails: {label: term}. The board input rail when present, else the sum labelled module-only."""
    for r in BOARD_RAILS:
        if r in rails:
            return SysfsPower("sensor:%s:%s" % (kind, r), [rails[r]])
    if rails:
        return SysfsPower("sensor:%s:sum(%s),module-only" % (kind, "+".join(sorted(rails))), list(rails.values()))
    return None


def discover_hwmon(root=""):
    """hwmon: in<k>_label, in<k>_input (mV), curr<k>_input (mA); power = mV x mA / 1000."""
    rails = {}
    for d in sorted(glob.glob(root + "/sys/class/hwmon/hwmon*")) + sorted(
            glob.glob(root + "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")):
        if (read_text(d + "/name") or "").startswith("ina3221"):
            for lab in sorted(glob.glob(d + "/in*_label")):
                k = lab[len(d) + 3:-6]
                label = read_text(lab)
                if label and os.path.exists(d + "/curr%s_input" % k):
                    rails.setdefault(label, (1e-3, d + "/in%s_input" % k, d + "/curr%s_input" % k))
    return rails_to_meter("ina3221-hwmon", rails)


def discover(root=""):
    """hwmon (JetPack 5+) first, then IIO (JetPack 4)."""
    return discover_hwmon(root) or discover_iio(root)


def discover_iio(root=""):
    """IIO: rail_name_<n>, in_power<n>_input (mW)."""
    rails = {}
    for d in sorted(glob.glob(root + "/sys/bus/i2c/drivers/ina3221x/*/iio:device*")):
        for lab in sorted(glob.glob(d + "/rail_name_*")):
            k = lab.rsplit("_", 1)[1]
            label = read_text(lab)
            if label and os.path.exists(d + "/in_power%s_input" % k):
                rails.setdefault(label, (1.0, d + "/in_power%s_input" % k))
    return rails_to_meter("ina3221-iio", rails)
