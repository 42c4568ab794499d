"""python -m simulator.select: which candidate to run on one device, in one context, within a
budget; and (--design) whether a configuration not built yet would do better.

    python -m simulator.select --campaign runs/C --deadline-ms 1.0 [--energy-mj 0.5] [--min-accuracy 0.9]
    python -m simulator.select --campaign runs/C --deadline-ms 1.0 --device-samples new-device.csv
    python -m simulator.select --campaign runs/C --deadline-ms 1.0 --belief-model model/
    python -m simulator.select --campaign runs/C --deadline-ms 1.0 --design [--verify]

Candidates are ranked by expected QoE per request (simulator.ranking, the ranking the report's
recommendation uses): those meeting every budget first. Each one's latency distribution is its
measured samples in the context (--threads, --background-load); for a device not in the campaign
(--device-samples CSV of candidate_id,latency_ms, a few measurements of it) those samples moved
by a log-linear map fitted on the few (the proxy-device transfer, one proxy: the campaign's
device); with --belief-model a trained latency predictor's level, the samples keeping only
their spread. The rank's confidence: how often the first stays first over 400 bootstrap draws
of the samples (and of the map's or model's error). The Pareto set is printed beside.

--design adds the digits-compressed configurations (width, depth, resolution, quantization) not
built yet: log latency and accuracy from knob models fitted on the measured candidates (simple
or quadratic in the knobs, whichever has the smaller leave-one-architecture-out error, printed);
a design's accuracy is ranked one error below its prediction. What to run is chosen among the
built candidates; the best design is printed apart with the `harness.zoo build --only` command
that makes it. --verify runs that command (the zoo extra), measures the result with
harness.collect on the campaign's target (the local machine) and prints predicted against
measured.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.cli import number, run
from harness.errors import BadInput
from simulator.metrics import QoE, load_qoe, load_user
from simulator.ranking import rank
from simulator.world import Campaign, load_campaign

BOOTSTRAP = 400
QUANTILES = 200          # a predicted lognormal latency is represented by this many quantiles
# a design's accuracy is ranked this many mean absolute errors below its prediction: a prediction
# must beat a measurement by more than its error to be chosen (bench/selection.py measures it)
PESSIMISM = 1.0


@dataclass
class Option:
    """One thing that could run: a measured candidate at some threads, or a predicted design."""
    candidate_id: str
    threads: int
    knobs: dict
    accuracy: float
    samples: np.ndarray            # latency, ms: measured (or transferred), or quantiles of a prediction
    energy_mj: float | None
    source: str                    # measured | transferred | model (a predictor's level) | predicted (a design)
    sigma_log: float = 0.0         # model error of the latency level (log), for the confidence
    accuracy_err: float = 0.0      # model error of the accuracy (absolute), for --design
    accuracy_pred: float | None = None   # a design's central accuracy prediction (it is ranked lower)

    def row(self) -> dict:
        return {"candidate_id": self.candidate_id, "threads": self.threads, "accuracy": self.accuracy,
                "latency_ms_median": float(np.median(self.samples)), "samples": self.samples,
                "energy_mj": self.energy_mj, "source": self.source}


def options(camp: Campaign, background_load: int, threads: int | None) -> list[Option]:
    if background_load not in camp.levels:
        raise BadInput(f"--background-load {background_load}: the campaign measured {camp.levels.tolist()}")
    li = int(np.flatnonzero(camp.levels == background_load)[0])
    out = []
    for i, (c, th) in enumerate(camp.choices):
        if threads is not None and th != threads:
            continue
        e = camp.energy_mj[i, li]
        out.append(Option(c, th, dict(camp.knobs[i]), float(camp.accuracy[i]), np.asarray(camp.samples[i][li], float),
                          None if np.isnan(e) else float(e), "measured"))
    if not out:
        raise BadInput(f"--threads {threads}: the campaign measured threads "
                       f"{sorted({t for _, t in camp.choices})}")
    return out


# ------------------------------------------------------------------ a device not in the campaign
def read_device_samples(path: Path) -> dict[str, float]:
    """CSV candidate_id,latency_ms (several rows of one candidate: their median)."""
    got: dict[str, list[float]] = {}
    try:
        with path.open(newline="") as f:
            rd = csv.DictReader(f)
            if not rd.fieldnames or not {"candidate_id", "latency_ms"} <= set(rd.fieldnames):
                raise BadInput(f"{path}: expected columns candidate_id,latency_ms (got {rd.fieldnames})")
            for n, r in enumerate(rd, start=2):
                try:
                    v = float(r["latency_ms"])
                except (TypeError, ValueError):
                    raise BadInput(f"{path}:{n}: latency_ms: expected a number, got {r['latency_ms']!r}") from None
                if not (math.isfinite(v) and v > 0):
                    raise BadInput(f"{path}:{n}: latency_ms: expected a number > 0, got {r['latency_ms']!r}")
                got.setdefault(r["candidate_id"], []).append(v)
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read ({e})") from None
    if not got:
        raise BadInput(f"{path}: no rows")
    return {c: float(np.median(v)) for c, v in got.items()}


def transfer(opts: list[Option], measured: dict[str, float], path: Path) -> tuple[list[Option], dict]:
    """Move every option's samples to the new device: log y = a + b log m, fitted on the
    candidates measured there (b = 1 with fewer than 3); the map's leave-one-out error in log
    space becomes each option's ``sigma_log``."""
    by = {o.candidate_id: o for o in opts}
    unknown = sorted(set(measured) - set(by))
    if unknown:
        raise BadInput(f"{path}: not candidates of the campaign at these threads: {', '.join(unknown[:5])}")
    ids = sorted(measured)
    x = np.log([np.median(by[c].samples) for c in ids])
    y = np.log([measured[c] for c in ids])

    def fit(xs, ys):
        if len(xs) >= 3 and np.ptp(xs) > 0:
            b, a = np.polyfit(xs, ys, 1)
            return a, b
        return float(np.mean(ys - xs)), 1.0
    a, b = fit(x, y)
    loo = [y[i] - (lambda ab: ab[0] + ab[1] * x[i])(fit(np.delete(x, i), np.delete(y, i))) for i in range(len(ids))] \
        if len(ids) >= 2 else []
    sigma = float(np.sqrt(np.mean(np.square(loo)))) if loo else 0.25   # one sample: a stated guess, said below
    out = []
    for o in opts:
        m = float(np.median(o.samples))
        scale = math.exp(a + b * math.log(m)) / m
        out.append(Option(o.candidate_id, o.threads, o.knobs, o.accuracy, o.samples * scale,
                          None if o.energy_mj is None else o.energy_mj * scale, "transferred", sigma_log=sigma))
    info = {"samples": len(ids), "a": a, "b": b, "loo_error_log": sigma if loo else None,
            "note": "" if loo else "one candidate measured: the map's error is not known (0.25 in log assumed)"}
    return out, info


