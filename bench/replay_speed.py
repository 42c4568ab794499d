"""Replay speed: static policies' throughput, greedy end to end, the oracle, decision times.

    python bench/replay_speed.py [--campaign runs/C] [--requests 100000] [--repeat 5]

The trace: the shipped phone trace's CPU load, tiled to --requests requests at 10/s. Medians
over --repeat runs in this one process (this machine is shared and noisy).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator import belief as beliefs  # noqa: E402
from simulator import policies as pol  # noqa: E402
from simulator import replay as rp  # noqa: E402
from simulator.oracle import solve, static_values  # noqa: E402
from simulator.traces import SHIPPED, Trace, read_trace  # noqa: E402
from simulator.world import SampleTable, load_campaign, realize, split_half  # noqa: E402


def long_trace(n_requests: int, rate_hz: float) -> Trace:
    src = read_trace(next(SHIPPED.glob("0826c571*.csv")))
    load, _ = src.held("cpu_load_pct")
    dur = n_requests / rate_hz
    period = src.period_s
    n = int(np.ceil(dur / period))
    t = np.arange(n) * period
    return Trace("phone-tiled", None, t, {"cpu_load_pct": np.resize(load, n)}, {"t_s": "s", "cpu_load_pct": "%"})


def med(f, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--campaign", type=Path)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    camp = load_campaign(args.campaign or rp.newest_campaign())
    rate = 10.0
    trace = long_trace(args.requests, rate)
    sc = rp.Scenario(deadline_ms=rp.default_deadline_ms(camp), rate_hz=rate)
    world = SampleTable([[split_half(s, "odd") for s in c] for c in camp.samples])
    bel = beliefs.from_samples(camp, "even")

    def build(battery_wh=None):
        return realize(camp, world, trace, seed=0, rate_hz=rate, rate_column=None, decide_every_s=1.0,
                       load_col="cpu_load_pct", battery_wh=battery_wh)
    t_real, real = med(build, args.repeat)
    C = len(camp.choices)
    print(f"campaign {camp.campaign_id} on {camp.target}: {C} choices; trace {real.n} requests, {real.n_periods} decisions")
    print(f"realize (world draws for every request x choice): {t_real:.3f} s")
    t_static, _ = med(lambda: static_values(real, sc.qoe, sc.deadline_ms, camp.accuracy), args.repeat)
    print(f"static policies, every choice over the whole trace: {real.n * C / t_static / 1e6:.1f} million "
          f"candidate-steps/s ({t_static:.3f} s for {real.n} x {C}; goal >= 10 million)")
    env = rp._env(camp, bel, sc, real.n_periods, None)

    def run(name, r=real, e=env):
        p = pol.make(name)
        p.reset(e, np.random.default_rng(0))
        return rp.run_policy(r, e, p)
    t_greedy, _ = med(lambda: run("greedy"), args.repeat)
    print(f"greedy end to end (decisions + serving): {real.n / t_greedy:,.0f} requests/s ({t_greedy:.3f} s); "
          f"with the world's draws: {real.n / (t_greedy + t_real):,.0f} requests/s (goal >= 200,000)")
    t_or, out = med(lambda: solve(real, sc.qoe, sc.deadline_ms, camp.accuracy), args.repeat)
    print(f"oracle, no battery: {t_or:.3f} s (goal < 2 s; exact: {out['exact']})")
    # a battery that the costliest plan would empty halfway: the oracle must price energy
    worst_j = real.energy_mj.max(axis=1).sum() / 1e3
    breal = build(battery_wh=worst_j / 2 / 3600)
    t_ob, out = med(lambda: solve(breal, sc.qoe, sc.deadline_ms, camp.accuracy), max(1, args.repeat // 2))
    print(f"oracle, battery that can run out ({worst_j / 2:.1f} J): {t_ob:.3f} s (exact: {out['exact']})")
    print("decision time per policy (us), on this trace:")
    for name in pol.REGISTRY:
        _, (st, timing) = med(lambda n=name: run(n), 1)
        print(f"  {name:16s} median {timing['decision_us_median']:7.2f}  p99 {timing['decision_us_p99']:7.2f}  "
              f"plan {timing['wall_plan_s']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
