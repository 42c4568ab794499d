"""adaspring (after AdaSpring, Liu et al., IMWUT'21): a runtime search over the zoo's compression
knobs (width, depth, resolution, quantization, and threads) for the most accurate configuration
that belief says meets the latency deadline (its ``q`` quantile: 0.99 by default, as a miss costs
about what a correct answer earns) and the energy budget, the budget tightened as the
battery runs low. Hill-climbing from the current configuration through configurations one knob
apart, plus ``restarts`` random starts; belief answers for the current load by interpolating
between the levels each configuration was measured at. Choices without knobs are scanned whole."""
from __future__ import annotations

import numpy as np


class AdaSpring:
    observes = True

    def __init__(self, q: float = 0.99, energy_budget_mj: float | None = None, battery_reserve_pct: float = 30.0,
                 restarts: int = 2):
        if not 0 <= q <= 1 or restarts < 0:
            raise ValueError("q: expected a quantile in [0, 1]; restarts: >= 0")
        self.q, self.energy_budget_mj = q, energy_budget_mj
        self.battery_reserve_pct, self.restarts = battery_reserve_pct, int(restarts)

    def reset(self, env, rng) -> None:
        self.env, self.rng = env, rng
        keys = sorted({k for kn in env.knobs for k in kn})
        pts = [tuple(str(kn.get(k)) for k in keys) for kn in env.knobs]
        C = env.n_choices
        if len(keys) <= 1:      # nothing but threads: every choice is a neighbour of every other
            self.nbrs = [np.array([j for j in range(C) if j != i]) for i in range(C)]
        else:
            self.nbrs = [np.array([j for j in range(C) if sum(a != b for a, b in zip(pts[i], pts[j])) == 1])
                         for i in range(C)]

    def _score(self, busy: float, battery: float) -> np.ndarray:
        b, env = self.env.belief, self.env
        lat = b.latency_ms(busy, self.q)
        over = np.maximum(lat / env.deadline_ms - 1.0, 0.0)
        budget = self.energy_budget_mj
        if budget is not None and not np.isnan(battery) and battery < self.battery_reserve_pct:
            budget *= max(battery, 0.0) / self.battery_reserve_pct
        if budget is not None:
            over = over + np.maximum(b.energy_mj(busy) / max(budget, 1e-9) - 1.0, 0.0)
        # feasible first (by accuracy, then speed); infeasible by how far they miss
        return np.where(over > 0, -1.0 - over, env.accuracy - 1e-6 * lat / env.deadline_ms)

    def decide(self, obs) -> int:
        score = self._score(obs.busy, obs.battery_pct)
        starts = [obs.current if obs.current >= 0 else int(np.argmax(self.env.accuracy))]
        starts += [int(x) for x in self.rng.integers(0, self.env.n_choices, self.restarts)]
        best = starts[0]
        for s in starts:
            while True:
                nb = self.nbrs[s]
                if not len(nb):
                    break
                j = int(nb[np.argmax(score[nb])])
                if score[j] <= score[s]:
                    break
                s = j
            if score[s] > score[best]:
                best = s
        return int(best)
