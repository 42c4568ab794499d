"""Hindsight references: the oracle (dynamic program over the whole trace on the realized draws)
and the static oracle (the best single choice in hindsight).

The oracle's actions are every choice at every decision, the same action set any policy has, so
its optimum bounds every policy. Per decision period k and choice c the realized draws give the
period's QoE with and without a switch into c, the worker starting free; then

    V[k, c] = max(V[k-1, c] + q_stay[k, c],  max_{c' != c} V[k-1, c'] + q_switch[k, c])

This is exact when no choice leaves work queued past the next period's first arrival. Where one
does, the program's value is a relaxation (a queue only delays), still an upper bound, printed as
``oracle_bound``; the plan is then replayed for real, against the best single choice (which the
relaxation can miss), the better kept, and ``oracle_exact`` is False. Where the
battery can run out, the plan maximizes QoE - lambda x energy, lambda searched so that the
battery lasts (the best realized plan is kept; ``oracle_exact`` False).
"""
from __future__ import annotations

import numpy as np

from simulator.world import Realization, ServeState, serve


def period_tables(real: Realization, P: np.ndarray, qoe, deadline_ms: float, acc: np.ndarray, switched: bool):
    """Per period and choice, the worker free at the period's start: (QoE sum, energy sum, finish
    of the last request in ms), each [K, C]; ``P`` is ``real.period_rows()``."""
    mask = P >= 0
    Pi = np.where(mask, P, 0)
    a = np.where(mask, real.arrivals_s[Pi] * 1e3, -np.inf)[:, :, None]
    svc = np.where(mask[:, :, None], real.latency_ms[Pi], 0.0)
    en = np.where(mask[:, :, None], real.energy_mj[Pi], 0.0)
    sw = np.zeros(mask.shape, bool)
    if switched:
        sw[:, 0] = mask[:, 0]
        svc[:, 0, :] += real.switch_ms * sw[:, 0, None]
        en[:, 0, :] += real.switch_mj * sw[:, 0, None]
    C = np.cumsum(svc, axis=1)
    finish = C + np.maximum.accumulate(a - (C - svc), axis=1)
    missed = (finish - a) > deadline_ms
    q = qoe.per_request(acc[None, None, :], missed, en, sw[:, :, None])
    q = np.where(mask[:, :, None], q, 0.0).sum(axis=1)
    last = np.maximum(mask.sum(axis=1) - 1, 0)
    end = finish[np.arange(len(P)), last]
    end[~mask[:, 0]] = -np.inf
    return q, en.sum(axis=1), end


