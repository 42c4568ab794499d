"""alert (after ALERT, Wan et al., USENIX ATC'20): a scalar Kalman filter on one global slowdown
factor, the ratio of observed to believed latency, rescales belief; the most accurate choice
expected to meet the deadline with probability ``confidence`` runs (with ``energy_budget_mj``,
only choices believed within it). The default confidence is 0.99: under the default QoE a miss
costs about what a correct answer earns, so a few points of accuracy are not worth a 10% risk.
Learns from its own requests, so it corrects a belief taken from another device or from a
calmer time."""
from __future__ import annotations

import numpy as np

_Z = {0.5: 0.0, 0.8: 0.842, 0.9: 1.282, 0.95: 1.645, 0.99: 2.326}


class Alert:
    observes = True

    def __init__(self, confidence: float = 0.99, process_var: float = 0.002, measure_var: float = 0.05,
                 energy_budget_mj: float | None = None):
        if not 0.5 <= confidence < 1:
            raise ValueError(f"confidence: expected a probability in [0.5, 1), got {confidence}")
        if process_var < 0 or measure_var <= 0:
            raise ValueError("process_var must be >= 0 and measure_var > 0")
        self.confidence, self.process_var, self.measure_var = confidence, process_var, measure_var
        self.energy_budget_mj = energy_budget_mj

    def reset(self, env, rng) -> None:
        self.env = env
        self.xi, self.P = 1.0, 0.1      # slowdown factor and its variance
        self.z = float(np.interp(self.confidence, list(_Z), list(_Z.values())))

    def _update(self, obs) -> None:
        self.P += self.process_var
        lat = obs.done_latency_ms
        ok = ~np.isnan(lat)
        if not ok.any():
            return
        mean = self.env.belief.mean_ms(float(np.mean(obs.done_busy[ok])))[obs.done_choice[ok]]
        # the median ratio: a switch's load time or a queue behind it is not a slowdown
        z = float(np.clip(np.median(lat[ok] / np.maximum(mean, 1e-9)), 0.1, 10.0))
        n = int(ok.sum())
        P = 1.0 / (1.0 / self.P + n / self.measure_var)
        self.xi = P * (self.xi / self.P + n * z / self.measure_var)
        self.P = P

    def decide(self, obs) -> int:
        self._update(obs)
        b, env = self.env.belief, self.env
        pred = b.latency_ms(obs.busy, self.confidence) * (self.xi + self.z * np.sqrt(self.P))
        ok = pred <= env.deadline_ms
        if self.energy_budget_mj is not None:
            ok &= b.energy_mj(obs.busy) * self.xi <= self.energy_budget_mj
        if not ok.any():
            return int(np.argmin(pred))
        idx = np.flatnonzero(ok)
        top = idx[env.accuracy[idx] == env.accuracy[idx].max()]
        return int(top[np.argmin(pred[top])])
