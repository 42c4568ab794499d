"""Reference online policies: what a one-shot selection tool gives, and the plainest adaptation."""
from __future__ import annotations

import numpy as np


def expected_qoe(env, busy: float) -> np.ndarray:
    """[C] QoE per request that belief expects at this load, queueing aside."""
    b, q = env.belief, env.qoe
    p = b.p_meet(busy, env.deadline_ms)
    return (q.accuracy * env.accuracy * (p + q.late_credit * (1 - p)) - q.miss * (1 - p)
            - q.energy_per_mj * b.energy_mj(busy))


class StaticBelief:
    """The best single choice by belief at the base context (the lowest background load), kept for
    the whole trace: what a one-shot selection tool gives."""
    observes = False

    def reset(self, env, rng) -> None:
        self.choice = int(np.argmax(expected_qoe(env, float(env.belief.levels[0]))))

    def decide(self, obs) -> int:
        return self.choice


class Greedy:
    """Per decision: the most accurate choice whose believed latency quantile ``q`` at the current
    load meets the deadline (ties: the faster); none does: the fastest."""
    observes = False

    def __init__(self, q: float = 0.9):
        if not 0 <= q <= 1:
            raise ValueError(f"q: expected a quantile in [0, 1], got {q}")
        self.q = q

    def reset(self, env, rng) -> None:
        self.env = env
        self.order_acc = env.accuracy

    def decide(self, obs) -> int:
        lat = self.env.belief.latency_ms(obs.busy, self.q)
        ok = lat <= self.env.deadline_ms
        if not ok.any():
            return int(np.argmin(lat))
        idx = np.flatnonzero(ok)   # the most accurate, then the fastest
        top = idx[self.order_acc[idx] == self.order_acc[idx].max()]
        return int(top[np.argmin(lat[top])])


def switch_cost(env, busy: float) -> np.ndarray:
    """[C] QoE a switch into each choice costs by belief: its penalty, its load's energy, and the
    first request after it missing when load time + latency passes the deadline."""
    b, q = env.belief, env.qoe
    late = (b.switch_ms + b.mean_ms(busy)) > env.deadline_ms
    power = b.energy_mj(busy) / np.maximum(b.mean_ms(busy), 1e-9)
    return q.switch + q.energy_per_mj * power * b.switch_ms + late * (q.miss + q.accuracy * env.accuracy * (1 - q.late_credit))
