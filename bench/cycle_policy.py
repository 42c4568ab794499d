"""A test policy for simulator.live (--plugin bench/cycle_policy.py --policy cycle): switches at
every decision, cycling through ``among`` choices spread over the campaign, so every period pays a
model load. It stresses the part of the simulator a calm policy never exercises: switch costs."""
from __future__ import annotations

from simulator.policies import REGISTRY


class Cycle:
    observes = False

    def __init__(self, among: int = 4):
        self.among = int(among)

    def reset(self, env, rng):
        n = env.n_choices
        step = max(1, n // self.among)
        self.order = list(range(0, n, step))[: self.among]

    def decide(self, obs) -> int:
        return self.order[obs.k % len(self.order)]


REGISTRY["cycle"] = Cycle
