"""greedy-hysteresis: the choice belief expects to score best now, switched to only when the
expected gain over a horizon beats what the switch costs."""
from __future__ import annotations

import numpy as np

from simulator.policies.reference import expected_qoe, switch_cost


class GreedyHysteresis:
    observes = False

    def __init__(self, horizon_s: float = 10.0):
        if not horizon_s > 0:
            raise ValueError(f"horizon_s: expected seconds > 0, got {horizon_s}")
        self.horizon_s = horizon_s

    def reset(self, env, rng) -> None:
        self.env = env

    def decide(self, obs) -> int:
        eq = expected_qoe(self.env, obs.busy)
        best = int(np.argmax(eq))
        cur = obs.current
        if cur < 0 or best == cur:
            return best
        gain = (eq[best] - eq[cur]) * self.env.rate_hz * self.horizon_s
        return best if gain > switch_cost(self.env, obs.busy)[best] else cur
