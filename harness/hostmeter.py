"""Power meters attached to the host rather than the device: a USB meter on the host's serial
port, a Monsoon on its USB, an INA219/INA260 on its I2C bus. Inventory: ``power_meter: {type:
um25c, port: /dev/ttyUSB0, attached: host}``.

The host samples the meter on its own monotonic clock while the agent keeps the idle and timed
windows on the device's. The two clocks are aligned NTP-style: the host asks the agent for its
clock several times and keeps the exchange with the shortest round trip, whose midpoint is the
best estimate (error at most half that round trip). It does so before and after each job and
uses the mean, so a drifting clock is corrected too; the offset, its uncertainty and the drift
are recorded with the energy.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.telemetry.meters import MeterError, PowerSampler, open_meter


class HostMeter:
    def __init__(self, spec: dict):
        self.meter = open_meter({k: v for k, v in spec.items() if k not in ("attached", "hz")})
        self.name = self.meter.name + "@host"
        self.hz = min(float(spec.get("hz", 50.0)), float(getattr(self.meter, "max_hz", 50.0)))
        if self.meter.kind != "power":
            self.meter.close()
            raise MeterError(f"power_meter {spec.get('type')}: an energy counter cannot be read on the host")

    def close(self) -> None:
        self.meter.close()


def clock_offset(ping: Callable[[], float], n: int = 8) -> tuple[float, float]:
    """(device clock - host clock, uncertainty), both in s, from the fastest of ``n`` exchanges.
    ``ping()`` returns the device's monotonic time."""
    best = None
    for _ in range(n):
        t0 = time.monotonic()
        td = ping()
        t1 = time.monotonic()
        if best is None or t1 - t0 < best[1]:
            best = (td - (t0 + t1) / 2.0, (t1 - t0))
    return best[0], best[1] / 2.0


def measure_with_host_meter(hm: HostMeter, ping: Callable[[], float], request: Callable[[], dict]) -> dict:
    """Run ``request()`` (the agent's measure, told to keep windows only) while the host samples,
    then fill its ``energy`` from the host's samples over the aligned windows."""
    off_a, err_a = clock_offset(ping)
    sampler = PowerSampler(hm.meter, hm.hz).start()
    try:
        res = request()
    finally:
        sampler.stop()
    e = res.get("energy") if res.get("ok") else None
    if not e or e.get("method") != "host":
        return res
    off_b, err_b = clock_offset(ping)
    off = (off_a + off_b) / 2.0
    t_i, t_a, t_b = (e["t_idle_mono"] - off, e["t_start_mono"] - off, e["t_end_mono"] - off)
    host = sampler.window_energy(t_i, t_a, t_b)
    if host is None:
        res["energy"] = None
        res.setdefault("warnings", []).append(f"host meter {hm.name}: no samples over the job's window")
        return res
    # The window's times stay the device's (t_start_mono, as the agent reported them); the host's beside them.
    host["t_start_host"], host["t_end_host"] = host.pop("t_start_mono"), host.pop("t_end_mono")
    res["energy"] = dict(e, **host, source=hm.name,
                         method=f"sampled {sampler.hz:.0f} Hz on the host, trapezoid, clocks aligned",
                         clock_offset_s=off, clock_uncertainty_s=max(err_a, err_b) + abs(off_b - off_a) / 2.0,
                         clock_drift_s=off_b - off_a)
    return res
