"""x86 RAPL package energy counters (/sys/class/powercap/intel-rapl:<n>/energy_uj): cumulative
uJ that wrap at max_energy_range_uj; readable by root only on most kernels."""

import glob

from harness.telemetry.meters.base import PowerMeter, read_num


class RaplEnergy(PowerMeter):
    kind = "energy"
    max_hz = 1000.0

    def __init__(self, name, domains):
        self.name = name
        self.domains = domains   # [(energy_path, max_range_uj)]

    def read_uj(self):
        vals = [read_num(p) for p, _ in self.domains]
        return None if any(v is None for v in vals) else vals

    def delta_mj(self, a, b):
        tot = 0.0
        for (_, rng), x, y in zip(self.domains, a, b):
            d = y - x
            if d < 0:
                d += rng
            tot += d
        return tot / 1e3


def discover(root=""):
    doms = []
    for d in sorted(glob.glob(root + "/sys/class/powercap/intel-rapl:[0-9]*")):
        if ":" in d.rsplit("intel-rapl:", 1)[1]:
            continue   # sub-domains (core, dram) are inside the package counter
        e = d + "/energy_uj"
        try:
            with open(e) as f:
                f.read()
        except OSError:
            continue
        doms.append((e, read_num(d + "/max_energy_range_uj") or 2 ** 32))
    return RaplEnergy("sensor:rapl:package", doms) if doms else None
