"""Every registered policy passes one conformance test; the learners do what they claim; the
simulated users differ; the guide's policy plugs in. The campaign here is synthetic (named so):
64 choices over the digits knobs with latencies that grow with width, resolution and load, so
decision times are measured at the size of the bundled zoo's campaign."""
from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

from simulator import policies as pol
from simulator import replay as rp
from simulator import traces as tr
from simulator.metrics import load_user, users
from simulator.world import Campaign

ROOT = Path(__file__).resolve().parents[1]
BUDGET_US = {"greedy-hysteresis": 50, "alert": 50, "linucb": 50, "greedy": 50, "static-belief": 50,
             "battery-aware": 50, "adaspring": 1000, "mpc": 1000, "oracle": 50, "static-oracle": 50,
             "offload-threshold": 50, "offload-mpc": 100}


def synthetic_campaign(tmp_path: Path, battery_wh=None) -> Campaign:
    rng = np.random.default_rng(1)
    choices, acc, samples, energy, knobs = [], [], [], [], []
    for w, d, r, q, th in itertools.product((0.25, 0.5, 0.75, 1.0), (0, 2), (32, 64), ("float32", "int8"), (1, 2)):
        base = 0.02 * w * (r / 32) ** 2 * (1 if q == "float32" else 0.6) * (1 - 0.2 * d / 2) / (1.6 if th == 2 else 1)
        cells = []
        for bg in (0, 1, 2):
            slow = 1 + bg * (0.4 if th == 1 else 1.5)        # two threads suffer more under load on 2 CPUs
            cells.append(base * slow * (1 + 0.1 * rng.random(30)))
        choices.append((f"dc-w{int(w * 100):03d}-d{d}-r{r}-{q}", th))
        acc.append(0.5 + 0.4 * w ** 0.5 * (r / 64) ** 0.3 * (1 - 0.05 * d) - (0.01 if q == "int8" else 0))
        samples.append(tuple(cells))
        energy.append([float(np.median(c)) * 5 * th for c in cells])
        knobs.append({"width": w, "blocks_removed": d, "resolution": r, "quantization": q, "threads": th})
    return Campaign(tmp_path, "synthetic", "synthetic", "x86-linux", 2, "synthetic", tuple(choices), np.array(acc),
                    np.array([0, 1, 2]), tuple(samples), np.array(energy), "synthetic", np.full(64, 0.5), battery_wh,
                    None, (), tuple(knobs))


def trace_of(tmp_path: Path, name: str, rows) -> tr.Trace:
    p = tmp_path / f"{name}.csv"
    p.write_text("t_s,background_load,battery_pct\n" + "".join(f"{t},{b},{bat}\n" for t, b, bat in rows))
    return tr.read_trace(p)