# ------------------------------------------------------------------ a trained predictor as belief
def from_model(opts: list[Option], camp: Campaign, background_load: int, model_dir: Path, zoos: list[Path],
               expect_sha256: str | None) -> tuple[list[Option], dict]:
    """Each option's latency level from a predictor trained with predictors.train (loaded through
    its safe loader), with the measured samples' shape around it; the card's grouped-CV error
    (rmspe) is the level's model error. The campaign's samples stay only as the shape."""
    from predictors import dataset
    from predictors import store as pstore
    est, card = pstore.load(model_dir, expect_sha256=expect_sha256)
    target = card.get("target", "")
    if not target.startswith("latency_ms"):
        raise BadInput(f"{model_dir}: the predictor's target is {target!r}; --belief-model needs a latency one")
    df = dataset.load([camp.run_dir / "measurements.parquet"], zoos, target)
    df = df[(df["target"] == camp.target) & (df["background_load"] == background_load)]
    pred = dict(zip(zip(df["candidate_id"], df["threads"].astype(int)), est.predict(df[card["features"]])))
    cv = (card.get("cv") or {}).get("scores") or {}
    sigma = float(np.log1p(cv["rmspe"])) if cv.get("rmspe") else 0.25
    out = []
    for o in opts:
        m = pred.get((o.candidate_id, o.threads))
        if m is None or not m > 0:
            raise BadInput(f"{model_dir}: no prediction for {o.candidate_id}@{o.threads}t (its model file: --zoo DIR)")
        scale = float(m) / float(np.median(o.samples))
        out.append(Option(o.candidate_id, o.threads, o.knobs, o.accuracy, o.samples * scale,
                          None if o.energy_mj is None else o.energy_mj * scale, "model", sigma_log=sigma))
    info = {"artifact": str(model_dir), "sha256": card.get("artifact", {}).get("sha256"), "level": card.get("level"),
            "target": target, "cv": cv, "sigma_log": sigma,
            "note": "" if cv.get("rmspe") else "the card has no CV error: 0.25 in log assumed"}
    return out, info


