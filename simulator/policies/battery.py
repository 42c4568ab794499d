"""battery-aware: keep the device serving to the end of the trace (or ``horizon_s``) with the best
QoE the remaining energy allows. The energy a request may use is what is left above
``reserve_pct``, less what other apps will drain at the rate the trace's battery level fell over
the last ``drain_window_s``, spread over the requests still to come; among the choices belief
says fit, the best expected QoE, else the most frugal."""
from __future__ import annotations

import numpy as np

from simulator.policies.reference import expected_qoe


class BatteryAware:
    observes = True

    def __init__(self, horizon_s: float | None = None, reserve_pct: float = 1.0, drain_window_s: float = 60.0):
        if horizon_s is not None and horizon_s <= 0:
            raise ValueError(f"horizon_s: expected seconds > 0, got {horizon_s}")
        self.horizon_s, self.reserve_pct, self.drain_window_s = horizon_s, reserve_pct, drain_window_s

    def reset(self, env, rng) -> None:
        self.env = env
        self.end_s = self.horizon_s or env.n_periods * env.decide_every_s

    def decide(self, obs) -> int:
        env = self.env
        eq = expected_qoe(env, obs.busy)
        if not env.capacity_mj or np.isnan(obs.battery_pct):
            return int(np.argmax(eq))
        left_s = max(self.end_s - obs.t_s, env.decide_every_s)
        drain = 0.0
        if "battery_pct" in obs.trace.columns and obs.row > 0:
            t = obs.trace.t_s[: obs.row + 1]
            lv = obs.history("battery_pct")
            i = int(np.searchsorted(t, t[-1] - self.drain_window_s))
            ok = ~np.isnan(lv[i:])
            if ok.sum() >= 2 and t[-1] > t[i]:
                seg, ts = lv[i:][ok], t[i:][ok]
                drain = max(0.0, (seg[0] - seg[-1]) / (ts[-1] - ts[0]))   # %/s by other apps
        avail = (obs.battery_pct - self.reserve_pct - drain * left_s) / 100.0 * env.capacity_mj
        per_request = avail / max(env.rate_hz * left_s, 1.0)
        fits = env.belief.energy_mj(obs.busy) <= per_request
        if not fits.any():
            return int(np.argmin(env.belief.energy_mj(obs.busy)))
        return int(np.argmax(np.where(fits, eq, -np.inf)))