@pytest.fixture(scope="module")
def camp(tmp_path_factory):
    return synthetic_campaign(tmp_path_factory.mktemp("syn"))


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("tr")
    return {"steps": trace_of(d, "steps", [(t, (t // 20) % 3, 100 - t / 10) for t in range(120)]),
            "gaps": trace_of(d, "gaps", [(0, 0, 100), (1, 1, 99), (2, 2, 99), (30, 0, 98), (31, 1, 98)]),
            "one": trace_of(d, "one", [(0, 1, 50)])}


@pytest.mark.parametrize("name", sorted(pol.REGISTRY))
def test_conformance(name, camp, traces):
    """Deterministic with a seed, never outside the campaign's choices, within its decision-time
    budget (median), alive through gaps, a single row, and a battery."""
    sc = rp.Scenario(deadline_ms=0.03, rate_hz=20, seed=3, battery_wh=0.5 / 3600)
    timing = None
    for t in traces.values():
        runs = [rp.replay(camp, [t], [name], sc)[:2] for _ in range(2)]
        (r1, s1), (r2, s2) = runs
        a, b = s1[(name, t.name)][0], s2[(name, t.name)][0]
        assert np.array_equal(a["choice"], b["choice"]) and np.array_equal(a["qoe"], b["qoe"])
        assert ((a["choice"] >= 0) & (a["choice"] < 64)).all()
        assert r1[0]["requests"] == len(a["qoe"]) > 0
        if t.name == "steps":     # 120 decisions: a median worth the name
            timing = min(r1[0]["decision_us_median"], r2[0]["decision_us_median"])
    assert timing <= BUDGET_US[name], (name, timing)


def test_a_policy_outside_the_choices_is_an_error(camp, traces):
    class Bad:
        observes = False

        def reset(self, env, rng):
            pass

        def decide(self, obs):
            return 64
    pol.REGISTRY["bad"] = Bad
    try:
        with pytest.raises(Exception, match="chose 64 at decision 0: not one of the 64 choices"):
            rp.replay(camp, [traces["one"]], ["bad"], rp.Scenario(deadline_ms=0.03))
    finally:
        del pol.REGISTRY["bad"]


def test_load_aware_policies_beat_the_one_shot_choice(camp, traces):
    """Where the load changes which choice is best, the adaptive policies recover most of what
    the oracle gains over static-belief."""
    sc = rp.Scenario(deadline_ms=0.03, rate_hz=20, seed=0)
    rows, _, _ = rp.replay(camp, [traces["steps"]], list(pol.REGISTRY), sc)
    by = {r["policy"]: r for r in rows}
    assert by["oracle"]["qoe_mean"] > by["static-belief"]["qoe_mean"] + 0.05
    for name in ("greedy-hysteresis", "mpc", "alert", "adaspring"):
        assert by[name]["gap_closed"] > 0.8, (name, by[name])


def test_alert_corrects_a_belief_from_a_slower_device(camp, traces, tmp_path):
    """Belief from a device 2x slower: ALERT's slowdown factor learns ~0.5 and it runs more
    accurate models than greedy, which trusts belief."""
    from simulator import belief
    slow = synthetic_campaign(tmp_path)
    slow = Campaign(**{**slow.__dict__, "samples": tuple(tuple(c * 2 for c in cell) for cell in slow.samples),
                       "campaign_id": "slow"})
    b = belief.from_campaign(camp, slow)
    sc = rp.Scenario(deadline_ms=0.03, rate_hz=20)
    rows, _, _ = rp.replay(camp, [traces["steps"]], ["alert", "greedy"], sc, belief=b)
    by = {r["policy"]: r for r in rows}
    assert by["alert"]["accuracy_mean"] > by["greedy"]["accuracy_mean"] + 0.02
    assert by["alert"]["qoe_mean"] > by["greedy"]["qoe_mean"]


def test_users_differ_and_the_bandit_learns_each(camp, tmp_path):
    """Three shipped users whose best fixed choice differs; LinUCB's regret against that choice
    grows more slowly in the second half of a long trace than in the first (it flattens)."""
    assert len(users()) >= 3
    long = trace_of(tmp_path, "long", [(t, 1 if (t // 300) % 2 else 0, 100) for t in range(0, 2400, 10)])
    best = {}
    for u in users():
        sc = rp.Scenario(deadline_ms=0.035, rate_hz=10, qoe=load_user(u), user=u)
        rows, steps, _ = rp.replay(camp, [long], ["static-oracle", "linucb"], sc)
        so, lin = steps[("static-oracle", "long")][0], steps[("linucb", "long")][0]
        best[u] = int(so["choice"][0])
        regret = np.cumsum(so["qoe"] - lin["qoe"])
        half = len(regret) // 2
        assert regret[-1] - regret[half] < 0.5 * regret[half], (u, regret[half], regret[-1])
    assert len(set(best.values())) == len(best), best


def test_guide_policy(camp, traces):
    """docs/simulator.md's guide defines a policy; it registers and replays as written."""
    text = (ROOT / "docs" / "simulator.md").read_text()
    code = re.search(r"## Writing a policy.*?```python\n(.*?)```", text, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "docs/simulator.md", "exec"), ns)
    try:
        rows, _, _ = rp.replay(camp, [traces["steps"]], ["cheapest-in-time", "oracle"], rp.Scenario(deadline_ms=0.03))
        assert rows[0]["requests"] > 0 and rows[0]["qoe_mean"] <= rows[1]["qoe_mean"] + 1e-12
    finally:
        pol.REGISTRY.pop("cheapest-in-time", None)
