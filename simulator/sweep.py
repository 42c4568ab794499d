"""python -m simulator.sweep: grids of replays (campaigns x traces x deadlines x rates x users x
seeds, every listed policy plus the oracle and static-belief in each cell) on Dask, from one file.

    python -m simulator.sweep simulator/examples/sweep.yaml --dry-run
    python -m simulator.sweep simulator/examples/sweep.yaml --out runs/sweep      # LocalCluster
    python -m simulator.sweep SWEEP.yaml --scheduler serial                        # in this process
    python -m simulator.sweep SWEEP.yaml --scheduler tcp://10.0.0.5:8786 --out /shared/sweep   # a cluster
    python -m simulator.sweep SWEEP.yaml --out runs/sweep --resume                 # only the missing cells

OUT is one Parquet dataset (a file per cell, ``pandas.read_parquet(OUT)`` reads it whole) of
summary rows, one per cell x policy; beside it ``_sweep.yaml`` (the file run), ``_versions.json``
and, with ``steps: true``, ``_steps/<cell>.parquet``. A cell's world seed derives from its key
(campaign, trace, deadline, rate, user, seed), so results do not depend on the scheduler, the
number of workers or the order cells run in. A cell that raises is recorded with its error and
the sweep goes on. With a cluster by address, OUT and the campaigns and traces must be on a
filesystem the workers share (same paths).
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness import __version__
from harness.errors import BadInput, HarnessError

AXES = ("campaigns", "traces", "policies", "deadlines_ms", "rates_hz", "users", "seeds")
OPTIONS = ("decide_every_s", "load_column", "battery_wh", "steps", "batch")
REFERENCES = ("oracle", "static-belief")


@dataclass(frozen=True)
class Cell:
    campaign: str
    trace: str
    deadline_ms: float | None      # None: the campaign's default
    rate_hz: float
    user: str | None
    seed: int

    @property
    def key(self) -> str:
        return json.dumps([self.campaign, self.trace, self.deadline_ms, self.rate_hz, self.user, self.seed])

    @property
    def id(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:16]

    @property
    def world_seed(self) -> int:
        return int(hashlib.sha256(("world" + self.key).encode()).hexdigest()[:8], 16)


# ---------------------------------------------------------------- the sweep file

def _list(doc: dict, field: str, path: Path, kind, default=None) -> list:
    v = doc.get(field, default)
    if v is None:
        raise BadInput(f"{path}: {field}: required (a list)")
    if not isinstance(v, list) or not v:
        raise BadInput(f"{path}: {field}: expected a non-empty list, got {v!r}")
    for x in v:
        if not kind(x):
            raise BadInput(f"{path}: {field}: {x!r} is not {kind.__doc__}")
    return v


def _is_str(x):
    """a string"""
    return isinstance(x, str) and x.strip() != ""


def _is_deadline(x):
    """'default' or a number of ms > 0"""
    return x == "default" or (isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0)


def _is_rate(x):
    """a number of requests per second > 0"""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0


def _is_user(x):
    """'none', a shipped user's name, or a YAML file of QoE weights"""
    return isinstance(x, str) and x.strip() != ""


def _is_seed(x):
    """a whole number"""
    return isinstance(x, int) and not isinstance(x, bool)


