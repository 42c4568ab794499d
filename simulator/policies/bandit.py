"""linucb (disjoint LinUCB, Li et al., WWW'10): a contextual bandit over the choices, learning
from the QoE its own requests earned, the user's QoE, which it is never told. Context features:
1, other apps' load (busy CPUs over the highest level measured), and the battery (a fraction,
1 without one). Every arm starts optimistic (``optimism`` pseudo-observations of the best QoE a
request can earn), so each is tried until what it earns brings it below the others; or, with
``prior`` > 0, from belief's expected QoE at the base context (it explores less where belief is
right, and is misled where the user's weights differ). Written in numpy: Sherman-Morrison updates
of each arm's inverse matrix."""
from __future__ import annotations

import numpy as np

from simulator.policies.reference import expected_qoe


class LinUCB:
    observes = True

    def __init__(self, alpha: float = 0.5, ridge: float = 1.0, optimism: float = 1.0, prior: float = 0.0):
        if alpha < 0 or ridge <= 0 or prior < 0 or optimism < 0:
            raise ValueError("alpha >= 0, ridge > 0, optimism >= 0, prior >= 0")
        self.alpha, self.ridge, self.optimism, self.prior = alpha, ridge, optimism, prior

    def _x(self, busy: float, battery: float) -> np.ndarray:
        return np.array([1.0, busy / self.scale, 1.0 if np.isnan(battery) else battery / 100.0])

    def reset(self, env, rng) -> None:
        self.env = env
        C, d = env.n_choices, 3
        self.scale = max(float(env.belief.levels[-1]), 1.0)
        self.Ainv = np.repeat(np.eye(d)[None] / self.ridge, C, axis=0)
        self.b = np.zeros((C, d))
        x0 = self._x(float(env.belief.levels[0]), 100.0)
        if self.prior > 0:   # pseudo-observations of belief's expected QoE, unloaded, full battery
            r0 = expected_qoe(env, float(env.belief.levels[0]))
            for c in range(C):
                for _ in range(int(round(self.prior))):
                    self._learn(c, x0, float(r0[c]))
        else:                # optimism: every arm as good as the best answer can be
            best = env.qoe.accuracy * float(env.accuracy.max()) if env.qoe.accuracy else 1.0
            for c in range(C):
                for _ in range(int(round(self.optimism))):
                    self._learn(c, x0, best)
        self.theta = np.einsum("cij,cj->ci", self.Ainv, self.b)
        self.last_x = None

    def _learn(self, c: int, x: np.ndarray, r: float) -> None:
        A = self.Ainv[c]
        Ax = A @ x
        A -= np.outer(Ax, Ax) / (1.0 + x @ Ax)
        self.b[c] += r * x

    def decide(self, obs) -> int:
        if self.last_x is not None and len(obs.done_qoe):
            for c in np.unique(obs.done_choice):
                c = int(c)
                self._learn(c, self.last_x, float(obs.done_qoe[obs.done_choice == c].mean()))
                self.theta[c] = self.Ainv[c] @ self.b[c]
        x = self._x(obs.busy, obs.battery_pct)
        ucb = self.theta @ x + self.alpha * np.sqrt(np.einsum("i,cij,j->c", x, self.Ainv, x))
        self.last_x = x
        return int(np.argmax(ucb))
