"""python -m simulator.live: run a policy live on a real target under a replayed context, and
measure the simulator's own error against it.

    python -m simulator.live --target local --campaign runs/C --trace traces/local-load1-step.csv --policy greedy
    python -m simulator.live -i inventory.yaml --target pi4 --campaign runs/C --trace T.csv --policy mpc --repeat 3
    python -m simulator.live --target local --campaign runs/C --trace T.csv --dry-run

The trace's load column is played on the target as busy processes (a duty cycle for the
fraction); the agent serves each decision period's requests at their arrival times on the
device's clock, one FIFO worker, loading the chosen model on a switch (its load time is what the
first request waits). The policy runs here, on the same Protocol and observations as in
simulator.replay. Before and after, the target measures a probe model of the campaign with the
campaign's protocol: the ratio to the campaign (drift of the machine since) rescales the world of
the simulated run it is compared with. Writes OUT/steps.parquet and summary.csv (runs
``simulated`` and ``live-1``..``live-N``), validation.csv (metric, simulated, live, error),
cells.csv (the choice x load cells where the two disagree most) and live.json (status, drift,
round trips, what was played and what could not be).
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from harness import __version__
from harness.cli import number, run, ssh_arguments
from harness.errors import BadInput, HarnessError
from harness.inventory import load_inventory, local_target
from harness.runner import RunSettings, Session
from harness.transport.base import TransportError
from simulator import belief as beliefs
from simulator import policies as pol
from simulator import replay as rp
from simulator.metrics import QoE, load_qoe
from simulator.traces import Trace, read_trace
from simulator.world import Campaign, SampleTable, busy_cpus, load_campaign, load_column, realize, split_half

PLAYABLE = {"cpu_load_pct": "busy processes (cpu_load_pct / 100 x the target's CPUs, a duty cycle for the fraction)",
            "background_load": "busy processes (a duty cycle for the fraction)"}
METRICS = ("latency_ms_mean", "latency_ms_p95", "miss_rate", "qoe_mean", "energy_j", "switches", "candidate_agreement")


FREQ_COLUMNS = ("cpu_freq_mhz_mean", "cpu_freq_mhz_min")


def freq_column(trace: Trace, caps: dict) -> str | None:
    """The frequency column played as a cap, when the target can cap (caps from the agent's live_caps)."""
    if not caps.get("cpufreq_cap"):
        return None
    return next((c for c in FREQ_COLUMNS if c in trace.columns), None)


def playable(trace: Trace, info: dict, load_col: str | None, caps: dict | None = None) -> tuple[list[str], list[str]]:
    """(what this target plays, what it cannot: each with why)."""
    plays, cannot = [], []
    fc = freq_column(trace, caps or {})
    for c in trace.columns:
        if c == load_col:
            plays.append(f"{c}: {PLAYABLE[c]}")
        elif c in PLAYABLE:
            cannot.append(f"{c}: another load column ({load_col}) is played")
        elif c == fc:
            plays.append(f"{c}: a cap on every CPU's scaling_max_freq, restored afterwards")
        elif c.startswith("cpu_freq_mhz"):
            why = (caps or {}).get("why") or f"another frequency column ({fc}) is played"
            cannot.append(f"{c}: a CPU frequency cap: {why}")
        elif c == "battery_pct":
            cannot.append(f"{c}: the trace's own drain cannot be made on a device; it is simulated beside the live run")
        else:
            cannot.append(f"{c}: no way to reproduce it on the target")
    if info and not info.get("cpu_count"):
        cannot.append("the target did not say its CPU count: cpu_load_pct maps to 1 CPU")
    return plays, cannot


def _paths(camp: Campaign) -> dict[str, tuple[str, str]]:
    """candidate id -> (sha256, local .tflite path) as the campaign recorded them."""
    import sqlite3
    db = sqlite3.connect(f"file:{camp.run_dir / 'campaign.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT candidate_id, sha256, path FROM candidates WHERE campaign_id=?",
                          (camp.campaign_id,)).fetchall()
    finally:
        db.close()
    out = {}
    for cid, sha, path in rows:
        out[cid] = (sha, path)
    missing = [c for c, _ in camp.choices if c not in out or not Path(out[c][1]).is_file()]
    if missing:
        raise BadInput(f"{camp.run_dir}: the model files of {', '.join(sorted(set(missing)))} are not where the campaign "
                       f"found them; live runs need them")
    return out


def probe_choice(camp: Campaign) -> int:
    """The drift probe: the one-thread choice whose unloaded median is the middle one."""
    idx = [i for i, (_, t) in enumerate(camp.choices) if t == min(t for _, t in camp.choices)]
    med = [float(np.median(camp.samples[i][0])) for i in idx]
    return idx[int(np.argsort(med)[len(med) // 2])]


def measure_probe(session: Session, remote: str, threads: int, n_runs: int = 50) -> float:
    r = session.request({"cmd": "measure", "model": remote, "threads": threads, "n_runs": n_runs, "background_load": 0,
                         "warmup": {}}, timeout=300)
    if not r.get("ok"):
        raise TransportError(f"drift probe failed: {r.get('error')}")
    return float(np.median(r["samples_ms"]))


class LiveLog:
    """Every served request appended to OUT/live-N.jsonl as its period returns: an interrupted
    run keeps all it served."""

    def __init__(self, path: Path):
        self.path = path
        self.f = path.open("w")

    def write(self, rows: list[dict]) -> None:
        for r in rows:
            self.f.write(json.dumps(r) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def run_live(session: Session, camp: Campaign, real, env: pol.Env, policy, remote: dict[int, str], score: QoE,
             power: dict, load_col: str | None, cpu_count: int, log: LiveLog, max_loaded: int = 1,
             say=lambda m: None, freq_col: str | None = None) -> tuple[dict, dict]:
    """One live run: the policy decides from what the agent reports; returns (steps, info)."""
    tr, K = real.trace, real.n_periods
    t_dec = real.t0 + np.arange(K) * real.decide_every_s
    rows = tr.row_at(t_dec)
    busy_tr = busy_cpus(tr, load_col, cpu_count)[0] if load_col else np.zeros(len(tr.t_s))
    freq_tr = tr.held(freq_col)[0] if freq_col else None
    starts = np.searchsorted(real.period, np.arange(K + 1))
    n = real.n
    lat = np.full(n, np.nan)
    service = np.full(n, np.nan)
    choice = np.zeros(n, np.int64)
    switched = np.zeros(n, bool)
    done = np.zeros(n, bool)
    rtt, dec_ns, switch_ms = [], [], []
    cur, fed, status = -1, 0, "complete"
    acc = env.accuracy
    for k in range(K):
        upto = starts[k]
        sl = slice(fed, upto)
        missed_prev = lat[sl] > env.deadline_ms
        qprev = score.per_request(acc[choice[sl]], missed_prev, _energy(power, env, choice[sl], service[sl]), switched[sl])
        obs = pol.Observation(k, float(t_dec[k] - real.t0), float(busy_tr[rows[k]]), cur, float("nan"), tr, int(rows[k]),
                              choice[sl], lat[sl], missed_prev, qprev, real.busy[sl])
        fed = upto
        t = time.perf_counter_ns()
        c = int(policy.decide(obs))
        dec_ns.append(time.perf_counter_ns() - t)
        if not 0 <= c < env.n_choices:
            raise HarnessError(f"policy chose {c}: not one of the {env.n_choices} choices")
        i0, i1 = starts[k], starts[k + 1]
        # the load over this period: the trace's rows from its start to its end
        t_end = t_dec[k] + real.decide_every_s
        r_in = np.nonzero((tr.t_s > t_dec[k]) & (tr.t_s < t_end))[0]
        sched = [[0.0, float(busy_tr[rows[k]])]] + [[float(tr.t_s[r] - t_dec[k]), float(busy_tr[r])] for r in r_in]
        if freq_col:    # [offset, busy, MHz cap]
            for e, r in zip(sched, [rows[k], *r_in]):
                e.append(float(freq_tr[r]) if np.isfinite(freq_tr[r]) else None)
        req = {"cmd": "live_period", "model": remote[c], "threads": int(env.threads[c]), "max_loaded": max_loaded,
               "arrivals": [float(x) for x in real.arrivals_s[i0:i1] - t_dec[k]], "load": sched}
        t_send = time.perf_counter()
        try:
            resp = session.request(req, timeout=real.decide_every_s * 4 + 60)
        except (TransportError, ValueError, OSError) as e:
            status = f"interrupted at decision {k} of {K}: {e}"
            break
        if not resp.get("ok"):
            status = f"interrupted at decision {k} of {K}: the agent said {resp.get('error')}"
            break
        rtt.append((time.perf_counter() - t_send - float(resp.get("period_s", 0.0))) * 1e3)
        got = resp["requests"]
        if len(got) != i1 - i0:
            status = f"interrupted at decision {k}: the agent served {len(got)} of {i1 - i0} requests"
            break
        sw = resp.get("switch") or {}
        if sw:
            switch_ms.append(sw.get("switch_ms", 0.0))
        for j, (a, s, f) in enumerate(got):
            i = i0 + j
            lat[i], service[i], choice[i], done[i] = (f - a) * 1e3, (f - s) * 1e3, c, True
        if i1 > i0 and cur >= 0 and c != cur:
            switched[i0] = True
        cur = c
        log.write([{"t_s": float(real.arrivals_s[i] - real.t0), "k": k, "choice": int(c), "latency_ms": float(lat[i]),
                    "service_ms": float(service[i]), "switched": bool(switched[i]), "busy": float(resp.get("busy", 0.0)),
                    "freq_cap_mhz": resp.get("freq_cap_mhz")}
                   for i in range(i0, i1)])
        if k % 10 == 0:
            say(f"  live {k + 1}/{K}: {camp.labels[c]}, load {resp.get('busy', 0):.2f} CPUs")
    served = done
    missed = (lat > env.deadline_ms) | ~served
    energy = np.where(served, _energy(power, env, choice, service), 0.0)
    q = np.where(served, score.per_request(acc[choice], missed, energy, switched), 0.0)
    steps = {"choice": choice, "latency_ms": lat, "missed": missed, "energy_mj": energy,
             "battery_pct": np.full(n, np.nan), "qoe": q, "served": served, "switched": switched, "accuracy": acc[choice],
             "switches": int(switched.sum()), "service_ms": service}
    us = np.array(dec_ns) / 1e3
    info = {"status": status, "served": int(served.sum()), "requests": n,
            "round_trip_ms_median": float(np.median(rtt)) if rtt else None,
            "round_trip_ms_p99": float(np.percentile(rtt, 99)) if rtt else None,
            "switch_ms_median": float(np.median(switch_ms)) if switch_ms else None,
            "decision_us_median": float(np.median(us)) if len(us) else None}
    return steps, info


def _energy(power: dict, env, choice: np.ndarray, service_ms: np.ndarray) -> np.ndarray:
    """Energy per request, an ESTIMATE: the device profile's active power of the busy cores over
    the request's service time (the campaign's estimate, applied to what was served live)."""
    return power.get("active_w_per_core", 0.0) * env.threads[choice] * np.nan_to_num(service_ms)


def _metrics(steps: dict, deadline_ms: float) -> dict:
    ok = steps["served"]
    lat = steps["latency_ms"][ok]
    return {"latency_ms_mean": float(np.mean(lat)) if len(lat) else float("nan"),
            "latency_ms_p95": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
            "miss_rate": float(np.mean(steps["missed"])), "qoe_mean": float(np.mean(steps["qoe"])),
            "energy_j": float(np.sum(steps["energy_mj"]) / 1e3), "switches": int(steps["switches"])}


def validate(sim: dict, lives: list[dict], deadline_ms: float, real) -> list[dict]:
    """validation.csv: per metric the simulated value, the median live value and their error, and
    with several live runs how far they are from each other (the ceiling of any simulator)."""
    ms = _metrics(sim, deadline_ms)
    ml = [_metrics(lv, deadline_ms) for lv in lives]
    first = np.searchsorted(real.period, np.arange(real.n_periods))
    has = first < real.n
    agree = [float(np.mean(sim["choice"][first[has]] == lv["choice"][first[has]])) for lv in lives]
    out = []
    for m in METRICS:
        s = 1.0 if m == "candidate_agreement" else ms[m]
        vals = agree if m == "candidate_agreement" else [x[m] for x in ml]
        lv = float(np.median(vals))
        err = (s - lv) / lv if m.startswith(("latency", "energy", "qoe")) and lv else s - lv
        out.append({"metric": m, "simulated": s, "live": lv, "error": err})
    if len(lives) > 1:
        for m in METRICS:
            vals = agree if m == "candidate_agreement" else [x[m] for x in ml]
            med = float(np.median(vals))
            spread = (max(vals) - min(vals)) / abs(med) if m.startswith(("latency", "energy", "qoe")) and med else \
                max(vals) - min(vals)
            out.append({"metric": f"live_repeatability:{m}", "simulated": "", "live": med, "error": spread})
    return out


def worst_cells(real, lives: list[dict], camp: Campaign) -> list[dict]:
    """Every (choice, load) cell served live, the live service time against the world's draws
    for the same requests, the cells that differ most first (simulator.replay --calibrate reads it)."""
    rows = []
    lv = lives[0]
    level = np.round(real.busy * 2) / 2
    keys = {}
    for i in np.nonzero(lv["served"])[0]:
        keys.setdefault((int(lv["choice"][i]), float(level[i])), []).append(i)
    for (c, b), idx in keys.items():
        idx = np.array(idx)
        live = float(np.median(lv["service_ms"][idx]))
        world = float(np.median(real.latency_ms[idx, c]))
        rows.append({"choice": camp.labels[c], "busy_cpus": b, "requests": len(idx), "live_service_ms": live,
                     "world_ms": world, "ratio": live / world if world > 0 else float("nan")})
    rows.sort(key=lambda r: -abs(np.log(r["ratio"])) if r["ratio"] > 0 else 0)
    return rows


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m simulator.live", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True, help="target name in the inventory (local: the local machine, no inventory)")
    ap.add_argument("--inventory", "-i", type=Path, help="targets YAML (as for harness.collect)")
    ap.add_argument("--campaign", type=Path, help="the campaign whose world the simulator uses (default: newest in runs/)")
    ap.add_argument("--trace", type=Path, required=True, help="canonical trace to play")
    ap.add_argument("--policy", default="greedy", help=f"one policy (default greedy; known: {', '.join(pol.REGISTRY)})")
    ap.add_argument("--policy-arg", action="append", metavar="NAME.KEY=VALUE", help="a policy's parameter (repeatable)")
    ap.add_argument("--plugin", type=Path, action="append", default=[],
                    help="a Python file of yours that adds policies to simulator.policies.REGISTRY")
    ap.add_argument("--seed", type=int, default=0, help="seed of the simulated world's draws and the policy (default 0)")
    ap.add_argument("--repeat", type=int, default=1, help="live runs (default 1; >1 adds live_repeatability rows)")
    ap.add_argument("--deadline-ms", type=number("--deadline-ms", 0, strict=True), help="as simulator.replay")
    ap.add_argument("--rate-hz", type=number("--rate-hz", 0, strict=True), default=10.0, help="requests per second (default 10)")
    ap.add_argument("--decide-every", type=number("--decide-every", 0, strict=True), default=1.0, help="seconds (default 1)")
    ap.add_argument("--load-column", help="trace column of other apps' load (default: cpu_load_pct, else background_load)")
    ap.add_argument("--qoe", type=Path, help="YAML of QoE weights")
    ap.add_argument("--max-loaded", type=int, default=1,
                    help="models the agent keeps loaded (default 1: every switch loads, as the simulator assumes)")
    ap.add_argument("--calibrate", type=Path, metavar="LIVE_DIR",
                    help="correct the simulated side's world by what an earlier live run measured (its cells.csv)")
    ap.add_argument("--dry-run", action="store_true", help="say which trace columns this target can play, then stop")
    ap.add_argument("--out", type=Path, help="output folder, replaced (default: CAMPAIGN/live/)")
    ssh_arguments(ap)
    ap.add_argument("--quiet", "-q", action="store_true", help="print only the validation table")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run(lambda: _main(args))


def _target(args):
    if args.target == "local" and args.inventory is None:
        return local_target()
    targets = {t.name: t for t in load_inventory(args.inventory)}
    if args.target not in targets:
        raise BadInput(f"--target: no target {args.target!r} in {args.inventory or 'the default inventory'} "
                       f"(it has: {', '.join(targets)})")
    return targets[args.target]


def _main(args) -> int:
    say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    pol.load_plugins(args.plugin)
    if args.policy not in pol.REGISTRY or getattr(pol.REGISTRY[args.policy], "hindsight", False):
        raise BadInput(f"--policy: {args.policy!r} is not an online policy (known: "
                       f"{', '.join(n for n, c in pol.REGISTRY.items() if not getattr(c, 'hindsight', False))})")
    if args.repeat < 1:
        raise BadInput(f"--repeat: expected a whole number >= 1, got {args.repeat}")
    params = pol.parse_policy_args(args.policy_arg, [args.policy]).get(args.policy)
    pol.make(args.policy, params)
    camp = load_campaign(args.campaign or rp.newest_campaign())
    trace = read_trace(args.trace)
    target = _target(args)
    load_col = load_column(trace, args.load_column)
    settings = RunSettings(retries=0, known_hosts=args.known_hosts, ssh_config=args.ssh_config,
                           trust_new_hosts=args.trust_new_hosts)
    if args.dry_run:
        session = Session(target, settings)
        try:
            info0 = session.open()
            caps = session.request({"cmd": "live_caps"}, timeout=60)
        except (TransportError, ValueError, OSError) as e:
            raise HarnessError(f"{target.name}: cannot start the agent ({e})") from None
        finally:
            session.close()
        plays, cannot = playable(trace, info0, load_col, caps)
        print(f"target {target.name} ({target.transport}), trace {trace.name}:")
        for p in plays:
            print(f"  plays   {p}")
        for c in cannot:
            print(f"  cannot  {c}")
        return 0
    paths = _paths(camp)
    sc = rp.Scenario(deadline_ms=args.deadline_ms or rp.default_deadline_ms(camp), rate_hz=args.rate_hz,
                     decide_every_s=args.decide_every, load_column=args.load_column, seed=args.seed,
                     qoe=load_qoe(args.qoe))
    out = args.out or camp.run_dir / "live"
    tmp = out.with_name(out.name + ".part")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    probe = probe_choice(camp)
    campaign_ms = float(np.median(camp.samples[probe][0]))
    drift: list[float] = []
    world = SampleTable([[split_half(s, "odd") for s in cell] for cell in camp.samples])
    bel = beliefs.from_samples(camp, "even")
    session = Session(target, settings)
    info: dict = {"target": target.name, "transport": target.transport, "campaign": camp.campaign_id,
                  "trace": str(args.trace), "policy": args.policy, "policy_args": params or {}, "seed": args.seed,
                  "harness_version": __version__, "runs": []}
    lives, status = [], "complete"
    try:
        try:
            hello = session.open()
        except (TransportError, ValueError, OSError) as e:
            raise HarnessError(f"{target.name}: cannot start the agent ({e})") from None
        cpu_count = int(hello.get("cpu_count") or 1)
        caps = session.request({"cmd": "live_caps"}, timeout=60)
        freq_col = freq_column(trace, caps)
        plays, cannot = playable(trace, hello, load_col, caps)
        info.update(plays=plays, not_played=cannot, agent={k: hello.get(k) for k in ("hostname", "runtime",
                                                                                     "runtime_version", "cpu_count")})
        for c in cannot:
            say(f"note: not played: {c}")
        remote = {i: session.ensure_model(paths[cid][0], paths[cid][1]) for i, (cid, _) in enumerate(camp.choices)}
        drift.append(measure_probe(session, remote[probe], camp.choices[probe][1]) / campaign_ms)
        say(f"drift probe {camp.labels[probe]}: {drift[0]:.3f} x the campaign's median")
        power = dict(target.profile.power_model or {})     # the estimate's model: power x time
        for r in range(args.repeat):
            real = realize(camp, world, trace, seed=sc.seed, rate_hz=sc.rate_hz, rate_column=None,
                           decide_every_s=sc.decide_every_s, load_col=load_col, battery_wh=None)
            env = rp._env(camp, bel, sc, real.n_periods, None)
            policy = pol.make(args.policy, params)
            policy.reset(env, np.random.default_rng([int(sc.seed), 7]))
            say(f"live run {r + 1}/{args.repeat}: {real.n} requests over {real.n_periods} decisions")
            log = LiveLog(tmp / f"live-{r + 1}.jsonl")
            try:
                steps, rinfo = run_live(session, camp, real, env, policy, remote, sc.qoe, power, load_col, cpu_count, log,
                                        args.max_loaded, say, freq_col)
            finally:
                log.close()
            lives.append(steps)
            info["runs"].append(rinfo)
            if rinfo["status"] != "complete":
                status = rinfo["status"]
                break
        if status == "complete":
            drift.append(measure_probe(session, remote[probe], camp.choices[probe][1]) / campaign_ms)
    except KeyboardInterrupt:
        status = "interrupted by Ctrl-C"
    finally:
        try:
            if session.agent is not None:
                session.request({"cmd": "live_stop"}, timeout=30)
        except Exception:   # the agent is gone: its busy processes exit with it
            pass
        session.close(kill=status != "complete")
    info["status"] = status
    factor = float(np.mean(drift)) if drift else 1.0
    info["drift"] = {"probe": camp.labels[probe], "campaign_ms": campaign_ms, "factor_start": drift[0] if drift else None,
                     "factor_end": drift[1] if len(drift) > 1 else None, "factor": factor,
                     "rule": "live median / campaign median of the probe, the mean of start and end"}
    if not lives:
        (tmp / "live.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
        _publish(tmp, out)
        print(f"error: {status}; kept in {out}/", file=sys.stderr)
        return 1
    # the simulated run it is compared with: the same trace, seed, policy, belief; the world rescaled by the drift
    real = realize(camp, world, trace, seed=sc.seed, rate_hz=sc.rate_hz, rate_column=None, decide_every_s=sc.decide_every_s,
                   load_col=load_col, battery_wh=None)
    real.latency_ms = real.latency_ms * factor
    real.energy_mj = real.energy_mj * factor      # estimated energy is power x time: it drifts alike
    if args.calibrate:
        from simulator.calibrate import apply, load_cells
        apply(real, camp, load_cells(args.calibrate))
        info["calibrated_by"] = str(args.calibrate)
    env = rp._env(camp, bel, sc, real.n_periods, None)
    policy = pol.make(args.policy, params)
    policy.reset(env, np.random.default_rng([int(sc.seed), 7]))
    sim, timing = rp.run_policy(real, env, policy, sc.qoe)
    _write(tmp, camp, real, sim, lives, sc, args.policy, info, status)
    val = validate(sim, [lv for lv, ri in zip(lives, info["runs"]) if ri["status"] == "complete"] or lives,
                   sc.deadline_ms, real)
    with (tmp / "validation.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["metric", "simulated", "live", "error"], lineterminator="\n")
        w.writeheader()
        w.writerows(val)
    cells = worst_cells(real, lives, camp)
    with (tmp / "cells.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(cells[0]) if cells else ["choice"], lineterminator="\n")
        w.writeheader()
        w.writerows(cells)
    info["world"] = f"samples:odd-half of {camp.campaign_id}/{camp.target} x drift {factor:.3f}"
    (tmp / "live.json").write_text(json.dumps(info, indent=1, default=str) + "\n")
    _publish(tmp, out)
    for cl in cells[:3]:
        print(f"cell {cl['choice']} at {cl['busy_cpus']:g} busy CPUs ({cl['requests']} requests): live service "
              f"{cl['live_service_ms']:.4f} ms, world {cl['world_ms']:.4f} ms (x{cl['ratio']:.2f})")
    print(f"{'metric':34s} {'simulated':>12s} {'live':>12s} {'error':>9s}")
    for v in val:
        s = v["simulated"]
        print(f"{v['metric']:34s} {s if s == '' else format(s, '12.4f'):>12s} {v['live']:12.4f} {v['error']:9.3f}")
    rt = info["runs"][0]
    ends = ", ".join(f"{x:.3f}" for x in drift)
    print(f"status: {status}; drift factor {factor:.3f} (start, end: {ends}); round trip median "
          f"{rt['round_trip_ms_median']:.2f} ms")
    print(f"output: {out}/  (steps.parquet, summary.csv, validation.csv, cells.csv, live.json)")
    return 0 if status == "complete" else 1


def _publish(tmp: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)


def _write(tmp: Path, camp: Campaign, real, sim: dict, lives: list[dict], sc, policy: str, info: dict, status: str):
    import pyarrow as pa
    import pyarrow.parquet as pq
    cand = np.array([c for c, _ in camp.choices])
    thr = np.array([t for _, t in camp.choices], np.int32)
    tables, summary = [], []
    for name, st in [("simulated", sim)] + [(f"live-{i + 1}", lv) for i, lv in enumerate(lives)]:
        n = real.n
        tables.append(pa.table({
            "run": pa.array([name] * n).dictionary_encode(), "policy": pa.array([policy] * n).dictionary_encode(),
            "trace": pa.array([real.trace.name] * n).dictionary_encode(), "t_s": real.arrivals_s - real.t0,
            "candidate_id": pa.array(cand[st["choice"]]).dictionary_encode(), "threads": thr[st["choice"]],
            "latency_ms": st["latency_ms"], "deadline_ms": np.full(n, sc.deadline_ms), "missed": st["missed"],
            "energy_mj": st["energy_mj"], "battery_pct": st["battery_pct"], "qoe": st["qoe"], "served": st["served"],
            "switched": st["switched"], "busy_cpus": real.busy}))
        summary.append({"run": name, **_metrics(st, sc.deadline_ms)})
    pq.write_table(pa.concat_tables(tables), tmp / "steps.parquet")
    with (tmp / "summary.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(summary[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(summary)


if __name__ == "__main__":
    sys.exit(main())