# ------------------------------------------------------------------ designs not built yet
def _simple(k: dict) -> list[float]:
    """log(width^2 x resolution^2) (what a convolution's multiply-accumulates scale with), blocks
    removed, quantization: few parameters, for a few architectures."""
    from harness.zoo.digits import QUANTIZATIONS
    return [2 * math.log(k["width"]) + 2 * math.log(k["resolution"]), float(k["blocks_removed"]),
            *[float(k["quantization"] == q) for q in QUANTIZATIONS[1:]]]


def _quadratic(k: dict) -> list[float]:
    """log width and log resolution with their squares and product (a fixed cost that small
    networks cannot hide, an accuracy that saturates), blocks removed, quantization."""
    from harness.zoo.digits import QUANTIZATIONS
    w, r = math.log(k["width"]), math.log(k["resolution"])
    return [w, r, w * w, r * r, w * r, float(k["blocks_removed"]), *[float(k["quantization"] == q) for q in QUANTIZATIONS[1:]]]


FORMS = {"simple": _simple, "quadratic": _quadratic}


def _ridge(X: np.ndarray, y: np.ndarray, lam: float = 1e-3) -> np.ndarray:
    X1 = np.c_[np.ones(len(X)), X]
    return np.linalg.solve(X1.T @ X1 + lam * np.eye(X1.shape[1]), X1.T @ y)


def _predict(w: np.ndarray, X: np.ndarray) -> np.ndarray:
    return np.c_[np.ones(len(X)), X] @ w


def _loao(X: np.ndarray, y: np.ndarray, arch: np.ndarray) -> np.ndarray:
    """Leave-one-architecture-out residuals (every quantization of the held-out architecture out)."""
    res = np.empty(len(y))
    for g in np.unique(arch):
        te = arch == g
        res[te] = y[te] - _predict(_ridge(X[~te], y[~te]), X[te])
    return res


def knob_models(opts: list[Option]) -> dict:
    """Latency (log) and accuracy as functions of the knobs; for each, the form (simple or
    quadratic) with the smaller leave-one-architecture-out error, and that error."""
    have = [o for o in opts if {"width", "resolution", "blocks_removed", "quantization"} <= set(o.knobs)]
    archs = [(o.knobs["width"], o.knobs["blocks_removed"], o.knobs["resolution"]) for o in have]
    if len(set(archs)) < 3:
        raise BadInput("--design: the campaign needs digits-compressed candidates of 3 architectures or more "
                       "(knobs width, blocks_removed, resolution, quantization) to fit the knob models")
    index = {a: i for i, a in enumerate(sorted(set(archs)))}
    arch = np.array([index[a] for a in archs])
    ylat = np.log([np.median(o.samples) for o in have])
    yacc = np.array([o.accuracy for o in have])
    out = {"n": len(have), "architectures": len(set(archs))}
    for what, y, err in (("lat", ylat, lambda r: float(np.sqrt(np.mean(r * r)))),
                         ("acc", yacc, lambda r: float(np.mean(np.abs(r))))):
        best = min(FORMS, key=lambda f: err(_loao(np.array([FORMS[f](o.knobs) for o in have]), y, arch)))
        X = np.array([FORMS[best](o.knobs) for o in have])
        out[f"w_{what}"], out[f"form_{what}"] = _ridge(X, y), best
        out["sigma_log" if what == "lat" else "acc_mae"] = err(_loao(X, y, arch))
    e = [o.energy_mj / float(np.median(o.samples)) for o in have if o.energy_mj is not None]
    out["mj_per_ms"] = float(np.median(e)) if e else None
    return out


