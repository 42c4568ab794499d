"""The world: the truth a policy is scored against, from a campaign's raw measured samples.

A *choice* is (candidate, threads). A *context cell* is a background-load level the campaign
measured. Interpolation rule (stated in every summary): the trace's ``cpu_load_pct`` is the share
of all CPUs other apps keep busy, so ``cpu_load_pct / 100 x the target's CPU count`` busy CPUs
(a ``background_load`` column is busy processes already); between two measured levels a latency
is the same quantile of both cells' samples, mixed linearly by position; beyond the measured
levels it is the nearest level's, and the step is flagged ``outside_grid``. A CPU frequency
column (``cpu_freq_mhz_mean``) scales compute time by campaign frequency / trace frequency when
the campaign recorded its frequency; otherwise it is listed as not played.

Common random numbers: one uniform draw per (request, choice) from a stream seeded by the seed
and the trace, the same whichever policies run, so every policy is scored on the same draws.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import BadInput
from simulator.traces import Trace

OUTSIDE_TOL = 0.1          # busy CPUs beyond the measured levels before a step is flagged
LOAD_COLUMNS = ("cpu_load_pct", "background_load")


@dataclass(frozen=True)
class Campaign:
    """What a campaign folder holds for one target, read once."""
    run_dir: Path
    campaign_id: str
    target: str
    profile: str
    cpu_count: int
    runtime: str
    choices: tuple[tuple[str, int], ...]
    accuracy: np.ndarray                  # [C]
    levels: np.ndarray                    # [L] background-load levels measured
    samples: tuple[tuple[np.ndarray, ...], ...]   # [C][L] timed samples, ms, in measured order
    energy_mj: np.ndarray                 # [C, L] per inference (nan: none)
    energy_source: str
    switch_ms: np.ndarray                 # [C] load + first inference (median over levels)
    battery_wh: float | None
    freq_mhz: float | None
    notes: tuple[str, ...] = ()
    knobs: tuple[dict, ...] = ()          # [C] the zoo's compression knobs of each choice, and its threads
    first_ms: np.ndarray | None = None    # [C] the first inference's part of switch_ms (median over levels)

    @property
    def labels(self) -> list[str]:
        return [f"{c}@{t}t" for c, t in self.choices]


def _open_store(run_dir: Path):
    from harness.store import Store
    db = run_dir / "campaign.sqlite"
    if not db.is_file():
        raise BadInput(f"{run_dir}: no campaign.sqlite (a run folder of python -m harness.collect)")
    try:
        return Store(db)     # refuses, and leaves alone, a file that is not SQLite
    except BadInput:
        raise
    except Exception as e:   # a damaged store: one line, nothing rewritten
        raise BadInput(f"{db}: unreadable ({type(e).__name__}: {e})") from None


def load_campaign(run_dir: str | Path, target: str | None = None) -> Campaign:
    run_dir = Path(run_dir)
    store = _open_store(run_dir)
    try:
        ids = store.campaign_ids()
        if not ids:
            raise BadInput(f"{run_dir}/campaign.sqlite: no campaign in it")
        cid = ids[0]
        targets = store.targets(cid)
        rows = [r for r in store.rows(cid) if r["status"] == "ok" and r["n_runs"]]
        names = sorted({r["target"] for r in rows})
        if not rows:
            raise BadInput(f"{run_dir}: campaign {cid} has no ok jobs with samples")
        if target is None:
            if len(names) > 1:
                raise BadInput(f"{run_dir}: campaign {cid} measured several targets ({', '.join(names)}): give --target")
            target = names[0]
        elif target not in names:
            raise BadInput(f"--target: campaign {cid} has no ok jobs on {target!r} (it has: {', '.join(names)})")
        rows = [r for r in rows if r["target"] == target]
        raw = store.raw_samples(cid)
        cands = {c["candidate_id"]: c for c in store.candidates(cid)}
        tinfo = next(t for t in targets if t["name"] == target)
        freqs = []   # each ok job's mean CPU frequency before it ran, where the device exposed one
        for (d,) in store.db.execute(
                "SELECT c.data FROM contexts c JOIN jobs j ON j.id=c.job_id WHERE j.campaign_id=? AND j.target=? "
                "AND j.status='ok' AND c.phase='before'", (cid, target)):
            f = json.loads(d).get("cpu_freq_mhz") or {}
            if f:
                freqs.append(float(np.mean(list(f.values()))))
    finally:
        store.close()
    notes = []
    levels = np.array(sorted({int(r["background_load"]) for r in rows}))
    by = {(r["candidate_id"], int(r["threads"]), int(r["background_load"])): r for r in rows}
    choices, acc, samples, energy, switch, knobs, first = [], [], [], [], [], [], []
    no_acc = sorted({c for c, _, _ in by if cands.get(c, {}).get("accuracy") is None})
    if no_acc:
        notes.append(f"left out (no accuracy in the zoo manifest): {', '.join(no_acc)}")
    incomplete = []
    for c, th in sorted({(c, t) for c, t, _ in by}):
        if c in no_acc:
            continue
        if not all((c, th, int(b)) in by for b in levels):
            incomplete.append(f"{c}@{th}t")
            continue
        choices.append((c, th))
        knobs.append({**(cands[c].get("knobs") or {}), "threads": th})
        acc.append(float(cands[c]["accuracy"]))
        samples.append(tuple(np.asarray(raw[(target, c, th, int(b))], float) for b in levels))
        energy.append([by[(c, th, int(b))]["energy_mj"] if by[(c, th, int(b))]["energy_mj"] is not None else np.nan
                       for b in levels])
        sw = [(by[(c, th, int(b))]["load_ms"] or 0.0) + (by[(c, th, int(b))]["first_inference_ms"] or 0.0) for b in levels]
        switch.append(float(np.median(sw)))
        first.append(float(np.median([by[(c, th, int(b))]["first_inference_ms"] or 0.0 for b in levels])))
    if incomplete:
        notes.append(f"left out (not measured at every background level {levels.tolist()}): {', '.join(incomplete)}")
    if not choices:
        raise BadInput(f"{run_dir}: no candidate of campaign {cid} on {target} has accuracy and samples at every "
                       f"background level")
    sources = sorted({r["energy_source"] for r in rows if r["energy_source"] not in (None, "none")})
    battery = None
    try:
        from harness.inventory import load_profile
        battery = load_profile(tinfo["profile"]).facts.get("battery_wh")
    except Exception:   # a profile renamed since the campaign: no battery unless --battery-wh
        notes.append(f"device profile {tinfo['profile']!r} not found: no battery capacity from it")
    return Campaign(run_dir, cid, target, tinfo["profile"], int((tinfo.get("info") or {}).get("cpu_count") or 1),
                    f"{rows[0]['runtime']} {rows[0]['runtime_version']}", tuple(choices), np.asarray(acc),
                    levels, tuple(samples), np.asarray(energy, float), ",".join(sources) or "none",
                    np.asarray(switch), battery, float(np.median(freqs)) if freqs else None, tuple(notes), tuple(knobs),
                    np.asarray(first))


class SampleTable:
    """Sorted samples per (choice, level), padded, for vectorized quantile look-ups."""

    def __init__(self, samples: list[list[np.ndarray]]):
        C, L = len(samples), len(samples[0])
        self.n = np.array([[len(samples[c][l]) for l in range(L)] for c in range(C)])
        if (self.n == 0).any():
            raise BadInput("a (choice, level) cell has no samples left after the world/belief split")
        self.s = np.full((C, L, int(self.n.max())), np.nan)
        for c in range(C):
            for l in range(L):
                self.s[c, l, : self.n[c, l]] = np.sort(samples[c][l])

    def at(self, u: np.ndarray, lo: np.ndarray, hi: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Quantile ``u`` [N, C] of every choice, mixed between levels lo and hi [N] by w [N]."""
        C, L, m = self.s.shape
        flat = self.s.reshape(-1)
        cells = (np.arange(C) * L)[None, :]
        nT = self.n.T                              # [L, C]: row gathers below stay contiguous

        def pick(level):
            n = nT[level]                          # [N, C]
            i = (u * n).astype(np.intp)
            np.minimum(i, n - 1, out=i)
            i += (cells + level[:, None]) * m
            return flat[i]
        a = pick(lo)
        if (w > 0).any():
            b = pick(hi)
            b -= a
            b *= w[:, None]
            a += b
        return a

    def quantiles(self, qs: np.ndarray) -> np.ndarray:
        """[C, L, len(qs)] empirical quantiles (linear), for belief tables."""
        C, L, _ = self.s.shape
        out = np.empty((C, L, len(qs)))
        for c in range(C):
            for l in range(L):
                out[c, l] = np.quantile(self.s[c, l, : self.n[c, l]], qs)
        return out