def load_sweep(path: Path, runs: Path = Path("runs")) -> tuple[dict, list[Cell], list[str]]:
    """(the file, its cells, the policies each cell runs), every field checked."""
    from harness.inventory import load_yaml
    from simulator import policies as pol
    from simulator.metrics import USERS, users
    from simulator.replay import newest_campaign
    from simulator.traces import shipped_traces
    doc = load_yaml(path)      # one line naming file:line:column; a key given twice is an error
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: expected a mapping with {', '.join(AXES)}")
    unknown = set(doc) - set(AXES) - {"options"}
    if unknown:
        raise BadInput(f"{path}: {sorted(unknown)[0]}: not a sweep field (known: {', '.join(AXES)}, options)")
    opts = doc.get("options") or {}
    if not isinstance(opts, dict) or set(opts) - set(OPTIONS):
        raise BadInput(f"{path}: options: expected a mapping of {', '.join(OPTIONS)}")
    base = path.resolve().parent
    camps = []
    for c in _list(doc, "campaigns", path, _is_str):
        if c == "newest":
            camps.append(str(newest_campaign(runs).resolve()))
            continue
        p = Path(c) if Path(c).is_absolute() else (Path.cwd() / c)
        if not (p / "campaign.sqlite").is_file():
            raise BadInput(f"{path}: campaigns: {c}: no campaign.sqlite there")
        camps.append(str(p.resolve()))
    traces = []
    for t in _list(doc, "traces", path, _is_str):
        if t == "shipped":
            traces += [str(p) for p in shipped_traces()]
            continue
        p = Path(t) if Path(t).is_absolute() else (Path.cwd() / t)
        if p.is_dir():
            traces += [str(x.resolve()) for x in sorted(p.glob("*.csv"))]
        elif p.is_file():
            traces.append(str(p.resolve()))
        else:
            raise BadInput(f"{path}: traces: {t}: no such file or folder")
    if not traces:
        raise BadInput(f"{path}: traces: no .csv trace found")
    names = _list(doc, "policies", path, _is_str)
    names = list(pol.REGISTRY) if names == ["all"] else names
    bad = [n for n in names if n not in pol.REGISTRY]
    if bad:
        raise BadInput(f"{path}: policies: unknown {', '.join(bad)} (known: {', '.join(pol.REGISTRY)}, all)")
    names = list(dict.fromkeys(list(REFERENCES) + names))
    deadlines = [None if d == "default" else float(d) for d in _list(doc, "deadlines_ms", path, _is_deadline, ["default"])]
    rates = [float(r) for r in _list(doc, "rates_hz", path, _is_rate, [10.0])]
    us = []
    for u in _list(doc, "users", path, _is_user, ["none"]):
        if u == "none":
            us.append(None)
        elif (USERS / f"{u}.yaml").is_file():
            us.append(u)
        elif (base / u).is_file() or Path(u).is_file():
            us.append(str((base / u) if (base / u).is_file() else Path(u).resolve()))
        else:
            raise BadInput(f"{path}: users: {u!r} is neither a shipped user ({', '.join(users())}) nor a file")
    seeds = _list(doc, "seeds", path, _is_seed, [0])
    for k, kind in (("decide_every_s", _is_rate), ("battery_wh", _is_rate)):
        if opts.get(k) is not None and not kind(opts[k]):
            raise BadInput(f"{path}: options.{k}: expected {kind.__doc__}, got {opts[k]!r}")
    if "batch" in opts and not (isinstance(opts["batch"], int) and opts["batch"] >= 1):
        raise BadInput(f"{path}: options.batch: expected a whole number >= 1, got {opts['batch']!r}")
    cells = [Cell(*x) for x in itertools.product(camps, traces, deadlines, rates, us, seeds)]
    if len({c.id for c in cells}) != len(cells):
        raise BadInput(f"{path}: two cells are the same (a value repeated in an axis)")
    return {**doc, "options": opts}, cells, names


# ---------------------------------------------------------------- running a cell

@lru_cache(maxsize=16)
def _campaign(path: str):
    """Loaded once per worker process (a cache, not shipped with every task)."""
    from simulator.world import load_campaign
    return load_campaign(path)


@lru_cache(maxsize=256)
def _trace(path: str):
    from simulator.traces import read_trace
    return read_trace(path)


@lru_cache(maxsize=16)
def _belief(path: str):
    from simulator import belief
    return belief.from_samples(_campaign(path), "even")


def run_cell(cell: Cell, names: list[str], opts: dict, steps_dir: str | None = None) -> list[dict]:
    """One replay of one cell with every policy: its summary rows (an ``error`` row if it raised)."""
    from threadpoolctl import threadpool_limits
    base = {"cell": cell.id, "campaign": Path(cell.campaign).name, "trace": Path(cell.trace).stem,
            "deadline_arg": "default" if cell.deadline_ms is None else cell.deadline_ms, "rate_hz": cell.rate_hz,
            "user": cell.user or "none", "seed": cell.seed}
    try:
        with threadpool_limits(1):    # one BLAS thread per worker: the workers are the parallelism
            from simulator import replay as rp
            from simulator.metrics import load_user
            camp = _campaign(cell.campaign)
            sc = rp.Scenario(deadline_ms=cell.deadline_ms or rp.default_deadline_ms(camp), rate_hz=cell.rate_hz,
                             decide_every_s=float(opts.get("decide_every_s") or 1.0), load_column=opts.get("load_column"),
                             seed=cell.world_seed, battery_wh=opts.get("battery_wh"),
                             qoe=load_user(cell.user) if cell.user else rp.QoE(), user=cell.user)
            rows, steps, _ = rp.replay(camp, [_trace(cell.trace)], names, sc, belief=_belief(cell.campaign))
            if steps_dir:
                rp.write_steps(Path(steps_dir) / f"{cell.id}.parquet", camp, steps, sc.deadline_ms)
    except Exception as e:   # recorded, and the sweep goes on
        return [{**base, "policy": None, "error": f"{type(e).__name__}: {e}"}]
    out = []
    for r in rows:
        r = {k: v for k, v in r.items() if k not in ("trace", "rate_hz", "seed", "user")}
        out.append({**base, **r, "world_seed": cell.world_seed, "error": None})
    return out


