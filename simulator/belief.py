"""Belief: what a policy may know about its choices, never the world's draws.

* ``samples`` (default): each cell's latency distribution from the *other* half of the campaign's
  raw samples (the world draws from the odd-indexed half, belief has the even-indexed one).
* ``campaign``: another campaign's samples (plan with one device's data, run on another's). A
  choice it did not measure is believed infinitely slow (a policy will not pick it blind).

Belief answers per busy-CPU value, interpolating between its own measured levels by the same
rule as the world (simulator.world.place).
"""
from __future__ import annotations

import bisect

import numpy as np

from simulator.world import Campaign, SampleTable, split_half

QS = np.linspace(0.0, 1.0, 101)


class Belief:
    def __init__(self, kind: str, labels: list[str], levels: np.ndarray, quantiles: np.ndarray, mean: np.ndarray,
                 energy_mj: np.ndarray, switch_ms: np.ndarray, accuracy: np.ndarray):
        self.kind = kind
        self.labels = labels
        self.levels = np.asarray(levels, float)
        self.Q = quantiles            # [C, L, len(QS)] ms
        self.mean = mean              # [C, L]
        self.energy = energy_mj       # [C, L]
        self.switch_ms = switch_ms    # [C]
        self.accuracy = accuracy      # [C]
        self._lv = [float(x) for x in self.levels]
        self._pmeet: dict[float, np.ndarray] = {}

    def where(self, busy: float) -> tuple[int, int, float]:
        """(lo, hi, w) of one busy-CPU value among belief's levels (scalar fast path)."""
        lv = self._lv
        x = min(max(float(busy), lv[0]), lv[-1])
        hi = bisect.bisect_left(lv, x)
        if lv[hi] == x:
            return hi, hi, 0.0
        lo = hi - 1
        return lo, hi, (x - lv[lo]) / (lv[hi] - lv[lo])

    def _mix(self, table: np.ndarray, busy: float) -> np.ndarray:
        lo, hi, w = self.where(busy)
        if w == 0.0:
            return table[:, lo]
        return table[:, lo] * (1 - w) + table[:, hi] * w

    def latency_ms(self, busy: float, q: float = 0.5) -> np.ndarray:
        """[C] believed latency quantile q at this load."""
        return self._mix(self.Q[:, :, int(round(q * (len(QS) - 1)))], busy)

    def mean_ms(self, busy: float) -> np.ndarray:
        return self._mix(self.mean, busy)

    def energy_mj(self, busy: float) -> np.ndarray:
        return self._mix(self.energy, busy)

    def p_meet(self, busy: float, deadline_ms: float) -> np.ndarray:
        """[C] believed probability that a request's service meets the deadline at this load."""
        t = self._pmeet.get(deadline_ms)
        if t is None:
            t = self._pmeet[deadline_ms] = (self.Q <= deadline_ms).mean(axis=2)
        return self._mix(t, busy)


def from_samples(camp: Campaign, half: str = "even") -> Belief:
    tab = SampleTable([[split_half(s, half) for s in cell] for cell in camp.samples])
    mean = np.array([[np.mean(tab.s[c, l, : tab.n[c, l]]) for l in range(len(camp.levels))]
                     for c in range(len(camp.choices))])
    return Belief(f"samples:{half}-half of {camp.campaign_id}/{camp.target}", camp.labels, camp.levels,
                  tab.quantiles(QS), mean, np.nan_to_num(camp.energy_mj), camp.switch_ms, camp.accuracy)


def from_campaign(world_camp: Campaign, other: Campaign) -> Belief:
    """Belief from another campaign, on the world's choices (matched by candidate and threads)."""
    full = from_samples(other, "all")
    idx = {ch: i for i, ch in enumerate(other.choices)}
    C, L = len(world_camp.choices), len(other.levels)
    Q = np.full((C, L, len(QS)), np.inf)
    mean = np.full((C, L), np.inf)
    energy = np.zeros((C, L))
    sw = np.array(world_camp.switch_ms, float)
    for c, ch in enumerate(world_camp.choices):
        if ch in idx:
            j = idx[ch]
            Q[c], mean[c], energy[c], sw[c] = full.Q[j], full.mean[j], full.energy[j], other.switch_ms[j]
    return Belief(f"campaign:{other.campaign_id}/{other.target}", world_camp.labels, other.levels, Q, mean, energy, sw,
                  world_camp.accuracy)
