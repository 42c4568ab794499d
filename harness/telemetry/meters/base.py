"""What every power meter shares: file reads, the PowerMeter protocol, the sampling thread.

A meter is an object with

    name      the energy_source label ("sensor:<kind>:<what>"), recorded with every measurement
    kind      "power": read() -> instantaneous mW (or None when the read failed), or
              "energy": read_uj() -> cumulative counters, delta_mj(a, b) -> mJ between two reads
    max_hz    the fastest rate worth sampling it at (a firmware call or a serial meter is slow)
    close()   release what it holds (a subprocess, a tty, an I2C handle)

Stdlib only, Python 3.7: this package ships to devices with the agent.
"""

import time


class MeterError(Exception):
    """A meter that was asked for cannot be opened or read; the message says which and why."""


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def read_num(path, scale=1.0):
    s = read_text(path)
    try:
        return float(s) * scale if s is not None else None
    except ValueError:
        return None


class PowerMeter:
    name = "?"
    kind = "power"
    max_hz = 100.0

    def read(self):
        raise NotImplementedError

    def close(self):
        pass


class SysfsPower(PowerMeter):
    """Instantaneous power in mW from sysfs files: either power files, or voltage/current pairs.
    ``terms`` is a list of (scale, path) or (scale, volt_path, curr_path); power = sum of terms."""

    def __init__(self, name, terms):
        self.name = name
        self.terms = terms

    def read(self):
        total = 0.0
        for t in self.terms:
            if len(t) == 2:
                v = read_num(t[1])
                if v is None:
                    return None
                total += t[0] * v
            else:
                v, c = read_num(t[1]), read_num(t[2])
                if v is None or c is None:
                    return None
                total += t[0] * abs(v * c)   # Android vendors differ in the sign of current_now
        return total


def energy_summary(total_mj, idle_mw, t_a, t_b):
    """The energy fields of a run window [t_a, t_b]: its total, the idle power measured just
    before it, and what is left above idle. mW x s = mJ."""
    dur = t_b - t_a
    return {"window_s": dur, "t_start_mono": t_a, "t_end_mono": t_b, "energy_total_mj": total_mj,
            "idle_power_mw": idle_mw, "mean_power_mw": total_mj / dur if dur > 0 else None,
            "energy_above_idle_mj": total_mj - idle_mw * dur}


class PowerSampler:
    """Samples a power meter in a background thread at ``hz`` (at most the meter's ``max_hz``)
    on the device's monotonic clock."""

    def __init__(self, meter, hz=50.0):
        import threading
        self.meter = meter
        self.hz = min(float(hz), float(getattr(meter, "max_hz", hz)))
        self.period = 1.0 / self.hz
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="power-sampler")
        self._thread.daemon = True

    def _run(self):
        nxt = time.monotonic()
        while not self._stop.is_set():
            try:
                v = self.meter.read()
            except Exception:
                v = None   # a failed read is a gap, never a zero
            t = time.monotonic()
            if v is not None:
                self.samples.append((t, v))
            nxt += self.period
            delay = nxt - time.monotonic()
            if delay < 0:
                nxt = time.monotonic()
            else:
                self._stop.wait(delay)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(2.0)

    def window_energy(self, t_i, t_a, t_b):
        """``energy_summary`` of the run window [t_a, t_b] with idle power from [t_i, t_a], plus
        ``n_power_samples``; None when the samples do not cover both windows."""
        idle, _ = self.integrate(t_i, t_a)
        total, n = self.integrate(t_a, t_b)
        if idle is None or total is None:
            return None
        out = energy_summary(total, idle / (t_a - t_i), t_a, t_b)
        out["n_power_samples"] = n
        return out

    def integrate(self, t0, t1):
        """(energy mJ over [t0, t1] by the trapezoid rule, samples inside), with the curve
        interpolated linearly at both ends. mW x s = mJ."""
        s = self.samples
        if len(s) < 2 or s[0][0] > t0 or s[-1][0] < t1:
            return None, 0

        def at(t):
            for (ta, va), (tb, vb) in zip(s, s[1:]):
                if ta <= t <= tb:
                    return va if tb == ta else va + (vb - va) * (t - ta) / (tb - ta)
            return None
        pts = [(t0, at(t0))] + [x for x in s if t0 < x[0] < t1] + [(t1, at(t1))]
        e = 0.0
        for (ta, va), (tb, vb) in zip(pts, pts[1:]):
            e += 0.5 * (va + vb) * (tb - ta)
        return e, len(pts) - 2