def _warm() -> None:
    import pyarrow.parquet  # noqa: F401
    import threadpoolctl  # noqa: F401

    import simulator.replay  # noqa: F401


def run_batch(cells: list[Cell], names: list[str], opts: dict, out: str, steps_dir: str | None) -> list[str]:
    """A task: several cells, each written to OUT/part-<cell>.parquet as it finishes."""
    done = []
    for c in cells:
        write_cell(Path(out), c, run_cell(c, names, opts, steps_dir))
        done.append(c.id)
    return done


COLUMNS = ("cell", "campaign", "trace", "deadline_arg", "deadline_ms", "rate_hz", "user", "seed", "world_seed", "policy",
           "qoe_mean", "qoe_vs_oracle", "gap_closed", "accuracy_mean", "miss_rate", "latency_ms_p50", "latency_ms_p95",
           "energy_j", "battery_end_pct", "battery_empty_s", "switches", "requests", "outside_grid_frac", "held_frac",
           "world", "belief", "oracle_exact", "error", "decision_us_median", "decision_us_p99", "decision_us_max",
           "wall_plan_s", "wall_s")


def write_cell(out: Path, cell: Cell, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    str_cols = {"cell", "campaign", "trace", "deadline_arg", "user", "policy", "world", "belief", "error"}
    fields = [pa.field(c, pa.string() if c in str_cols else pa.bool_() if c == "oracle_exact" else
                       pa.int64() if c in ("seed", "world_seed", "switches", "requests") else pa.float64())
              for c in COLUMNS]
    data = {c: [(None if r.get(c) is None else str(r[c]) if c in str_cols else r.get(c)) for r in rows] for c in COLUMNS}
    tab = pa.table(data, schema=pa.schema(fields))
    tmp = out / f".part-{cell.id}.parquet.tmp"
    pq.write_table(tab, tmp)
    tmp.replace(out / f"part-{cell.id}.parquet")


# ---------------------------------------------------------------- the sweep

def versions() -> dict:
    import dask
    import distributed
    import numpy
    import pyarrow
    return {"harness": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__, "dask": dask.__version__, "distributed": distributed.__version__}


def sweep(path: Path, out: Path, scheduler: str = "local", workers: int | None = None, resume: bool = False,
          log=lambda m: None) -> dict:
    doc, cells, names = load_sweep(path)
    opts = doc["options"]
    if out.exists() and any(out.glob("part-*.parquet")) and not resume:
        raise BadInput(f"{out}: holds a sweep already: --resume to complete it, or another --out")
    out.mkdir(parents=True, exist_ok=True)
    prev = out / "_sweep.yaml"
    if resume and prev.exists() and prev.read_text() != path.read_text():
        raise BadInput(f"{out}: was swept with another file ({prev}); --resume needs the same one")
    prev.write_text(path.read_text())
    (out / "_versions.json").write_text(json.dumps(versions(), indent=1) + "\n")
    steps_dir = None
    if opts.get("steps"):
        steps_dir = out / "_steps"
        steps_dir.mkdir(exist_ok=True)
    have = {p.name[len("part-"):-len(".parquet")] for p in out.glob("part-*.parquet")}
    todo = [c for c in cells if c.id not in have]
    log(f"sweep: {len(cells)} cells x {len(names)} policies; {len(cells) - len(todo)} done, {len(todo)} to run "
        f"({scheduler})")
    batch = int(opts.get("batch") or 1)
    batches = [todo[i:i + batch] for i in range(0, len(todo), batch)]
    t0 = time.perf_counter()
    done = 0
    startup_s = 0.0      # a cluster's start-up and warm-up, outside the cells' clock

    def progress(n):
        nonlocal done
        done += n
        el = time.perf_counter() - t0
        rate = done / el if el > 0 else 0.0
        eta = (len(todo) - done) / rate if rate > 0 else float("nan")
        log(f"  {done}/{len(todo)} cells, {rate:.1f} cells/s, ETA {eta:.0f} s")
    if scheduler == "serial":
        for b in batches:
            progress(len(run_batch(b, names, opts, str(out), str(steps_dir) if steps_dir else None)))
    else:
        from distributed import Client, LocalCluster, as_completed
        cluster = None
        t_start = time.perf_counter()
        if scheduler == "local":
            import dask
            n = workers or os.cpu_count() or 1
            # Dask's workers return freed memory to the OS at 64 kB (MALLOC_TRIM_THRESHOLD_): a replay
            # allocates arrays of requests x choices per trace, and faulting them in again cost the
            # workers a third more CPU than the same cells in one process (bench/sweep_speed.py)
            # and each worker's statistical profiler takes the GIL from the computing thread every 10 ms
            dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": str(1 << 30),
                             "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": str(1 << 30),
                             "distributed.worker.profile.enabled": False})
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   host="127.0.0.1")
            client = Client(cluster)
        else:
            client = Client(scheduler, timeout="30s")
        client.run(_warm)     # imports in every worker, before the clock of the cells starts
        startup_s = time.perf_counter() - t_start
        t0 = time.perf_counter()
        try:
            futs = [client.submit(run_batch, b, names, opts, str(out), str(steps_dir) if steps_dir else None,
                                  key=f"sweep-{b[0].id}", pure=False, retries=1) for b in batches]
            for f in as_completed(futs):
                progress(len(f.result()))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    wall = time.perf_counter() - t0
    return {"cells": len(cells), "ran": len(todo), "wall_s": wall, "out": str(out),
            "startup_s": startup_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulator.sweep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", type=Path, help="the sweep file (YAML: campaigns, traces, policies, deadlines_ms, rates_hz, "
                                             "users, seeds, options)")
    ap.add_argument("--out", type=Path, help="output dataset folder (default: runs/sweep-<file stem>)")
    ap.add_argument("--scheduler", default="local",
                    help="local (a Dask LocalCluster, default), serial (in this process), or tcp://HOST:PORT")
    ap.add_argument("--workers", type=int, help="LocalCluster workers (default: one per CPU)")
    ap.add_argument("--resume", action="store_true", help="compute only the cells OUT is missing")
    ap.add_argument("--dry-run", action="store_true", help="print the cells and their count, run nothing")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        if args.workers is not None and args.workers < 1:
            raise BadInput(f"--workers: expected a whole number >= 1, got {args.workers}")
        if args.scheduler not in ("local", "serial") and "://" not in args.scheduler:
            raise BadInput(f"--scheduler: expected local, serial or tcp://HOST:PORT, got {args.scheduler!r}")
        if args.dry_run:
            _, cells, names = load_sweep(args.sweep)
            for c in cells:
                print(f"{c.id}  {Path(c.campaign).name}  {Path(c.trace).stem}  deadline={c.deadline_ms or 'default'}  "
                      f"rate={c.rate_hz:g}  user={c.user or 'none'}  seed={c.seed}")
            print(f"{len(cells)} cells x {len(names)} policies ({', '.join(names)})")
            return 0
        out = args.out or Path("runs") / f"sweep-{args.sweep.stem}"
        res = sweep(args.sweep, out, args.scheduler, args.workers, args.resume, log)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import pyarrow.parquet as pq
    tab = pq.read_table(out).to_pandas()
    errs = tab[tab["error"].notna()]
    print(f"{res['cells']} cells ({res['ran']} run now, {res['wall_s']:.1f} s) -> {out}/  "
          f"({len(tab)} rows; pandas.read_parquet({str(out)!r}))")
    if len(errs):
        print(f"{errs['cell'].nunique()} cell(s) failed, e.g. {errs.iloc[0]['trace']}: {errs.iloc[0]['error']}")
    ok = tab[tab["error"].isna()]
    if len(ok):
        g = ok.groupby("policy")[["qoe_vs_oracle", "gap_closed", "miss_rate"]].mean().sort_values("qoe_vs_oracle",
                                                                                                ascending=False)
        print(g.to_string(float_format=lambda x: f"{x:.3f}"))
    return 1 if len(errs) else 0


if __name__ == "__main__":
    sys.exit(main())