def dp(q0: np.ndarray, q1: np.ndarray, group: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The best plan [K] and its value, from stay/switch values [K, C]; the first choice is free.
    ``group`` [C]: choices of one group (one model in several places) move among themselves
    without a switch (default: every choice its own group)."""
    if group is not None and len(np.unique(group)) < len(group):
        return _dp_groups(q0, q1, np.asarray(group))
    K, C = q0.shape
    V = q0[0].copy()
    ptr = np.empty((K, C), np.int32)
    ptr[0] = np.arange(C)
    idx = np.arange(C)
    for k in range(1, K):
        if C > 1:
            o = np.argpartition(-V, 1)[:2]
            b1, b2 = (o[0], o[1]) if V[o[0]] >= V[o[1]] else (o[1], o[0])
            src = np.where(idx == b1, b2, b1)
        else:
            src = idx
        stay = V + q0[k]
        move = V[src] + q1[k]
        better = stay >= move
        V = np.where(better, stay, move)
        ptr[k] = np.where(better, idx, src)
    return _back(V, ptr)


def _back(V: np.ndarray, ptr: np.ndarray) -> tuple[np.ndarray, float]:
    K = len(ptr)
    plan = np.empty(K, np.int64)
    plan[-1] = int(np.argmax(V))
    for k in range(K - 1, 0, -1):
        plan[k - 1] = ptr[k, plan[k]]
    return plan, float(V.max())


def _dp_groups(q0: np.ndarray, q1: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, float]:
    """:func:`dp` where a move within a group is free: from the best of its own group without a
    switch, or from the best of any other group with one."""
    K, C = q0.shape
    _, g = np.unique(group, return_inverse=True)
    G = int(g.max()) + 1
    order = np.argsort(g, kind="stable")
    starts = np.searchsorted(g[order], np.arange(G))
    V = q0[0].copy()
    ptr = np.empty((K, C), np.int32)
    ptr[0] = np.arange(C)
    for k in range(1, K):
        Vo = V[order]
        gbest = np.maximum.reduceat(Vo, starts)                      # [G] best value in each group
        garg = order[starts + _argmax_reduceat(Vo, starts, gbest, g[order])]
        if G > 1:
            o = np.argpartition(-gbest, 1)[:2]
            b1, b2 = (o[0], o[1]) if gbest[o[0]] >= gbest[o[1]] else (o[1], o[0])
            src_g = np.where(g == b1, b2, b1)
        else:
            src_g = g
        stay = gbest[g] + q0[k]
        move = gbest[src_g] + q1[k] if G > 1 else np.full(C, -np.inf)
        better = stay >= move
        V = np.where(better, stay, move)
        ptr[k] = np.where(better, garg[g], garg[src_g])
    return _back(V, ptr)


def _argmax_reduceat(Vo: np.ndarray, starts: np.ndarray, gbest: np.ndarray, gsorted: np.ndarray) -> np.ndarray:
    """Offset within each group (of the sorted values) of its maximum: the first one."""
    hit = Vo == gbest[gsorted]
    pos = np.where(hit, np.arange(len(Vo)), len(Vo))
    return np.minimum.reduceat(pos, starts) - starts


def replay_plan(real: Realization, plan: np.ndarray, qoe, deadline_ms: float, acc: np.ndarray) -> dict:
    ch = plan[real.period]
    first = np.zeros(real.n, bool)
    if real.n:
        first[np.concatenate([[0], np.nonzero(np.diff(real.period))[0] + 1])] = True
        prev = np.concatenate([[plan[0]], plan[:-1]])
        g = real.group if real.group is not None else np.arange(real.latency_ms.shape[1])
        first &= g[plan[real.period]] != g[prev[real.period]]
    return serve(real, 0, real.n, ch, first, qoe, deadline_ms, acc, ServeState())


def solve(real: Realization, qoe, deadline_ms: float, acc: np.ndarray) -> dict:
    P = real.period_rows()
    q0, e0, end0 = period_tables(real, P, qoe, deadline_ms, acc, False)
    q1, e1, end1 = period_tables(real, P, qoe, deadline_ms, acc, True)
    # the first arrival after each period (inf at the end), to see whether any queue can carry over
    first = np.where(P[:, 0] >= 0, real.arrivals_s[np.maximum(P[:, 0], 0)] * 1e3, np.inf)
    nxt = np.append(np.minimum.accumulate(first[::-1])[::-1][1:], np.inf)
    carry = bool(((end0 > nxt[:, None]) | (end1 > nxt[:, None])).any())
    plan, bound = dp(q0, q1, real.group)
    exact = not carry
    if carry:   # queues carry over: the program is a relaxation; keep the best constant plan if it scores better
        const = np.full(len(plan), int(np.argmax(static_values(real, qoe, deadline_ms, acc))))
        if (replay_plan(real, const, qoe, deadline_ms, acc)["qoe"].sum()
                > replay_plan(real, plan, qoe, deadline_ms, acc)["qoe"].sum()):
            plan = const
    if real.capacity_mj:
        # the most the battery can lose to any plan: the costliest choice for every request
        worst = real.energy_mj.max(axis=1).sum() + real.switch_mj.max() * real.n_periods
        lowest = float(np.min(real.battery_trace_pct)) if real.n else 100.0
        if lowest - 100.0 * worst / real.capacity_mj <= 0:
            plan, exact = _battery_plan(real, q0, q1, e0, e1, qoe, deadline_ms, acc, plan), False
    return {"plan": plan, "bound": bound, "exact": exact}


def _battery_plan(real, q0, q1, e0, e1, qoe, deadline_ms, acc, plan0) -> np.ndarray:
    """Price energy at lambda until the battery lasts; keep the plan whose replay scores best."""
    def score(plan):
        return float(replay_plan(real, plan, qoe, deadline_ms, acc)["qoe"].sum())
    best, best_v = plan0, score(plan0)
    lo, hi = 0.0, max(1.0, float(np.abs(q0).max() / max(float(np.min(e0[e0 > 0], initial=1e-3)), 1e-9)))
    for _ in range(14):
        lam = (lo + hi) / 2
        plan, _ = dp(q0 - lam * e0, q1 - lam * e1, real.group)
        out = replay_plan(real, plan, qoe, deadline_ms, acc)
        v = float(out["qoe"].sum())
        if v > best_v:
            best, best_v = plan, v
        if out["served"].all():
            hi = lam
        else:
            lo = lam
    return best


def static_values(real: Realization, qoe, deadline_ms: float, acc: np.ndarray) -> np.ndarray:
    """[C] total QoE of keeping each choice for the whole trace, all choices at once (the same
    FIFO and battery rules as simulator.world.serve, vectorized over choices)."""
    a = real.arrivals_s[:, None] * 1e3
    L = real.latency_ms
    C = np.cumsum(L, axis=0)
    finish = C + np.maximum.accumulate(a - (C - L), axis=0)
    missed = (finish - a) > deadline_ms
    e = real.energy_mj
    q = qoe.per_request(acc[None, :], missed, e, np.zeros((1, 1), bool))
    if real.capacity_mj:
        bat = real.battery_trace_pct[:, None] - 100.0 * np.cumsum(e, axis=0) / real.capacity_mj
        q = np.where(np.minimum.accumulate(bat > 0, axis=0), q, 0.0)
    return q.sum(axis=0)


class Oracle:
    """Hindsight dynamic program over the whole trace (module docstring)."""
    observes = False
    hindsight = True

    def reset(self, env, rng) -> None:
        self.env = env

    def plan(self, real: Realization, qoe) -> None:
        out = solve(real, qoe, self.env.deadline_ms, self.env.accuracy)
        self.plan_, self.bound_, self.exact_ = out["plan"], out["bound"], out["exact"]

    def decide(self, obs) -> int:
        return int(self.plan_[obs.k])


class StaticOracle:
    """The best single choice in hindsight, on the realized draws."""
    observes = False
    hindsight = True

    def reset(self, env, rng) -> None:
        self.env = env

    def plan(self, real: Realization, qoe) -> None:
        self.choice_ = int(np.argmax(static_values(real, qoe, self.env.deadline_ms, self.env.accuracy)))

    def decide(self, obs) -> int:
        return self.choice_