def designs(opts: list[Option], models: dict, threads: int, pessimism: float = PESSIMISM) -> list[Option]:
    """Every digits-compressed configuration not among the options, predicted; its accuracy ranked
    ``pessimism`` mean absolute errors below the prediction."""
    from scipy.stats import norm

    from harness.zoo.digits import BLOCKS_REMOVED, QUANTIZATIONS, RESOLUTIONS, WIDTHS
    built = {o.candidate_id for o in opts}
    z = norm.ppf((np.arange(QUANTILES) + 0.5) / QUANTILES)
    spread = float(np.median([np.std(np.log(o.samples)) for o in opts]))   # a measured candidate's, around the level
    out = []
    for w in WIDTHS:
        for d in BLOCKS_REMOVED:
            for r in RESOLUTIONS:
                for q in QUANTIZATIONS:
                    cid = f"dc-w{int(w * 100):03d}-d{d}-r{r}-{q}"
                    if cid in built:
                        continue
                    k = {"width": w, "blocks_removed": d, "resolution": r, "quantization": q}
                    med = float(np.exp(_predict(models["w_lat"], np.array([FORMS[models["form_lat"]](k)]))[0]))
                    central = float(np.clip(_predict(models["w_acc"], np.array([FORMS[models["form_acc"]](k)]))[0],
                                            0.0, 1.0))
                    acc = max(0.0, central - pessimism * models["acc_mae"])
                    out.append(Option(cid, threads, k, acc, med * np.exp(spread * z),
                                      None if models["mj_per_ms"] is None else models["mj_per_ms"] * med, "predicted",
                                      sigma_log=models["sigma_log"], accuracy_err=models["acc_mae"],
                                      accuracy_pred=central))
    return out


# ------------------------------------------------------------------ ranking, confidence, Pareto
def ranked(opts: list[Option], deadline_ms: float, qoe: QoE, energy_mj: float | None,
           min_accuracy: float | None) -> list[dict]:
    by = {(o.candidate_id, o.threads): o for o in opts}
    rows = rank([o.row() for o in opts], deadline_ms, qoe, energy_mj, min_accuracy)
    for r in rows:
        r["option"] = by[(r["candidate_id"], r["threads"])]
    return rows


def confidence(opts: list[Option], deadline_ms: float, qoe: QoE, energy_mj, min_accuracy, seed: int = 0) -> float:
    """How often the first option stays first when every option's samples are drawn again (with
    replacement) and its latency level moved by its model error."""
    first = ranked(opts, deadline_ms, qoe, energy_mj, min_accuracy)[0]["option"]
    rng = np.random.default_rng(seed)
    same = 0
    for _ in range(BOOTSTRAP):
        draw = []
        for o in opts:
            s = o.samples[rng.integers(0, len(o.samples), len(o.samples))]
            if o.sigma_log:
                s = s * math.exp(rng.normal(0, o.sigma_log))
            acc = o.accuracy + (rng.normal(0, o.accuracy_err * 1.25) if o.accuracy_err else 0.0)
            draw.append(Option(o.candidate_id, o.threads, o.knobs, acc, s, o.energy_mj, o.source))
        top = ranked(draw, deadline_ms, qoe, energy_mj, min_accuracy)[0]
        same += (top["candidate_id"], top["threads"]) == (first.candidate_id, first.threads)
    return same / BOOTSTRAP


