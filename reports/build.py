"""python -m reports.build RUN_DIR [--out FILE]: one self-contained HTML report of a run folder.

Figures are embedded as base64 SVG, tables sort on click with a few lines of inline script: the
file opens offline and prints. A missing or corrupt part of the run folder leaves its section
saying what is missing; the rest of the report is still built.
"""

from __future__ import annotations

import argparse
import base64
import io
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape

from harness import __version__
from reports import figures

TEMPLATES = Path(__file__).parent / "templates"


def svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue().encode()).decode()


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def load_run(run_dir: Path) -> dict:
    """What the run folder holds; ``problems`` lists what is missing or unreadable."""
    data: dict = {"problems": [], "rows": [], "samples": {}, "targets": [], "candidates": [], "errors": [],
                  "campaign": None, "counts": {}}
    db = run_dir / "campaign.sqlite"
    if db.is_file():
        try:
            from harness.store import Store
            store = Store(db)
            cid = store.campaign_ids()[0]
            data.update(campaign=store.campaign(cid), rows=store.rows(cid), samples=store.raw_samples(cid),
                        targets=store.targets(cid), candidates=store.candidates(cid), errors=store.errors(cid),
                        counts=store.status_counts(cid))
            store.close()
            return data
        except Exception as e:  # corrupt database, wrong schema, empty store
            data["problems"].append(f"{db.name}: unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    else:
        data["problems"].append(f"{db.name}: missing")
    pq = run_dir / "measurements.parquet"
    try:
        import pyarrow.parquet as papq
        data["rows"] = papq.read_table(pq).to_pylist()
        data["problems"].append("raw samples, targets and errors come from campaign.sqlite: using "
                                "measurements.parquet (medians only)")
    except Exception as e:
        data["problems"].append(f"{pq.name}: {'missing' if not pq.exists() else 'unreadable'}"
                                + ("" if not pq.exists() else f" ({type(e).__name__})"))
    return data


def _section(title: str, fn: Callable[[], dict], anchor: str) -> dict:
    try:
        body = fn()
    except _Missing as e:
        body = {"missing": str(e)}
    except Exception as e:  # a section that cannot be drawn says so; the report goes on
        body = {"missing": f"could not build this section ({type(e).__name__}: {e})"}
    return {"title": title, "anchor": anchor, **body}


class _Missing(Exception):
    pass


def _ok_rows(data: dict) -> list[dict]:
    return [r for r in data["rows"] if r["status"] == "ok"]


def _base_context(rows: list[dict]) -> tuple[int, int]:
    """The context each candidate is compared in: fewest threads, least background load."""
    return min((r["threads"], r["background_load"]) for r in rows)


def campaign_section(data: dict) -> dict:
    if data["campaign"] is None and not data["rows"]:
        raise _Missing("no campaign data (campaign.sqlite and measurements.parquet both unavailable)")
    return {"targets": data["targets"], "candidates": data["candidates"], "counts": data["counts"],
            "errors": data["errors"], "campaign": data["campaign"]}


def latency_section(data: dict) -> dict:
    rows = _ok_rows(data)
    if not rows:
        raise _Missing("no successful measurement in this run")
    figs, tables = [], []
    macs = {c["candidate_id"]: c["macs"] for c in data["candidates"]} or {r["candidate_id"]: r.get("macs") or 0 for r in rows}
    for target in sorted({r["target"] for r in rows}):
        trows = [r for r in rows if r["target"] == target]
        th, bg = _base_context(trows)
        base = sorted((r for r in trows if (r["threads"], r["background_load"]) == (th, bg)),
                      key=lambda r: macs.get(r["candidate_id"], 0))
        names = [r["candidate_id"] for r in base]
        throttled = {r["candidate_id"] for r in base if r["throttled"]}
        if data["samples"]:
            s = {n: data["samples"].get((target, n, th, bg), []) for n in names}
            figs.append({"src": svg(figures.latency_boxes(s, throttled, f"{target}: raw latency samples "
                                                          f"(threads={th}, background load={bg})")),
                         "alt": f"latency distribution on {target}"})
        figs.append({"src": svg(figures.load_and_first(names, [r["load_ms"] for r in base],
                                                       [r["first_inference_ms"] for r in base],
                                                       f"{target}: model load and first inference")),
                     "alt": f"load time on {target}"})
        ctx = sorted({(r["threads"], r["background_load"]) for r in trows})
        if len(ctx) > 1:   # a labelled grid: one row per candidate, one column per context
            med = {(r["candidate_id"], r["threads"], r["background_load"]): r["latency_ms_median"] for r in trows}
            grid = [[med.get((n, t, b)) if med.get((n, t, b)) is not None else np.nan for t, b in ctx] for n in names]
            figs.append({"src": svg(figures.heatmap(np.log10(np.array(grid, float)), names, [f"t{t}/bg{b}" for t, b in ctx],
                                                    f"{target}: median latency by threads / background load",
                                                    "log10 median ms", shown=np.array(grid, float))),
                         "alt": f"context effect on {target}"})
    for r in sorted(data["rows"], key=lambda r: (r["target"], macs.get(r["candidate_id"], 0), r["threads"],
                                                 r["background_load"])):
        tables.append(r)
    return {"figures": figs, "rows": tables, "n_throttled": sum(bool(r["throttled"]) for r in rows)}


def energy_section(data: dict) -> dict:
    rows = [r for r in _ok_rows(data) if r.get("energy_mj") is not None]
    if not rows:
        sources = sorted({r.get("energy_source") or "none" for r in data["rows"]}) or ["none"]
        raise _Missing(f"no energy in this run (energy_source: {', '.join(sources)}): no sensor and no power model")
    pts: dict[str, tuple] = {}
    for src in sorted({r["energy_source"] for r in rows}):
        sel = [r for r in rows if r["energy_source"] == src]
        label = src + (" (ESTIMATE)" if src.startswith("estimate") else "")
        pts[label] = (np.array([r["latency_ms_median"] for r in sel]), np.array([r["energy_mj"] for r in sel]))
    return {"figures": [{"src": svg(figures.energy_vs_latency(pts, "energy per inference against latency")),
                         "alt": "energy against latency"}]}


def recommendation_section(data: dict, budget_ms: float | None) -> dict:
    """Which model to run: per target and context, the best expected QoE among the candidates
    within the budget, over their raw samples (simulator.ranking, the one ranking select shares)."""
    from simulator.ranking import recommend
    smp = data.get("samples") or {}
    rows = [dict(r, samples=smp.get((r["target"], r["candidate_id"], r["threads"], r["background_load"])))
            for r in _ok_rows(data) if r.get("latency_ms_median") is not None]
    if not any(r.get("accuracy") is not None for r in rows):
        raise _Missing("no candidate has an accuracy (zoo import --accuracy): nothing to recommend by")
    if budget_ms is None:   # the median of the candidates' medians at the base context: a real trade-off
        th, bg = _base_context(rows)
        budget_ms = float(np.median([r["latency_ms_median"] for r in rows if (r["threads"], r["background_load"]) == (th, bg)]))
        how = "the default: the median of the candidates' medians in the base context; change it with --budget-ms"
    else:
        how = "given with --budget-ms"
    return {"recs": recommend(rows, budget_ms), "budget_ms": budget_ms, "how": how}


def tradeoff_section(data: dict) -> dict:
    rows = [r for r in _ok_rows(data) if r.get("accuracy") is not None]
    if not rows:
        raise _Missing("no candidate with a measured accuracy (e.g. nb201 or imported models without --accuracy)")
    pts, fronts = {}, []
    for target in sorted({r["target"] for r in rows}):
        trows = [r for r in rows if r["target"] == target]
        th, bg = _base_context(trows)
        sel = [r for r in trows if (r["threads"], r["background_load"]) == (th, bg)]
        x = np.array([r["latency_ms_median"] for r in sel])
        y = np.array([r["accuracy"] for r in sel])
        pts[f"{target} (t{th}/bg{bg})"] = (x, y, [r["candidate_id"] for r in sel])
        for i in figures.pareto_front(x, y):
            fronts.append({"target": target, "candidate_id": sel[i]["candidate_id"], "latency_ms_median": x[i],
                           "accuracy": y[i]})
    return {"figures": [{"src": svg(figures.tradeoff(pts, "median latency (ms)", "accuracy against latency, "
                                                     "with the Pareto front per target")), "alt": "trade-off"}],
            "front": fronts}


def predictors_section(run_dir: Path) -> dict:
    """Predictors placed in RUN/predictors/: each artifact (train --out RUN/predictors/NAME),
    loaded through the safe loader, predicts this run's measurements (predicted vs measured,
    acc@10%); each evaluate --json file there, its scores."""
    import json
    d = run_dir / "predictors"
    if not d.is_dir():
        raise _Missing("no predictors in this run folder: python -m predictors.train ... --out RUN/predictors/NAME, "
                       "or python -m predictors.evaluate ... --json RUN/predictors/scores.json")
    figs, rows = [], []
    pq = run_dir / "measurements.parquet"
    for art in sorted(p.parent for p in d.glob("*/card.json")):
        from harness.zoo.graph import sha256_file
        from predictors import dataset, store
        from predictors.evaluate import metrics
        est, card = store.load(art)
        target = card.get("target", "latency_ms_median")
        df = dataset.load([pq], [], target)
        pred = est.predict(df[card["features"]])
        m = metrics(df[target], pred)
        seen = sha256_file(pq) in set((card.get("training_data") or {}).values())
        note = ("in-sample: this run is in its training data, not a held-out score" if seen
                else "held out: not trained on this run")
        title = f"{art.name} on this run: acc@10% {m['acc@10%']:.2f} ({note.split(':')[0]})"
        figs.append({"src": svg(figures.predicted_vs_measured(df[target], pred, title)),
                     "alt": f"predicted vs measured {art.name}"})
        rows.append({"name": art.name, "what": f"{card.get('estimator', '').rsplit('.', 1)[-1]} on {len(df)} rows ({note})",
                     **{k: m[k] for k in ("acc@5%", "acc@10%", "acc@15%")}, "spearman": m.get("spearman")})
        cv = (card.get("cv") or {}).get("scores")
        if cv:
            rows.append({"name": art.name, "what": "its grouped cross-validation (card.json)",
                         **{k: cv.get(k) for k in ("acc@5%", "acc@10%", "acc@15%", "spearman")}})
    for js in sorted(d.glob("*.json")):
        try:
            rep = json.loads(js.read_text())
        except ValueError:
            continue
        for level, sc in rep.items():
            if isinstance(sc, dict) and "acc@10%" in sc:
                rows.append({"name": js.name, "what": level,
                             **{k: sc.get(k) for k in ("acc@5%", "acc@10%", "acc@15%", "spearman")}})
    if not rows:
        raise _Missing(f"{d}: no predictor artifact (card.json) and no evaluate --json scores in it")
    return {"figures": figs, "pred_rows": rows}


HINDSIGHT = ("oracle", "static-oracle")   # references that plan on the realized world


def _output_dir(run_dir: Path, sub: str, marker: str) -> Path | None:
    """Where a replay's or live run's output is: RUN_DIR/<sub>/, or RUN_DIR itself (that folder
    alone gives a report too); None when ``marker`` is in neither."""
    for d in (run_dir / sub, run_dir):
        if (d / marker).is_file():
            return d
    return None


def replay_section(run_dir: Path) -> dict:
    """The comparison table of every policy per trace, and per trace a timeline of the oracle and
    the best online policy (files written by python -m simulator.replay; read, not imported)."""
    import csv
    import json
    d = _output_dir(run_dir, "replay", "summary.csv")
    if d is None:
        raise _Missing("no replay in this run folder: python -m simulator.replay writes one into replay/")
    with (d / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise _Missing(f"{d / 'summary.csv'}: no rows")
    run = {}
    if (d / "run.json").is_file():
        run = json.loads((d / "run.json").read_text())
    import pyarrow.parquet as papq
    steps = None
    if (d / "steps.parquet").is_file():   # columns as numpy arrays (no pandas in the base install)
        tab = papq.read_table(d / "steps.parquet", columns=["policy", "trace", "t_s", "candidate_id", "busy_cpus",
                                                              "latency_ms", "battery_pct", "qoe"])
        steps = {c: np.asarray(tab.column(c).to_pylist() if c in ("policy", "trace", "candidate_id")
                               else tab.column(c).to_numpy(zero_copy_only=False)) for c in tab.column_names}
    figs, best = [], {}
    for trace in dict.fromkeys(r["trace"] for r in rows):
        mine = [r for r in rows if r["trace"] == trace]
        online = [r for r in mine if r["policy"] not in HINDSIGHT]
        if online:
            b = max(online, key=lambda r: float(r["qoe_mean"]))
            best[trace] = b["policy"]
        if steps is None:
            continue
        show = [p for p in ("oracle", best.get(trace)) if p and any(r["policy"] == p for r in mine)]
        runs = {}
        for p in show:
            m = (steps["trace"] == trace) & (steps["policy"] == p)
            acc = run.get("accuracy") or {}
            runs[p] = {"t_s": steps["t_s"][m], "busy_cpus": steps["busy_cpus"][m],
                       "accuracy": np.array([acc.get(c, np.nan) for c in steps["candidate_id"][m]], float),
                       "latency_ms": steps["latency_ms"][m], "battery_pct": steps["battery_pct"][m]}
        if runs:
            deadline = float(mine[0]["deadline_ms"])
            figs.append({"src": svg(figures.replay_timeline(trace, runs, deadline,
                                                            f"{figures.short(trace)}: oracle and the best online policy "
                                                            f"({best.get(trace, '-')})")),
                         "alt": f"replay timeline {trace}"})
    extra = []
    if steps is not None:
        extra = _policy_figures(rows, steps, run)
    board = _scoreboard(rows)
    cols = ["trace", "policy", "qoe_mean", "qoe_vs_oracle", "gap_closed", "accuracy_mean", "miss_rate",
            "latency_ms_p50", "latency_ms_p95", "energy_j", "battery_end_pct", "switches", "decision_us_median",
            "decision_us_p99"]
    table = [{c: r.get(c, "") for c in cols} for r in rows]
    return {"figures": figs + extra, "table": table, "columns": cols, "best": best, "board": board,
            "user": run.get("user"),
            "world": run.get("world", rows[0].get("world")), "belief": run.get("belief", rows[0].get("belief")),
            "rule": run.get("interpolation"), "energy_source": run.get("energy_source"), "seed": rows[0].get("seed"),
            "qoe": run.get("qoe"), "command": "python -m simulator.replay", "folder": str(d)}



def offload_section(run_dir: Path) -> dict:
    """Per bandwidth trace, where each request ran and its latency against the deadline, for the
    oracle, the offload policies and the best on-device one (python -m simulator.offload's files)."""
    import csv
    import json
    d = _output_dir(run_dir, "offload", "offload.json")
    if d is None:
        raise _Missing("no offloading replay in this run folder: python -m simulator.offload writes one into offload/")
    with (d / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    info = json.loads((d / "offload.json").read_text())
    import pyarrow.parquet as papq
    tab = papq.read_table(d / "steps.parquet", columns=["policy", "trace", "t_s", "place", "latency_ms", "bandwidth_mbps"])
    steps = {c: np.asarray(tab.column(c).to_pylist() if c in ("policy", "trace", "place")
                           else tab.column(c).to_numpy(zero_copy_only=False)) for c in tab.column_names}
    figs = []
    for trace in dict.fromkeys(r["trace"] for r in rows):
        mine = [r for r in rows if r["trace"] == trace]
        device = [r for r in mine if r["policy"] not in HINDSIGHT and float(r["device_frac"] or 0) == 1.0
                  and not r["policy"].startswith("offload")]
        show = [p for p in ("oracle", "offload-mpc", "offload-threshold") if any(r["policy"] == p for r in mine)]
        if device:
            show.append(max(device, key=lambda r: float(r["qoe_mean"]))["policy"])
        runs, first = {}, None
        for p in show:
            m = (steps["trace"] == trace) & (steps["policy"] == p)
            first = m if first is None else first
            runs[p] = {"t_s": steps["t_s"][m], "place": steps["place"][m], "latency_ms": steps["latency_ms"][m]}
        if runs:
            figs.append({"src": svg(figures.offload_timeline(trace, steps["t_s"][first], steps["bandwidth_mbps"][first], runs,
                                                             float(mine[0]["deadline_ms"]),
                                                             f"{figures.short(trace)}: where requests ran")),
                         "alt": f"offloading timeline {trace}"})
    cols = ["trace", "policy", "qoe_mean", "qoe_vs_oracle", "accuracy_mean", "miss_rate", "latency_ms_p50",
            "latency_ms_p95", "energy_j", "kb_sent_per_request", "device_frac", "split_frac", "server_frac", "fallbacks",
            "switches", "decision_us_median"]
    return {"figures": figs, "table": [{c: r.get(c, "") for c in cols} for r in rows], "columns": cols, "info": info,
            "folder": str(d)}


def live_section(run_dir: Path) -> dict:
    """The simulator against a live run of the same policy (python -m simulator.live): the error
    table, the cells that disagree most, and the runs overlaid."""
    import csv
    import json
    d = _output_dir(run_dir, "live", "validation.csv")
    if d is None:
        raise _Missing("no live run in this run folder: python -m simulator.live writes one into live/")
    with (d / "validation.csv").open() as f:
        val = list(csv.DictReader(f))
    cells = []
    if (d / "cells.csv").is_file():
        with (d / "cells.csv").open() as f:
            cells = list(csv.DictReader(f))[:6]
    info = json.loads((d / "live.json").read_text()) if (d / "live.json").is_file() else {}
    figs = []
    if (d / "steps.parquet").is_file():
        import pyarrow.parquet as papq
        tab = papq.read_table(d / "steps.parquet", columns=["run", "t_s", "latency_ms", "busy_cpus", "deadline_ms", "trace"])
        run = np.asarray(tab.column("run").to_pylist())
        t, lat, busy = (tab.column(c).to_numpy(zero_copy_only=False) for c in ("t_s", "latency_ms", "busy_cpus"))
        runs = {r: (t[run == r], lat[run == r]) for r in dict.fromkeys(run.tolist())}
        first = run == run[0]
        trace = tab.column("trace")[0].as_py()
        figs.append({"src": svg(figures.sim_vs_live(trace, runs, (t[first], busy[first]),
                                                    float(tab.column("deadline_ms")[0].as_py()),
                                                    f"{info.get('policy', '')} on {info.get('target', '')}: "
                                                    f"simulated and live")), "alt": "simulator vs live"})
    return {"figures": figs, "validation": val, "cells": cells, "info": info, "folder": str(d)}


def sweep_section(out: Path) -> dict:
    """A sweep's dataset (python -m simulator.sweep): per campaign, QoE vs the oracle and the gap
    closed per policy across deadlines, and where each policy wins and loses."""
    import pandas as pd
    df = pd.read_parquet(out)
    errors = df[df["error"].notna()]
    df = df[df["error"].isna()]
    if df.empty:
        raise _Missing(f"{out}: no successful cell")
    figs = []
    for camp, d in df.groupby("campaign"):
        for metric, label in (("qoe_vs_oracle", "QoE / oracle"), ("gap_closed", "gap closed")):
            g = d.groupby(["policy", "deadline_arg"])[metric].mean().unstack()
            g = g.loc[g.mean(axis=1).sort_values(ascending=False).index]
            figs.append({"src": svg(figures.heatmap(g.values, list(g.index), [str(c) for c in g.columns],
                                                    f"{camp}: {label} by deadline (ms)",
                                                    label, vmin=0 if metric == "qoe_vs_oracle" else None, vmax=1)),
                         "alt": f"{metric} {camp}"})
    online = df[~df["policy"].isin(HINDSIGHT)].copy()
    online["where"] = online["trace"].str.slice(0, 28) + " @ " + online["deadline_arg"].astype(str) + " ms"
    wins = []
    for p, d in online.groupby("policy"):
        by = d.groupby("where")["qoe_vs_oracle"].mean().dropna()
        if len(by):
            wins.append({"policy": p, "mean": float(by.mean()), "best": by.idxmax(), "best_v": float(by.max()),
                         "worst": by.idxmin(), "worst_v": float(by.min())})
    wins.sort(key=lambda r: -r["mean"])
    return {"figures": figs, "wins": wins, "cells": int(df["cell"].nunique()), "policies": sorted(df["policy"].unique()),
            "errors": len(errors), "folder": str(out)}


def _scoreboard(rows: list[dict]) -> list[dict]:
    """Per policy, the mean over traces of what the comparison table shows, best first."""
    def mean(vals):
        v = [float(x) for x in vals if x not in ("", None)]
        return float(np.mean(v)) if v else None
    out = []
    for p in dict.fromkeys(r["policy"] for r in rows):
        mine = [r for r in rows if r["policy"] == p]
        out.append({"policy": p, "traces": len(mine), **{k: mean(r.get(k) for r in mine) for k in
                    ("qoe_vs_oracle", "gap_closed", "qoe_mean", "miss_rate", "energy_j", "switches", "decision_us_median",
                     "decision_us_p99")}})
    return sorted(out, key=lambda r: -(r["qoe_mean"] if r["qoe_mean"] is not None else -1e9))


def _policy_figures(rows: list[dict], steps: dict, run: dict, most: int = 3) -> list[dict]:
    """Per-policy choice timelines for the traces whose load moves most (at most ``most``), and with
    a simulated user, every policy's regret against the best single choice in hindsight."""
    acc = run.get("accuracy") or {}
    figs = []
    traces = list(dict.fromkeys(r["trace"] for r in rows))
    spread = {}
    for t in traces:
        m = steps["trace"] == t
        b = steps["busy_cpus"][m]
        spread[t] = float(np.ptp(b)) if len(b) else 0.0
    for t in sorted(traces, key=lambda x: -spread[x])[:most]:
        m = steps["trace"] == t
        pols = [r["policy"] for r in rows if r["trace"] == t and r["policy"] != "static-oracle"]
        runs = {}
        for p in pols:
            mp = m & (steps["policy"] == p)
            runs[p] = (steps["t_s"][mp], np.array([acc.get(c, np.nan) for c in steps["candidate_id"][mp]], float))
        first = m & (steps["policy"] == pols[0])
        figs.append({"src": svg(figures.policy_choices(t, steps["t_s"][first], steps["busy_cpus"][first], runs,
                                                       f"{figures.short(t)}: the model each policy chose")),
                     "alt": f"choices per policy {t}"})
        if run.get("user") and any(r["policy"] == "static-oracle" for r in rows if r["trace"] == t):
            ref = steps["qoe"][m & (steps["policy"] == "static-oracle")]
            curves = {p: (steps["t_s"][m & (steps["policy"] == p)], np.cumsum(ref - steps["qoe"][m & (steps["policy"] == p)]))
                      for p in pols if p != "oracle"}
            figs.append({"src": svg(figures.regret(t, curves, f"{figures.short(t)}: regret against the best single choice for "
                                                              f"user {run['user']}")), "alt": f"regret {t}"})
    return figs


def build_report(run_dir: str | Path, out: str | Path | None = None, command: str | None = None,
                 budget_ms: float | None = None) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        from harness.errors import BadInput
        raise BadInput(f"{run_dir}: no such run folder")
    if (run_dir / "_sweep.yaml").is_file():    # a sweep's dataset: a report of its own
        return _render(run_dir, [_section("Sweep", lambda: sweep_section(run_dir), "sweep")], [], {}, out, command,
                       kind="Sweep")
    data = load_run(run_dir)
    sections = [
        _section("Campaign", lambda: campaign_section(data), "campaign"),
        _section("Which model to run", lambda: recommendation_section(data, budget_ms), "recommend"),
        _section("Latency", lambda: latency_section(data), "latency"),
        _section("Energy", lambda: energy_section(data), "energy"),
        _section("Trade-off", lambda: tradeoff_section(data), "tradeoff"),
        _section("Predictors", lambda: predictors_section(run_dir), "predictors"),
        _section("Replay", lambda: replay_section(run_dir), "replay"),
        _section("Simulator vs live", lambda: live_section(run_dir), "live"),
        _section("Offloading", lambda: offload_section(run_dir), "offload"),
    ]
    return _render(run_dir, sections, data["problems"], data["campaign"] or {}, out, command)


def _render(run_dir: Path, sections: list[dict], problems: list[str], camp: dict, out, command,
            kind: str = "Campaign") -> Path:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    env.filters["ms"] = lambda x: "-" if x is None else f"{x:.3f}"
    env.filters["when"] = lambda t: "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    html = env.get_template("report.html.j2").render(
        run=run_dir.name, kind=kind, sections=sections, problems=problems, campaign=camp,
        provenance={"harness_version": __version__, "commit": _commit(),
                    "command": camp.get("command") or "-", "report_command": command or "-",
                    "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "campaign_created": camp.get("created_at")})
    out = Path(out) if out else run_dir / "report.html"
    tmp = out.with_suffix(".html.part")
    tmp.write_text(html)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reports.build", description=__doc__)
    ap.add_argument("run_dir", type=Path, help="a run folder (or a replay, live or sweep folder)")
    ap.add_argument("--out", type=Path, help="the HTML file (default: RUN_DIR/report.html)")
    ap.add_argument("--budget-ms", type=float,
                    help="latency budget of the recommendation (default: the median of the candidates' medians)")
    args = ap.parse_args(argv)
    from harness.errors import HarnessError
    try:
        if args.budget_ms is not None and not args.budget_ms > 0:
            raise HarnessError(f"--budget-ms: expected a number of ms > 0, got {args.budget_ms}")
        out = build_report(args.run_dir, args.out,
                           shlex.join(["python", "-m", "reports.build", *(argv if argv is not None else sys.argv[1:])]),
                           args.budget_ms)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
