"""python -m simulator.replay: replay context traces against a campaign's measurements and score
adaptation policies against the oracle.

    python -m simulator.replay                       # newest campaign under ./runs/, shipped traces, all policies
    python -m simulator.replay --campaign runs/C --trace T.csv --policy greedy,oracle,static-belief \\
        --deadline-ms 0.2 --rate-hz 20 --seed 3 --out DIR

The world draws from the campaign's raw samples (one half); each policy decides from belief (the
other half, or --belief-campaign) and the trace up to now. Requests arrive at --rate-hz (or a
trace column), one FIFO worker serves them, a policy decides every --decide-every seconds.
Writes DIR/steps.parquet (one row per policy x trace x request), DIR/summary.csv (per policy x
trace) and DIR/run.json (provenance: campaign, runtime, world, belief, rule, seed, QoE weights).
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import __version__
from harness.cli import number, run
from harness.errors import BadInput, HarnessError
from simulator import belief as beliefs
from simulator import policies as pol
from simulator.metrics import SUMMARY_COLUMNS, QoE, add_ratios, load_qoe, load_user, summarize
from simulator.traces import Trace, read_trace, shipped_traces
from simulator.world import (
    Campaign,
    Realization,
    SampleTable,
    ServeState,
    load_campaign,
    load_column,
    realize,
    serve,
    split_half,
)

RULE = ("cpu_load_pct/100 x target CPUs = busy CPUs (background_load: busy processes); latency = the same quantile "
        "of the two nearest measured levels' samples, mixed linearly; beyond the levels: the nearest, flagged outside_grid")


@dataclass(frozen=True)
class Scenario:
    deadline_ms: float
    rate_hz: float = 10.0
    rate_column: str | None = None
    decide_every_s: float = 1.0
    load_column: str | None = None
    seed: int = 0
    battery_wh: float | None = None
    qoe: QoE = field(default_factory=QoE)      # what every policy is scored with
    user: str | None = None                    # a simulated user: qoe is theirs, hidden from the policies


def plan_qoe(sc: Scenario) -> QoE:
    """The weights policies plan with: the stated ones, or the defaults when a simulated user's
    are hidden from them (a bandit learns them from the QoE it observes)."""
    return QoE() if sc.user else sc.qoe


def default_deadline_ms(camp: Campaign) -> float:
    """The median over choices of each one's median latency at the base context: a deadline that
    about half the choices meet unloaded, so accuracy trades against latency."""
    return float(np.median([np.median(s[0]) for s in camp.samples]))


def newest_campaign(runs: Path = Path("runs")) -> Path:
    found = sorted(p.parent for p in runs.glob("*/campaign.sqlite"))
    if not found:
        raise BadInput(f"{runs}/: no campaign here: run python -m harness.collect first, or give --campaign")
    return found[-1]


def _env(camp: Campaign, belief, sc: Scenario, n_periods: int, capacity_mj: float | None) -> pol.Env:
    return pol.Env(camp.labels, [c for c, _ in camp.choices], np.array([t for _, t in camp.choices]), camp.accuracy,
                   belief, sc.deadline_ms, plan_qoe(sc), sc.decide_every_s, sc.rate_hz, n_periods,
                   capacity_mj is not None, list(camp.knobs) or [{"threads": t} for _, t in camp.choices], capacity_mj)


_EMPTY, _EMPTY_I, _EMPTY_B = np.empty(0), np.empty(0, np.int64), np.empty(0, bool)


def run_policy(real: Realization, env: pol.Env, policy, score: QoE | None = None) -> tuple[dict, dict]:
    """THE replay loop: one policy over one realized trace, scored with ``score`` (default: the
    weights the policy plans with). Returns (per-request arrays, timings)."""
    score = score or env.qoe
    K, tr = real.n_periods, real.trace
    t_dec = real.t0 + np.arange(K) * real.decide_every_s
    rows = tr.row_at(t_dec)
    busy_dec = real.busy_rows[rows]     # the load the trace shows at each decision
    starts = np.searchsorted(real.period, np.arange(K + 1))
    t_wall = time.perf_counter()
    t_plan = 0.0
    if getattr(policy, "hindsight", False):
        policy.plan(real, score)   # hindsight knows everything, the user's weights too
        t_plan = time.perf_counter() - t_wall
    choices = np.empty(K, np.int64)
    dec_ns = np.empty(K, np.int64)
    observes = bool(getattr(policy, "observes", True))
    C = env.n_choices
    if observes:   # outcomes filled period by period, fed back once complete
        full = {"choice": np.zeros(real.n, np.int64), "latency_ms": np.zeros(real.n), "finish_ms": np.zeros(real.n),
                "missed": np.zeros(real.n, bool), "energy_mj": np.zeros(real.n), "battery_pct": np.zeros(real.n),
                "qoe": np.zeros(real.n), "served": np.zeros(real.n, bool), "switched": np.zeros(real.n, bool),
                "accuracy": np.zeros(real.n)}
    state, cur, fed = ServeState(), -1, 0
    for k in range(K):
        if observes:
            upto = fed + int(np.searchsorted(full["finish_ms"][fed:starts[k]], t_dec[k] * 1e3, side="right"))
            sl = slice(fed, upto)
            obs = pol.Observation(k, float(t_dec[k] - real.t0), float(busy_dec[k]), cur,
                                  float(full["battery_pct"][starts[k] - 1]) if starts[k] else float("nan"), tr, int(rows[k]),
                                  full["choice"][sl], full["latency_ms"][sl], full["missed"][sl], full["qoe"][sl],
                                  real.busy[sl])
            fed = upto
        else:
            obs = pol.Observation(k, float(t_dec[k] - real.t0), float(busy_dec[k]), cur, float("nan"), tr, int(rows[k]),
                                  _EMPTY_I, _EMPTY, _EMPTY_B, _EMPTY, _EMPTY)
        t = time.perf_counter_ns()
        c = policy.decide(obs)
        dec_ns[k] = time.perf_counter_ns() - t
        if not (isinstance(c, (int, np.integer)) and 0 <= c < C):
            raise HarnessError(f"policy {type(policy).__name__} chose {c!r} at decision {k}: not one of the "
                               f"{C} choices (0..{C - 1})")
        choices[k] = c
        if observes:
            i0, i1 = starts[k], starts[k + 1]
            sw = np.zeros(i1 - i0, bool)
            # the first request after a switch pays its load (a move within one model's group is none)
            sw[:1] = cur >= 0 and (c != cur if real.group is None else real.group[c] != real.group[cur])
            part = serve(real, i0, i1, np.full(i1 - i0, c, np.int64), sw, score, env.deadline_ms, env.accuracy, state)
            for key, arr in full.items():
                arr[i0:i1] = part[key]
        cur = int(c)
    if observes:
        steps = full
    else:   # the same serving, for all requests at once once the decisions are known
        from simulator.oracle import replay_plan
        steps = replay_plan(real, choices, score, env.deadline_ms, env.accuracy)
    steps["switches"] = int(steps["switched"].sum())
    us = dec_ns / 1e3
    timing = {"decision_us_median": float(np.median(us)) if K else float("nan"),
              "decision_us_p99": float(np.percentile(us, 99)) if K else float("nan"),
              "decision_us_max": float(us.max()) if K else float("nan"),
              "wall_plan_s": t_plan, "wall_s": time.perf_counter() - t_wall}
    return steps, timing


def replay(camp: Campaign, traces: list[Trace], names: list[str], sc: Scenario, belief=None,
           policy_args: dict | None = None, log=lambda m: None, calibrate: list[dict] | None = None,
           ) -> tuple[list[dict], dict, dict]:
    """Every policy on every trace. Returns (summary rows, steps per (policy, trace), provenance)."""
    world = SampleTable([[split_half(s, "odd") for s in cell] for cell in camp.samples])
    belief = belief or beliefs.from_samples(camp, "even")
    battery_wh = sc.battery_wh if sc.battery_wh is not None else camp.battery_wh
    rows, steps_all, notes = [], {}, {}
    for tr in traces:
        lc = load_column(tr, sc.load_column)
        real = realize(camp, world, tr, seed=sc.seed, rate_hz=sc.rate_hz, rate_column=sc.rate_column,
                       decide_every_s=sc.decide_every_s, load_col=lc, battery_wh=battery_wh)
        if calibrate:
            from simulator.calibrate import apply
            apply(real, camp, calibrate)
        if real.n == 0:
            raise BadInput(f"{tr.path}: no request arrives during the trace (rate {sc.rate_hz}/s over {tr.duration_s} s)")
        notes[tr.name] = {"load_column": lc, "not_played": real.not_played, "requests": real.n,
                          "outside_grid_frac": float(real.outside.mean()), "sha256": tr.sha256, "path": str(tr.path)}
        env = _env(camp, belief, sc, real.n_periods, real.capacity_mj)
        score = sc.qoe
        for name in names:
            p = pol.make(name, (policy_args or {}).get(name))
            p.reset(env, np.random.default_rng([int(sc.seed), 7]))
            st, timing = run_policy(real, env, p, score)
            row = {"policy": name, "trace": tr.name, **summarize(st, real, sc.deadline_ms), "rate_hz": sc.rate_hz,
                   "seed": sc.seed, "user": sc.user, "world": f"samples:odd-half of {camp.campaign_id}/{camp.target}",
                   "belief": belief.kind, "oracle_exact": getattr(p, "exact_", None), **timing}
            if name == "oracle":
                notes[tr.name]["oracle_bound_qoe_mean"] = p.bound_ / real.n
            rows.append(row)
            steps_all[(name, tr.name)] = (st, real)
            log(f"  {tr.name} {name}: qoe {row['qoe_mean']:.4f}, {timing['wall_s']:.2f} s")
    add_ratios(rows)
    prov = {"campaign": str(camp.run_dir), "campaign_id": camp.campaign_id, "target": camp.target,
            "profile": camp.profile, "runtime": camp.runtime, "cpu_count": camp.cpu_count,
            "choices": camp.labels, "accuracy": {c: float(a) for (c, _), a in zip(camp.choices, camp.accuracy)},
            "levels": camp.levels.tolist(), "energy_source": camp.energy_source,
            "world": f"samples:odd-half of {camp.campaign_id}/{camp.target}", "belief": belief.kind,
            "interpolation": RULE, "battery_wh": battery_wh, "seed": sc.seed, "deadline_ms": sc.deadline_ms,
            "rate_hz": sc.rate_hz, "rate_column": sc.rate_column, "decide_every_s": sc.decide_every_s,
            "qoe": sc.qoe.as_dict(), "user": sc.user, "plan_qoe": plan_qoe(sc).as_dict(), "policies": names,
            "policy_args": policy_args or {}, "traces": notes,
            "campaign_notes": list(camp.notes), "harness_version": __version__}
    return rows, steps_all, prov


def write_steps(path: Path, camp: Campaign, steps_all: dict, deadline_ms: float) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    tables = []
    cand = np.array([c for c, _ in camp.choices])
    thr = np.array([t for _, t in camp.choices], np.int32)
    for (name, trace), (st, real) in steps_all.items():
        n = len(st["qoe"])
        ch = st["choice"]
        tables.append(pa.table({
            "policy": pa.array([name] * n).dictionary_encode(), "trace": pa.array([trace] * n).dictionary_encode(),
            "t_s": real.arrivals_s - real.t0, "candidate_id": pa.array(cand[ch]).dictionary_encode(),
            "threads": thr[ch], "latency_ms": st["latency_ms"], "deadline_ms": np.full(n, deadline_ms),
            "missed": st["missed"], "energy_mj": st["energy_mj"], "battery_pct": st["battery_pct"], "qoe": st["qoe"],
            "served": st["served"], "switched": st["switched"], "busy_cpus": real.busy, "outside_grid": real.outside,
            "context_held": real.held}))
    pq.write_table(pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({}), path)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if np.isnan(v) else repr(v)
    return str(v)


def write_outputs(out: Path, camp: Campaign, rows: list[dict], steps_all: dict, prov: dict, deadline_ms: float) -> None:
    """Write into OUT.part, then replace OUT: a failed run leaves the previous output whole."""
    tmp = out.with_name(out.name + ".part")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write_steps(tmp / "steps.parquet", camp, steps_all, deadline_ms)
    with (tmp / "summary.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(SUMMARY_COLUMNS)
        for r in rows:
            w.writerow([_fmt(r.get(c)) for c in SUMMARY_COLUMNS])
    (tmp / "run.json").write_text(json.dumps(prov, indent=1, default=str) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)


def table(rows: list[dict]) -> str:
    cols = [("trace", "trace", "{}"), ("policy", "policy", "{}"), ("qoe_mean", "qoe", "{:.4f}"),
            ("qoe_vs_oracle", "vs_oracle", "{:.3f}"), ("gap_closed", "gap_closed", "{:.3f}"),
            ("accuracy_mean", "accuracy", "{:.3f}"), ("miss_rate", "miss", "{:.3f}"),
            ("latency_ms_p50", "p50_ms", "{:.3f}"), ("latency_ms_p95", "p95_ms", "{:.3f}"), ("energy_j", "energy_j", "{:.3f}"),
            ("switches", "switches", "{}"), ("decision_us_median", "decide_us", "{:.1f}")]
    lines = [[h for _, h, _ in cols]]
    for r in rows:
        v = r.get
        lines.append(["-" if v(k) is None or (isinstance(v(k), float) and np.isnan(v(k))) else f.format(v(k))
                      for k, _, f in cols])
    w = [max(len(x[i]) for x in lines) for i in range(len(cols))]
    return "\n".join("  ".join(x[i].ljust(w[i]) for i in range(len(cols))) for x in lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m simulator.replay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", type=Path, help="run folder of harness.collect (default: the newest under ./runs/)")
    ap.add_argument("--target", help="the campaign's target to replay (default: its only one)")
    ap.add_argument("--trace", type=Path, action="append",
                    help="canonical trace CSV; repeat for several (default: the traces shipped in traces/)")
    ap.add_argument("--policy", default="all",
                    help=f"comma-separated policies, or all (default: all = {', '.join(pol.REGISTRY)})")
    ap.add_argument("--policy-arg", action="append", metavar="NAME.KEY=VALUE", help="a policy's parameter (repeatable)")
    ap.add_argument("--deadline-ms", type=number("--deadline-ms", 0, strict=True),
                    help="each request's deadline (default: median over choices of their median latency unloaded)")
    ap.add_argument("--rate-hz", type=number("--rate-hz", 0, strict=True), default=10.0, help="requests per second (default: 10)")
    ap.add_argument("--rate-column", help="a trace column (1/s) that sets the request rate instead of --rate-hz")
    ap.add_argument("--decide-every", type=number("--decide-every", 0, strict=True), default=1.0,
                    help="seconds of trace time between decisions (default: 1)")
    ap.add_argument("--load-column", help="the trace column of other apps' load (default: cpu_load_pct, else background_load)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the world's draws (default: 0)")
    ap.add_argument("--battery-wh", type=number("--battery-wh", 0, strict=True),
                    help="battery capacity (default: the device profile's battery_wh; none: no battery)")
    qo = ap.add_mutually_exclusive_group()
    qo.add_argument("--qoe", type=Path, help="YAML of QoE weights (accuracy, miss, energy_per_mj, switch), known to the policies")
    qo.add_argument("--user", help="a simulated user (a shipped profile: accuracy-first, deadline-strict, battery-saver; or a "
                                   "YAML of weights): every policy is scored with its weights, which the policies are not told")
    ap.add_argument("--belief-campaign", type=Path, help="plan with this campaign's measurements (another device's)")
    ap.add_argument("--calibrate", type=Path, metavar="LIVE_DIR",
                    help="correct the world by what a live run measured (simulator.live's cells.csv; docs/simulator.md)")
    ap.add_argument("--plugin", type=Path, action="append", default=[],
                    help="a Python file of yours that adds policies to simulator.policies.REGISTRY (docs/simulator.md)")
    ap.add_argument("--out", type=Path, help="output folder, replaced (default: CAMPAIGN/replay/)")
    ap.add_argument("--quiet", "-q", action="store_true", help="print only the summary table")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run(lambda: _main(args))


def _main(args) -> int:
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    pol.load_plugins(args.plugin)   # the user's own code, run as they asked
    names, policy_args = pol.resolve(args.policy, args.policy_arg)
    camp = load_campaign(args.campaign or newest_campaign(), args.target)
    paths = args.trace or shipped_traces()
    if not paths:
        raise BadInput("no traces: give --trace FILE")
    traces = [read_trace(p) for p in paths]
    if len({t.name for t in traces}) != len(traces):
        raise BadInput("--trace: two traces share a file name; rename one")
    sc = Scenario(deadline_ms=args.deadline_ms or default_deadline_ms(camp), rate_hz=args.rate_hz,
                  rate_column=args.rate_column, decide_every_s=args.decide_every, load_column=args.load_column,
                  seed=args.seed, battery_wh=args.battery_wh,
                  qoe=load_user(args.user) if args.user else load_qoe(args.qoe), user=args.user)
    bel = beliefs.from_campaign(camp, load_campaign(args.belief_campaign)) if args.belief_campaign else None
    log(f"replay: campaign {camp.campaign_id} on {camp.target} ({len(camp.choices)} choices, background levels "
        f"{camp.levels.tolist()}), {len(traces)} trace(s), deadline {sc.deadline_ms:.4g} ms, {sc.rate_hz:g} req/s, "
        f"seed {sc.seed}")
    for n in camp.notes:
        log(f"note: {n}")
    cells = None
    if args.calibrate:
        from simulator.calibrate import load_cells
        cells = load_cells(args.calibrate)
    rows, steps_all, prov = replay(camp, traces, names, sc, bel, policy_args, log, cells)
    if cells:
        prov["calibrated_by"] = str(args.calibrate)
    for t, info in prov["traces"].items():
        if info["outside_grid_frac"] > 0:
            log(f"note: {t}: {info['outside_grid_frac']:.0%} of requests ran in a load beyond the measured levels "
                f"{camp.levels.tolist()} (held at the nearest; measure with --background-load to cover it)")
        for np_ in info["not_played"]:
            log(f"note: {t}: not played: {np_}")
    out = args.out or camp.run_dir / "replay"
    write_outputs(out, camp, rows, steps_all, prov, sc.deadline_ms)
    print(table(rows))
    print(f"world: {prov['world']}; belief: {prov['belief']}; energy: {camp.energy_source}")
    print(f"output: {out}/  (steps.parquet, summary.csv, run.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