def pareto(rows: list[dict]) -> list[dict]:
    """Options no other beats on latency, energy and accuracy at once (missing energy: not compared)."""
    def le(a, b, k, hi=False):
        if a[k] is None or b[k] is None:
            return True
        return a[k] >= b[k] if hi else a[k] <= b[k]
    out = []
    for r in rows:
        dominated = any(o is not r and le(o, r, "latency_ms_median") and le(o, r, "energy_mj")
                        and le(o, r, "accuracy", hi=True)
                        and (o["latency_ms_median"], o["energy_mj"] or 0, -o["accuracy"])
                        != (r["latency_ms_median"], r["energy_mj"] or 0, -r["accuracy"]) for o in rows)
        if not dominated:
            out.append(r)
    return sorted(out, key=lambda r: r["latency_ms_median"])


def unreachable(rows: list[dict], deadline_ms: float, energy_mj: float | None, min_accuracy: float | None) -> str:
    """Which constraint no candidate meets (the first of them), or which ones none meets together."""
    fastest = min(rows, key=lambda r: r["latency_ms_median"])
    if fastest["latency_ms_median"] > deadline_ms:
        return (f"--deadline-ms {deadline_ms:g}: no candidate's median latency is within it (the fastest, "
                f"{fastest['candidate_id']}@{fastest['threads']}t, takes {fastest['latency_ms_median']:.4g} ms)")
    if energy_mj is not None:
        es = [r for r in rows if r["energy_mj"] is not None]
        if not es:
            return f"--energy-mj {energy_mj:g}: no candidate has an energy figure in this campaign"
        least = min(es, key=lambda r: r["energy_mj"])
        if least["energy_mj"] > energy_mj:
            return (f"--energy-mj {energy_mj:g}: no candidate uses that little per inference (the least, "
                    f"{least['candidate_id']}@{least['threads']}t, {least['energy_mj']:.4g} mJ)")
    if min_accuracy is not None:
        best = max(rows, key=lambda r: r["accuracy"])
        if best["accuracy"] < min_accuracy:
            return (f"--min-accuracy {min_accuracy:g}: no candidate is that accurate (the best, {best['candidate_id']}, "
                    f"{best['accuracy']:.4g})")
    fast = [r for r in rows if r["latency_ms_median"] <= deadline_ms]
    if energy_mj is not None:
        lean = [r for r in fast if r["energy_mj"] is not None and r["energy_mj"] <= energy_mj]
        if not lean:
            withe = [r for r in fast if r["energy_mj"] is not None]
            if not withe:
                return f"--energy-mj {energy_mj:g}: no candidate within the deadline has an energy figure"
            least = min(withe, key=lambda r: r["energy_mj"])
            return (f"--deadline-ms {deadline_ms:g} with --energy-mj {energy_mj:g}: no candidate meets both (within the "
                    f"deadline the least energy is {least['energy_mj']:.4g} mJ, {least['candidate_id']}@{least['threads']}t)")
        fast = lean
    best = max(fast, key=lambda r: r["accuracy"])
    return (f"--min-accuracy {min_accuracy:g} with the other budgets: no candidate meets them all (the most accurate "
            f"within them is {best['candidate_id']}@{best['threads']}t at {best['accuracy']:.4g})")


