"""mpc (after robustMPC, Yin et al., SIGCOMM'15): forecast other apps' load over a short horizon
as the harmonic mean of recent observations, made pessimistic by the largest recent forecast
error; pick the choice whose believed QoE over the horizon, this period's load known and the
forecast after it, less a switch's cost, is highest."""
from __future__ import annotations

from collections import deque

import numpy as np

from simulator.policies.reference import expected_qoe, switch_cost


class MPC:
    observes = False

    def __init__(self, horizon: int = 5, window: int = 5):
        if horizon < 1 or window < 1:
            raise ValueError("horizon and window: expected whole numbers >= 1")
        self.horizon, self.window = int(horizon), int(window)

    def reset(self, env, rng) -> None:
        self.env = env
        self.past: deque = deque(maxlen=self.window)
        self.errs: deque = deque(maxlen=self.window)
        self.forecast: float | None = None

    def decide(self, obs) -> int:
        busy = obs.busy
        if self.forecast is not None:
            self.errs.append(abs(self.forecast - busy) / max(busy, 1.0))
        self.past.append(busy)
        # harmonic mean of (1 + load): defined at zero load, dominated by the calm periods
        hm = len(self.past) / sum(1.0 / (1.0 + x) for x in self.past) - 1.0
        self.forecast = hm * (1.0 + max(self.errs, default=0.0))   # robust: load errs upward
        per = self.env.rate_hz * self.env.decide_every_s
        value = per * (expected_qoe(self.env, busy) + (self.horizon - 1) * expected_qoe(self.env, self.forecast))
        if obs.current >= 0:
            value = value - switch_cost(self.env, busy) * (np.arange(len(value)) != obs.current)
        return int(np.argmax(value))
