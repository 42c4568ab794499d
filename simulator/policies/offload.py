"""Offloading policies: where each request runs (device, split, server) as well as which model.

Both see the bandwidth the trace shows up to now (the device's own throughput estimate) and the
stated RTT, timeout, slowdown and radio model; belief about compute is the device's samples (the
other half) and the server's medians. Without offload actions (simulator.replay) they choose
among the device's choices by the same belief, so they run anywhere a policy runs."""
from __future__ import annotations

from collections import deque

import numpy as np

from simulator.policies.reference import expected_qoe, switch_cost

BANDWIDTH = "bandwidth_mbps"


def observed_bandwidth(obs) -> float:
    """The latest bandwidth the trace shows (Mbit/s); 0 when none was measured yet."""
    if BANDWIDTH not in obs.trace.columns:
        return 0.0
    h = obs.history(BANDWIDTH)
    for v in h[::-1][:32]:
        if np.isfinite(v):
            return max(float(v), 0.0)
    return 0.0


def believed(env, busy: float, bw_mbps: float) -> tuple[np.ndarray, np.ndarray]:
    """[A] believed median latency (ms) and QoE per request of every action at this load and
    bandwidth; the same rules as the world (simulator.offload), with belief's numbers."""
    o = env.offload
    if o is None:
        return env.belief.latency_ms(busy, 0.5), expected_qoe(env, busy)
    a, d, q = o.actions, o.device_env.belief, env.qoe
    lo, hi, w = d.where(busy)
    Qc = d.Q[:, lo] if w == 0.0 else d.Q[:, lo] * (1 - w) + d.Q[:, hi] * w     # [C, quantiles]
    Qa = Qc[a.choice]        # the device's belief is already the stated device's
    up, down = a.up_bytes * 8e-6, a.down_bytes * 8e-6                          # Mbit
    net = o.rtt_ms + (up + down) / bw_mbps * 1e3 if bw_mbps > 0 else np.full(len(up), np.inf)
    away = np.where(a.remote, net + o.server_ms[a.choice] * (1 - a.share), 0.0)
    fb = a.remote & (away > o.timeout_ms)
    part = np.where(fb, 1.0, a.share)
    lat = Qa * part[:, None] + np.where(fb, o.timeout_ms, away)[:, None]
    p = (lat <= env.deadline_ms).mean(axis=1)
    p[lat[:, lat.shape[1] // 2] > 1e3 / env.rate_hz] = 0.0   # slower than requests arrive: the queue grows
    r = o.radio
    radio = a.remote * (r.up_mj_per_mbit * up + r.down_mj_per_mbit * down * ~fb
                        + r.active_mw * np.minimum(away, o.timeout_ms) / 1e3)
    energy = d._mix(d.energy, busy)[a.choice] * part + radio
    value = (q.accuracy * env.accuracy * (p + q.late_credit * (1 - p)) - q.miss * (1 - p)
             - q.energy_per_mj * energy)
    return lat[:, lat.shape[1] // 2], value


def action_switch_cost(env, busy: float, lat: np.ndarray) -> np.ndarray:
    """[A] QoE a switch into each action's model costs by belief: its load on the device delays the
    requests that arrive meanwhile too (on a slow device a load takes seconds), each late
    when load + latency passes the deadline."""
    o = env.offload
    if o is None:
        return switch_cost(env, busy)
    q = env.qoe
    late = (o.switch_ms + lat) > env.deadline_ms
    delayed = 1.0 + o.switch_ms * env.rate_hz / 1e3
    return (q.switch + q.energy_per_mj * o.switch_mj
            + late * delayed * (q.miss + q.accuracy * env.accuracy * (1 - q.late_credit)))


class OffloadThreshold:
    """Per model: run it here unless sending it away (whole or split, whichever is believed
    faster at the bandwidth seen now) is believed faster by ``margin`` (a share of the device's
    latency); then the model whose place so chosen has the best believed QoE."""
    observes = False
    offload = True

    def __init__(self, margin: float = 0.2):
        if not 0 <= margin < 1:
            raise ValueError(f"margin: expected a share in [0, 1), got {margin}")
        self.margin = float(margin)

    def reset(self, env, rng) -> None:
        self.env = env

    def decide(self, obs) -> int:
        lat, value = believed(self.env, obs.busy, observed_bandwidth(obs))
        o = self.env.offload
        if o is None:
            return int(np.argmax(value))
        a = o.actions
        here = a.device_action
        # each model's fastest remote action: sorted by (model, latency), device actions last
        order = np.lexsort((np.where(a.remote, lat, np.inf), a.choice))
        away = order[np.searchsorted(a.choice[order], np.arange(len(here)))]
        go = a.remote[away] & (lat[away] < (1 - self.margin) * lat[here])
        pick = np.where(go, away, here)
        return int(pick[np.argmax(value[pick])])


class OffloadMPC:
    """Lookahead on a bandwidth forecast (after robustMPC, Yin et al., SIGCOMM'15): the forecast
    is the harmonic mean of the last ``window`` bandwidths seen, divided by 1 + the largest recent
    relative forecast error; every action is valued over ``horizon`` periods, this one at the
    bandwidth seen now and the rest at the forecast, less a switch's cost."""
    observes = False
    offload = True

    def __init__(self, horizon: int = 10, window: int = 5):
        # 10 decisions: on a slow device a model switch (its first inference) must pay for itself
        # over several periods (horizon 5 almost never left the device; bench/offload.py)
        if horizon < 1 or window < 1:
            raise ValueError("horizon and window: expected whole numbers >= 1")
        self.horizon, self.window = int(horizon), int(window)

    def reset(self, env, rng) -> None:
        self.env = env
        self.past: deque = deque(maxlen=self.window)
        self.errs: deque = deque(maxlen=self.window)
        self.forecast: float | None = None

    def decide(self, obs) -> int:
        bw = observed_bandwidth(obs)
        if self.forecast is not None:
            self.errs.append(abs(self.forecast - bw) / max(bw, 1e-3))
        self.past.append(bw)
        # a zero in the window (an outage) pulls the harmonic mean to zero: stay local until it leaves
        hm = 0.0 if min(self.past) <= 0 else len(self.past) / sum(1.0 / x for x in self.past)
        self.forecast = hm / (1.0 + max(self.errs, default=0.0))
        lat, now = believed(self.env, obs.busy, bw)
        value = now
        if self.horizon > 1:
            value = now + (self.horizon - 1) * believed(self.env, obs.busy, self.forecast)[1]
        value = value * self.env.rate_hz * self.env.decide_every_s
        if obs.current >= 0:
            cost = action_switch_cost(self.env, obs.busy, lat)
            o = self.env.offload
            other = (o.actions.choice != o.actions.choice[obs.current]) if o is not None else \
                (np.arange(len(value)) != obs.current)     # a change of place alone is no switch
            value = value - cost * other
        return int(np.argmax(value))