def split_half(samples: np.ndarray, which: str) -> np.ndarray:
    """The world's or the belief's half of a cell's samples: alternate samples in measured order,
    so slow drift during the job falls on both halves alike."""
    if which == "all":
        return samples
    return samples[1::2] if which == "odd" else samples[0::2]


def place(busy: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, w, outside) of busy-CPU values among the measured levels."""
    L = len(levels)
    x = np.clip(busy, levels[0], levels[-1])
    hi = np.clip(np.searchsorted(levels, x, side="left"), 0, L - 1)
    lo = np.clip(hi - 1, 0, L - 1)
    exact = levels[hi] == x
    lo = np.where(exact, hi, lo)
    span = (levels[hi] - levels[lo]).astype(float)
    w = np.where(span > 0, (x - levels[lo]) / np.where(span > 0, span, 1), 0.0)
    outside = (busy > levels[-1] + OUTSIDE_TOL) | (busy < levels[0] - OUTSIDE_TOL)
    return lo, hi, w, outside


def busy_cpus(trace: Trace, column: str, cpu_count: int) -> tuple[np.ndarray, np.ndarray]:
    """(busy CPUs per trace row, held) from a load column, missing values held."""
    v, held = trace.held(column)
    if np.isnan(v).all():
        raise BadInput(f"{trace.path}: column {column} has no values")
    return (v / 100.0 * cpu_count if column == "cpu_load_pct" else v), held


def load_column(trace: Trace, want: str | None) -> str | None:
    if want:
        if want not in trace.columns:
            raise BadInput(f"--load-column: {trace.path} has no column {want!r} (it has: {', '.join(trace.columns)})")
        return want
    return next((c for c in LOAD_COLUMNS if c in trace.columns), None)


@dataclass
class Realization:
    """One trace under one seed: the requests, their context, and every choice's drawn outcome.
    Built by the replay loop for the world; a policy never sees it (the hindsight references do)."""
    trace: Trace
    t0: float
    arrivals_s: np.ndarray        # [N]
    period: np.ndarray            # [N] decision period of each request
    n_periods: int
    decide_every_s: float
    busy: np.ndarray              # [N] busy CPUs at each request
    held: np.ndarray              # [N] context value held over a gap or a missing cell
    outside: np.ndarray           # [N] beyond the measured levels
    latency_ms: np.ndarray        # [N, C] the world's draw for every choice
    energy_mj: np.ndarray         # [N, C]
    switch_ms: np.ndarray         # [C]
    switch_mj: np.ndarray         # [C]
    battery_trace_pct: np.ndarray | None   # [N] the trace's own battery level (other apps' drain), or None
    capacity_mj: float | None
    not_played: list[str] = field(default_factory=list)
    busy_rows: np.ndarray | None = None    # busy CPUs per trace row (what a policy sees of the load)
    group: np.ndarray | None = None        # [C] columns that move among themselves without a switch (one model)

    @property
    def n(self) -> int:
        return len(self.arrivals_s)

    def period_rows(self) -> np.ndarray:
        """[K, nmax] request indices per period, -1 padded."""
        counts = np.bincount(self.period, minlength=self.n_periods)
        nmax = max(1, int(counts.max()) if len(counts) else 1)
        out = np.full((self.n_periods, nmax), -1, np.int64)
        start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        col = np.arange(self.n) - start[self.period]
        out[self.period, col] = np.arange(self.n)
        return out


def arrivals(trace: Trace, rate_hz: float, rate_column: str | None) -> np.ndarray:
    """Request arrival times: every 1/rate s from the trace's start (the first at t0), or where the
    integral of a rate column (1/s, held between rows) crosses each whole number."""
    t0, t1 = float(trace.t_s[0]), float(trace.t_s[-1]) + (trace.period_s if len(trace.t_s) > 1 else 1.0)
    if rate_column is None:
        return t0 + np.arange(int(np.floor((t1 - t0) * rate_hz - 1e-9)) + 1) / rate_hz
    if rate_column not in trace.columns:
        raise BadInput(f"--rate-column: {trace.path} has no column {rate_column!r}")
    r, _ = trace.held(rate_column)
    r = np.nan_to_num(np.clip(r, 0, None))
    edges = np.append(trace.t_s, t1)
    cum = np.concatenate([[0.0], np.cumsum(r * np.diff(edges))])
    k = np.arange(int(np.floor(cum[-1])) + 1)
    return np.interp(k, cum, edges) if cum[-1] > 0 else np.array([])


def realize(camp: Campaign, world: SampleTable, trace: Trace, *, seed: int, rate_hz: float, rate_column: str | None,
            decide_every_s: float, load_col: str | None, battery_wh: float | None, energy_scale: np.ndarray | None = None,
            ) -> Realization:
    a = arrivals(trace, rate_hz, rate_column)
    N, C = len(a), len(camp.choices)
    t0 = float(trace.t_s[0])
    period = np.floor((a - t0) / decide_every_s + 1e-9).astype(np.int64)
    K = int(period.max()) + 1 if N else 1
    rows = trace.row_at(a)
    gap = trace.gap_after()
    in_gap = np.zeros(N, bool)
    if gap.any():   # past the last row before a gap by more than a period: the value is held
        in_gap = gap[rows] & (a - trace.t_s[rows] > trace.period_s * 1.0)
    not_played = []
    if load_col is None:
        b = np.zeros(len(trace.t_s))
        held = in_gap
        not_played.append("no load column (cpu_load_pct or background_load): busy CPUs 0 throughout")
    else:
        b, h = busy_cpus(trace, load_col, camp.cpu_count)
        held = h[rows] | in_gap
    busy = b[rows]
    lo, hi, w, outside = place(busy, camp.levels)
    # one stream per (seed, trace): the same draws whichever policies run
    rng = np.random.default_rng([int(seed), zlib.crc32(trace.name.encode())])
    u = rng.random((N, C))
    lat = world.at(u, lo, hi, w)
    freq = "cpu_freq_mhz_mean" if "cpu_freq_mhz_mean" in trace.columns else None
    if freq and camp.freq_mhz:
        f, _ = trace.held(freq)
        lat = lat * (camp.freq_mhz / np.maximum(f[rows], 1.0))[:, None]
    elif freq:
        not_played.append(f"{freq}: the campaign recorded no CPU frequency to scale from")
    e = np.nan_to_num(camp.energy_mj, nan=0.0)
    eT = e.T                                   # [L, C]: row gathers, contiguous
    energy = eT[lo] + w[:, None] * (eT[hi] - eT[lo])
    if energy_scale is not None:
        energy = energy * energy_scale
    # the switch's energy: the new choice's power (its energy per ms at the base level) over the load time
    base_ms = np.array([np.median(s[0]) for s in camp.samples])
    switch_mj = e[:, 0] / np.maximum(base_ms, 1e-9) * camp.switch_ms
    for c in trace.columns:
        if c not in (load_col, freq, rate_column, "battery_pct", "background_load", "cpu_load_pct"):
            not_played.append(f"{c}: no world model uses it")
    bat = None
    cap = battery_wh * 3.6e6 if battery_wh else None
    if cap and "battery_pct" in trace.columns:
        bv, _ = trace.held("battery_pct")
        bat = bv[rows]
    elif cap:
        bat = np.full(N, 100.0)
    return Realization(trace, t0, a, period, K, decide_every_s, busy, held, outside, lat, energy, camp.switch_ms,
                       switch_mj, bat, cap, not_played, busy_rows=b)


@dataclass
class ServeState:
    """What carries from one stretch of requests to the next: when the worker is free, the energy
    the policy has spent, whether the battery is empty."""
    free_ms: float = -np.inf
    spent_mj: float = 0.0
    dead: bool = False


def serve(real: Realization, i0: int, i1: int, ch: np.ndarray, switched: np.ndarray, qoe, deadline_ms: float,
          accuracy: np.ndarray, state: ServeState) -> dict:
    """Serve requests i0..i1-1 with choice ``ch`` each (``switched``: the request that pays a switch's
    load time and energy) by one FIFO worker: a request's latency is its completion minus its
    arrival, so an overloaded choice queues. Updates ``state``; returns per-request arrays."""
    a = real.arrivals_s[i0:i1] * 1e3
    r = np.arange(i0, i1)
    svc = real.latency_ms[r, ch] + real.switch_ms[ch] * switched
    # Lindley's recursion in closed form: finish_i = C_i + max(free, max_{j<=i} (a_j - C_{j-1}))
    C = np.cumsum(svc)
    finish = C + np.maximum(state.free_ms, np.maximum.accumulate(a - (C - svc))) if len(a) else C
    lat = finish - a
    energy = real.energy_mj[r, ch] + real.switch_mj[ch] * switched
    served = np.ones(len(a), bool)
    bat = np.full(len(a), np.nan)
    if real.capacity_mj:
        spent = state.spent_mj + np.cumsum(energy)
        bat = real.battery_trace_pct[i0:i1] - 100.0 * spent / real.capacity_mj
        if state.dead:
            served[:] = False
        else:
            empty = np.nonzero(bat <= 0)[0]
            if len(empty):
                served[empty[0]:] = False
        energy = np.where(served, energy, 0.0)
        bat = np.maximum(bat, 0.0)
        state.dead = state.dead or not served.all()
    missed = (lat > deadline_ms) | ~served
    q = np.where(served, qoe.per_request(accuracy[ch], missed, energy, switched), 0.0)
    if len(a):
        state.free_ms = float(finish[-1])
        state.spent_mj += float(energy.sum())
    return {"choice": ch, "latency_ms": np.where(served, lat, np.nan), "finish_ms": finish, "missed": missed,
            "energy_mj": energy, "battery_pct": bat, "qoe": q, "served": served, "switched": switched,
            "accuracy": accuracy[ch]}