# ------------------------------------------------------------------ --verify
def verify(best: Option, camp: Campaign, background_load: int, runs: int, log) -> dict:
    """Build the proposed configuration, measure it on the campaign's target (local), compare."""
    if camp.target != "local":
        raise BadInput(f"--verify measures on the local machine; the campaign's target is {camp.target!r}")
    work = Path(tempfile.mkdtemp(prefix="edge-select-"))
    zoo = work / "zoo"
    build = [sys.executable, "-m", "harness.zoo", "build", "--family", "digits-compressed", "--only",
             best.candidate_id, "--out", str(zoo)]
    log("verify: " + shlex.join(build))
    p = subprocess.run(build, capture_output=True, text=True)
    if p.returncode != 0:
        raise BadInput(f"--verify: the build failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
    coll = [sys.executable, "-m", "harness.collect", "--zoo", str(zoo), "--out", str(work / "runs"), "--threads",
            str(best.threads), "--background-load", str(background_load), "--runs", str(runs), "--no-report", "-q"]
    log("verify: " + shlex.join(coll))
    p = subprocess.run(coll, capture_output=True, text=True)
    if p.returncode != 0:
        raise BadInput(f"--verify: measuring failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
    (run_dir,) = [d for d in (work / "runs").iterdir() if d.is_dir()]
    got = options(load_campaign(run_dir), background_load, best.threads)[0]
    measured = {"latency_ms_median": float(np.median(got.samples)), "energy_mj": got.energy_mj,
                "accuracy": got.accuracy}
    predicted = {"latency_ms_median": float(np.median(best.samples)), "energy_mj": best.energy_mj,
                 "accuracy": best.accuracy_pred if best.accuracy_pred is not None else best.accuracy}
    return {"candidate_id": best.candidate_id, "predicted": predicted, "measured": measured, "zoo": str(zoo),
            "campaign": str(run_dir), "latency_error": measured["latency_ms_median"] / predicted["latency_ms_median"] - 1,
            "accuracy_error_points": 100 * (measured["accuracy"] - predicted["accuracy"])}


# ------------------------------------------------------------------ the command line
def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m simulator.select", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", type=Path, help="run folder of harness.collect (default: the newest under ./runs/)")
    ap.add_argument("--target", help="the campaign's target (default: its only one)")
    ap.add_argument("--deadline-ms", type=number("--deadline-ms", 0, strict=True),
                    help="latency budget: a candidate meets it when its median latency is within it; its samples "
                         "past it count as misses in its QoE (default: the median of the candidates' medians in the "
                         "context, a real trade-off, as the report's)")
    ap.add_argument("--energy-mj", type=number("--energy-mj", 0, strict=True),
                    help="energy budget per inference, mJ (default: none)")
    ap.add_argument("--min-accuracy", type=number("--min-accuracy", 0), help="accuracy floor, 0-1 (default: none)")
    ap.add_argument("--threads", type=number("--threads", 1, int), help="only choices at these threads (default: all)")
    ap.add_argument("--background-load", type=number("--background-load", 0, int), default=0,
                    help="the context: busy processes beside the model, a level the campaign measured (default 0)")
    qo = ap.add_mutually_exclusive_group()
    qo.add_argument("--qoe", type=Path, help="YAML of QoE weights (default: simulator.metrics.QoE's)")
    qo.add_argument("--user", help="a simulated user's QoE (accuracy-first, deadline-strict, battery-saver, or a file)")
    ap.add_argument("--device-samples", type=Path, metavar="CSV",
                    help="a device not in the campaign: candidate_id,latency_ms rows measured on it (a few)")
    ap.add_argument("--belief-model", type=Path, metavar="DIR",
                    help="rank by a trained latency predictor's figures (python -m predictors.train --out DIR) instead "
                         "of the measured medians; the samples give only the spread")
    ap.add_argument("--expect-sha256", help="with --belief-model: refuse the model file unless its sha256 is this")
    ap.add_argument("--zoo", type=Path, action="append",
                    help="with --belief-model: zoo dir holding the campaign's model files (repeatable; default: the "
                         "bundled zoo)")
    ap.add_argument("--design", action="store_true",
                    help="also rank digits-compressed configurations not built yet, predicted by knob models")
    ap.add_argument("--verify", action="store_true",
                    help="with --design: build the best configuration, measure it here, print predicted vs measured")
    ap.add_argument("--verify-runs", type=number("--verify-runs", 1, int), default=200,
                    help="timed runs when verifying (default 200)")
    ap.add_argument("--top", type=number("--top", 1, int), default=10, help="rows of the ranking printed (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    ap.add_argument("--json", type=Path, help="also write the answer here as JSON")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run(lambda: _main(args))


def _fmt(r: dict) -> str:
    e = "-" if r["energy_mj"] is None else f"{r['energy_mj']:.4g}"
    return (f"{r['candidate_id'] + '@' + str(r['threads']) + 't':34s} {r['latency_ms_median']:9.4g} {e:>9s} "
            f"{r['accuracy']:8.4f} {r['p_late']:6.1%} {r['qoe']:8.4f}  {'yes' if r['meets'] else 'no':4s} "
            f"{r['option'].source}")


def _main(args) -> int:
    from simulator.replay import newest_campaign
    if args.min_accuracy is not None and args.min_accuracy > 1:
        raise BadInput(f"--min-accuracy {args.min_accuracy:g}: accuracy is a share, 0 to 1")
    if args.verify and not args.design:
        raise BadInput("--verify checks a --design proposal: add --design")
    camp = load_campaign(args.campaign or newest_campaign(), args.target)
    qoe = load_user(args.user) if args.user else load_qoe(args.qoe)
    opts = options(camp, args.background_load, args.threads)
    world = f"campaign {camp.campaign_id} on {camp.target} ({camp.runtime}), background load {args.background_load}"
    info: dict = {"campaign": str(camp.run_dir), "target": camp.target, "belief": "measured samples " + world}
    if args.belief_model and args.device_samples:
        raise BadInput("--belief-model and --device-samples are two beliefs: give one")
    if args.belief_model:
        from harness.zoo.manifest import BUNDLED
        opts, bm = from_model(opts, camp, args.background_load, args.belief_model, args.zoo or [BUNDLED],
                              args.expect_sha256)
        info["belief"] = (f"{bm['level']}-level predictor {args.belief_model} ({bm['target']}, sha256 "
                          f"{str(bm['sha256'])[:12]}, grouped-CV error {math.expm1(bm['sigma_log']):.1%}) for the "
                          f"latency of each candidate in {world}; the measured samples give only the spread")
        info["belief_model"] = bm
    if args.device_samples:
        opts, tr = transfer(opts, read_device_samples(args.device_samples), args.device_samples)
        info["belief"] = (f"{world}, moved to the device of {args.device_samples} by log y = {tr['a']:.3f} + "
                          f"{tr['b']:.3f} log x fitted on {tr['samples']} candidate(s) measured there; energy moved with latency "
                          f"(the campaign device's power: an estimate)")
        info["transfer"] = tr
    if args.deadline_ms is None:
        args.deadline_ms = float(np.median([np.median(o.samples) for o in opts]))
        info["deadline"] = "the default: the median of the candidates' medians in this context"
    all_rows = ranked(opts, args.deadline_ms, qoe, args.energy_mj, args.min_accuracy)
    if not all_rows[0]["meets"]:
        raise BadInput(unreachable(all_rows, args.deadline_ms, args.energy_mj, args.min_accuracy))
    if args.design:
        th = all_rows[0]["threads"]
        at_th = [o for o in opts if o.threads == th]
        models = knob_models(at_th)
        new = designs(at_th, models, th)
        info["design"] = {k: v for k, v in models.items() if not k.startswith("w_")}
        opts = opts + new
        all_rows = ranked(opts, args.deadline_ms, qoe, args.energy_mj, args.min_accuracy)
    built = [o for o in opts if o.source != "predicted"]
    conf = confidence(built, args.deadline_ms, qoe, args.energy_mj, args.min_accuracy, args.seed)
    best = next(r for r in all_rows if r["option"].source != "predicted")     # what can run now
    proposal = next((r for r in all_rows if r["option"].source == "predicted" and r["meets"]), None)
    print(f"belief: {info['belief']}")
    for k in ("transfer", "belief_model"):
        if info.get(k, {}).get("note"):
            print(f"note: {info[k]['note']}")
    energy_src = camp.energy_source + (" (an ESTIMATE from the profile's power model)"
                                       if camp.energy_source.startswith("estimate") else "")
    budget = f"median latency <= {args.deadline_ms:.4g} ms" + (f" ({info['deadline']})" if "deadline" in info else "")
    if args.energy_mj:
        budget += f", energy <= {args.energy_mj:g} mJ"
    if args.min_accuracy is not None:
        budget += f", accuracy >= {args.min_accuracy:g}"
    print(f"budget: {budget}; QoE {'of user ' + args.user if args.user else 'weights'} {qoe.as_dict()}; "
          f"energy: {energy_src}")
    if args.design:
        d = info["design"]
        print(f"design: knob models ({d['form_lat']} in log latency, {d['form_acc']} in accuracy) fitted on "
              f"{d['n']} measured candidates of {d['architectures']} architectures; "
              f"leave-one-architecture-out error: latency {math.expm1(d['sigma_log']):.1%} (rms, log), accuracy "
              f"{100 * d['acc_mae']:.1f} points (mean absolute); energy = latency x {d['mj_per_ms'] or float('nan'):.4g} "
              f"mJ/ms (the measured candidates' median ratio)")
    print(f"\n{'choice':34s} {'median ms':>9s} {'mJ':>9s} {'accuracy':>8s} {'late':>6s} {'QoE':>8s}  meets source")
    for r in all_rows[: args.top]:
        print(_fmt(r))
    n_meet = sum(r["meets"] for r in all_rows)
    print(f"\nrun {best['candidate_id']} at {best['threads']} thread(s): expected QoE {best['qoe']:.4f}, "
          f"{best['p_late']:.1%} late; {n_meet} of {len(all_rows)} choices meet the budget; rank confidence "
          f"{conf:.0%} (the first stays first in {conf:.0%} of {BOOTSTRAP} bootstrap draws of the built ones)")
    front = pareto(all_rows)
    print("Pareto set (latency, energy, accuracy; * predicted, not built): "
          + ", ".join(f"{r['candidate_id']}@{r['threads']}t" + ("*" if r["option"].source == "predicted" else "")
                      for r in front))
    if args.design and proposal is None:
        print("design: every configuration of the space is built" if not any(o.source == "predicted" for o in opts)
              else "design: no configuration that is not built yet is predicted to meet the budget")
    elif args.design:
        o = proposal["option"]
        cmd = f"python -m harness.zoo build --family digits-compressed --only {o.candidate_id} --out zoo/proposed"
        beats = proposal["qoe"] > best["qoe"]
        print(f"best not built yet: {o.candidate_id}, predicted median {np.median(o.samples):.4g} ms "
              f"(+-{math.expm1(o.sigma_log):.0%}), accuracy {o.accuracy_pred:.4f} (+-{o.accuracy_err:.3f}), expected "
              f"QoE {proposal['qoe']:.4f} at its accuracy's lower bound: "
              + ("predicted to beat the recommendation; build it and measure (--verify): " if beats else
                 "not predicted to beat the recommendation; to try it anyway: ") + cmd)
        info["proposal"] = {"candidate_id": o.candidate_id, "beats_recommendation": beats, "build_command": cmd}
    ver = None
    if args.verify:
        if proposal is None:
            print("verify: no configuration that is not built yet meets the budget; nothing to verify")
        else:
            ver = verify(proposal["option"], camp, args.background_load, args.verify_runs,
                         lambda m: print(m, file=sys.stderr, flush=True))
            p, m = ver["predicted"], ver["measured"]
            print(f"verify {ver['candidate_id']}: median latency predicted {p['latency_ms_median']:.4g} ms, measured "
                  f"{m['latency_ms_median']:.4g} ms ({ver['latency_error']:+.1%}); accuracy predicted "
                  f"{p['accuracy']:.4f}, measured {m['accuracy']:.4f} ({ver['accuracy_error_points']:+.1f} points); "
                  f"energy predicted {p['energy_mj'] or float('nan'):.4g} mJ, measured {m['energy_mj'] or float('nan'):.4g} mJ "
                  f"({energy_src})")
    if args.json:
        doc = {**info, "deadline_ms": args.deadline_ms, "energy_mj": args.energy_mj, "min_accuracy": args.min_accuracy,
               "background_load": args.background_load, "qoe": qoe.as_dict(), "confidence": conf,
               "ranking": [{k: v for k, v in r.items() if k not in ("samples", "option")} | {"source": r["option"].source}
                           for r in all_rows],
               "pareto": [f"{r['candidate_id']}@{r['threads']}t" for r in front], "verify": ver,
               "recommendation": f"{best['candidate_id']}@{best['threads']}t"}
        args.json.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
