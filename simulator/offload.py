"""python -m simulator.offload: replay bandwidth traces and score where each request runs: on the
device, sent whole to an edge server, or split between them at a split point of the network.

    python -m simulator.offload --device-slowdown 1000       # newest campaign, shipped bandwidth traces
    python -m simulator.offload --campaign runs/C --trace T.csv --server edge-server-local \\
        --device-slowdown 1000 --deadline-ms 50 --policy offload-mpc,offload-threshold,oracle

An *action* is (choice, place): ``device`` (the whole model here), ``server`` (upload the input,
the server runs the model, download the output) or ``splitK`` (the device runs operators 0..K,
uploads the one tensor there, the server runs the rest). Per request the world is

    device part  = the campaign's draw (odd half, at the trace's load) on the slowed device x the
                   front's share; slowed: the median x slowdown with the draw's deviation from it
                   kept in ms (--stalls absolute, default) or the draw x slowdown (scaled)
    away         = RTT + upload at the trace's bandwidth_mbps (integrated over time, held between
                   rows) + the server's draw (odd half, unloaded) x (1 - share) / speedup + download
    an answer not back within --timeout-ms falls back: the device runs the rest itself (late, not lost)

The front's share of the time is its share of the MACs (an estimate), or where the parts were
built (``python -m harness.zoo split``) and measured (``harness.collect --zoo``), the measured
share (``--parts RUN_DIR``). Radio energy comes from the device profile's ``radio``
model (an estimate); compute energy is the campaign's per inference, stretched by the slowdown
(the device drawing the campaign target's power for longer). The server keeps every model
loaded; the device keeps the chosen model loaded wherever it runs (a fallback needs it), so a
switch is a change of model (the campaign's load time, and its first inference slowed) and a
change of place alone is free. One
request is in flight at a time (FIFO, as in simulator.replay).

On-device policies (every policy of simulator.replay) choose among the device actions only; the
offload policies and the hindsight oracle among every action, so the oracle bounds them all.
Writes DIR/summary.csv, DIR/steps.parquet and DIR/run.json (default CAMPAIGN/offload/);
``python -m reports.build CAMPAIGN`` adds an Offloading section.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from harness import __version__
from harness.cli import number, run
from harness.errors import BadInput
from simulator import belief as beliefs
from simulator import policies as pol
from simulator.metrics import SUMMARY_COLUMNS, add_ratios, load_qoe, summarize
from simulator.replay import Scenario, _env, _fmt, default_deadline_ms, newest_campaign, run_policy, table
from simulator.traces import Trace, read_trace, shipped_traces
from simulator.world import Campaign, Realization, SampleTable, load_campaign, load_column, place, realize, split_half

BANDWIDTH = "bandwidth_mbps"
PLACES = ("device", "split", "server")
OFFLOAD_COLUMNS = ("kb_sent_per_request", "device_frac", "split_frac", "server_frac", "fallbacks")


@dataclass(frozen=True)
class Radio:
    up_mj_per_mbit: float
    down_mj_per_mbit: float
    active_mw: float
    source: str


@dataclass(frozen=True)
class Server:
    name: str
    path: str
    sha256: str
    speedup: float
    rtt_ms: float
    source: str


def load_server(name: str) -> Server:
    from harness.inventory import load_profile
    p = load_profile(name)
    s = p.facts.get("server")
    if not s:
        raise BadInput(f"{p.path}: no server section (speedup, rtt_ms): not an edge-server profile")
    return Server(name, str(p.path), p.sha256, float(s["speedup"]), float(s["rtt_ms"]), str(s.get("source", "")))


def load_radio(profile: str) -> Radio:
    from harness.inventory import load_profile
    p = load_profile(profile)
    r = p.facts.get("radio")
    if not r:
        raise BadInput(f"{p.path}: no radio section (up_mj_per_mbit, down_mj_per_mbit, active_mw): the energy of "
                       f"sending a request away is unknown; add one or give --device-profile")
    return Radio(float(r["up_mj_per_mbit"]), float(r["down_mj_per_mbit"]), float(r["active_mw"]), str(r.get("source", "")))


@dataclass(frozen=True)
class Actions:
    """Every (choice, place) a request can take; ``device_action[c]`` is choice c on the device."""
    choice: np.ndarray        # [A] index into the campaign's choices
    place: np.ndarray         # [A] device | split | server
    after_op: np.ndarray      # [A] the split's last front operator (-1: none)
    share: np.ndarray         # [A] the device's share of the model's compute (estimate: MACs)
    up_bytes: np.ndarray      # [A]
    down_bytes: np.ndarray    # [A]
    labels: list[str]
    device_action: np.ndarray  # [C]

    @property
    def remote(self) -> np.ndarray:
        return self.place != "device"


def _pareto(points):
    """Split points no other beats on both the device's share and the bytes sent (with a slower
    device than server, more front work and more bytes is never better)."""
    keep = []
    for p in points:
        if not any((q.macs_share <= p.macs_share and q.bytes <= p.bytes and (q.macs_share, q.bytes) != (p.macs_share, p.bytes))
                   for q in points):
            keep.append(p)
    return keep


def model_files(camp: Campaign, zoo: Path) -> dict[str, Path]:
    """Each candidate's .tflite in ``zoo``, checked against what the campaign measured."""
    from harness.zoo.manifest import load_manifest
    from simulator.world import _open_store
    _, cands = load_manifest(zoo)
    by = {c.id: c for c in cands}
    store = _open_store(camp.run_dir)
    try:
        shas = {c["candidate_id"]: c["sha256"] for c in store.candidates(camp.campaign_id)}
    finally:
        store.close()
    out = {}
    for cid in dict.fromkeys(c for c, _ in camp.choices):
        c = by.get(cid)
        if c is None:
            raise BadInput(f"--zoo {zoo}: has no candidate {cid!r} of campaign {camp.campaign_id} (give the zoo it measured)")
        if shas.get(cid) and c.sha256 != shas[cid]:
            raise BadInput(f"--zoo {zoo}: {cid} is not the file campaign {camp.campaign_id} measured (sha256 differs)")
        out[cid] = c.path
    return out


def measured_shares(run_dir: Path) -> dict[tuple[str, int], float]:
    """{(model, after_op): the front's share of front + back median latency} from a campaign of
    ``python -m harness.zoo split`` parts (``harness.collect --zoo SPLIT_DIR``), over its ok jobs."""
    from simulator.world import _open_store
    run_dir = Path(run_dir)
    if not (run_dir / "campaign.sqlite").is_file() and run_dir.is_dir():
        run_dir = newest_campaign(run_dir)     # a runs folder: its newest campaign
    store = _open_store(run_dir)
    try:
        cid = store.campaign_ids()[0]
        knobs = {c["candidate_id"]: c.get("knobs") or {} for c in store.candidates(cid)}
        med: dict[str, list[float]] = {}
        for r in store.rows(cid):
            if r["status"] == "ok" and r["latency_ms_median"]:
                med.setdefault(r["candidate_id"], []).append(float(r["latency_ms_median"]))
    finally:
        store.close()
    parts: dict[tuple[str, int], dict[str, float]] = {}
    for c, k in knobs.items():
        if k.get("part") in ("front", "back") and c in med:
            parts.setdefault((k["of"], int(k["after_op"])), {})[k["part"]] = float(np.median(med[c]))
    out = {key: v["front"] / (v["front"] + v["back"]) for key, v in parts.items() if len(v) == 2}
    if not out:
        raise BadInput(f"--parts {run_dir}: no measured front and back parts (python -m harness.zoo split, then "
                       f"python -m harness.collect --zoo SPLIT_DIR)")
    return out


def actions(camp: Campaign, files: dict[str, Path], splits: str = "pareto",
            measured: dict[tuple[str, int], float] | None = None) -> Actions:
    """The action table; a split point with a measured share (``measured``) uses it, and is
    offered whatever ``splits`` says; the others use the MAC share (an estimate)."""
    from harness.zoo.split import split_points
    measured = measured or {}
    choice, place, after, share, up, down, labels, dev = [], [], [], [], [], [], [], []
    cache = {}
    for c, (cid, th) in enumerate(camp.choices):
        sp = cache.get(cid) or cache.setdefault(cid, split_points(files[cid]))
        pts = [] if splits == "none" else list(sp.points) if splits == "all" else _pareto(
            [p for p in sp.points if p.bytes < sp.input_bytes])
        pts += [p for p in sp.points if (cid, p.after_op) in measured and p not in pts]
        rows = [("device", -1, 1.0, 0, 0), ("server", -1, 0.0, sp.input_bytes, sp.output_bytes)]
        rows += [("split", p.after_op, measured.get((cid, p.after_op), p.macs_share), p.bytes, sp.output_bytes)
                 for p in sorted(pts, key=lambda p: p.after_op)]
        for pl, k, s, u, d in rows:
            if pl == "device":
                dev.append(len(choice))
            choice.append(c)
            place.append(pl)
            after.append(k)
            share.append(s)
            up.append(u)
            down.append(d)
            labels.append(f"{cid}@{th}t/{pl}{k if k >= 0 else ''}")
    return Actions(np.array(choice), np.array(place), np.array(after), np.array(share, float), np.array(up, float),
                   np.array(down, float), labels, np.array(dev))


class Link:
    """The trace's bandwidth as a function of time: held between rows (and after the last),
    missing values held, a row of 0 a link that carries nothing."""

    def __init__(self, trace: Trace):
        if BANDWIDTH not in trace.columns:
            raise BadInput(f"{trace.path}: no {BANDWIDTH} column (offloading replays a bandwidth trace; "
                           f"python -m simulator.traces import --format pensieve makes one)")
        bw, _ = trace.held(BANDWIDTH)
        if np.isnan(bw).all():
            raise BadInput(f"{trace.path}: column {BANDWIDTH} has no values")
        self.t = trace.t_s.astype(float)
        self.bw = np.clip(np.nan_to_num(bw, nan=0.0), 0.0, None)
        self.cum = np.concatenate([[0.0], np.cumsum(self.bw[:-1] * np.diff(self.t))])   # Mbit sent by each row

    def at(self, ts: np.ndarray) -> np.ndarray:
        return self.bw[np.clip(np.searchsorted(self.t, ts, side="right") - 1, 0, len(self.t) - 1)]

    def sent(self, ts: np.ndarray) -> np.ndarray:
        """Mbit the link could carry from the trace's start to ``ts`` (s)."""
        ts = np.maximum(ts, self.t[0])
        j = np.clip(np.searchsorted(self.t, ts, side="right") - 1, 0, len(self.t) - 1)
        return self.cum[j] + self.bw[j] * (ts - self.t[j])

    def finish(self, ts: np.ndarray, mbit: np.ndarray) -> np.ndarray:
        """When ``mbit`` started at ``ts`` (s) is through (inf: never, the link stays down)."""
        ts = np.maximum(ts, self.t[0])
        target = self.sent(ts) + mbit
        j = np.clip(np.searchsorted(self.cum, target, side="right") - 1, 0, len(self.t) - 1)
        j = np.maximum(j, np.clip(np.searchsorted(self.t, ts, side="right") - 1, 0, len(self.t) - 1))
        bw = self.bw[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(bw > 0, self.t[j] + (target - self.cum[j]) / np.where(bw > 0, bw, 1.0), np.inf)
        return np.where(mbit <= 0, ts, np.maximum(t, ts))


@dataclass(frozen=True)
class Setup:
    """What the offloading world and belief share: stated figures, with their sources."""
    server: Server
    radio: Radio
    device_profile: str
    slowdown: float = 1.0
    power_w: float | None = None         # the device's compute power; default: the campaign's energy, stretched
    timeout_ms: float | None = None      # default: the deadline
    rtt_ms: float | None = None          # default: the server profile's
    splits: str = "pareto"
    parts: Path | None = None            # a campaign of measured front/back parts (their shares replace MACs')
    stalls: str = "absolute"             # absolute: median x slowdown + the deviation in ms; scaled: every sample x slowdown

    @property
    def rtt(self) -> float:
        return self.server.rtt_ms if self.rtt_ms is None else self.rtt_ms


@dataclass
class OffloadRealization(Realization):
    bandwidth_mbps: np.ndarray | None = None   # [N] at each arrival
    bytes_up: np.ndarray | None = None         # [N, A] bytes sent (to the timeout, where it fired)
    fallback: np.ndarray | None = None         # [N, A] the answer was not back within the timeout


def medians(camp: Campaign) -> np.ndarray:
    """[C, L] each cell's median over all its samples."""
    return np.array([[np.median(x) for x in cell] for cell in camp.samples])


def device_ms(base: Realization, camp: Campaign, setup: Setup) -> np.ndarray:
    """[N, C] the world's draws on the stated device: x slowdown (``scaled``: this machine's
    stalls too), or the median x slowdown with each draw's deviation from it kept in ms
    (``absolute``: a stall lasts as long as it did here)."""
    k = setup.slowdown
    if setup.stalls == "scaled":
        return base.latency_ms * k
    lo, hi, w, _ = place(base.busy, camp.levels)
    m = medians(camp)
    return base.latency_ms + (k - 1) * (m[:, lo] * (1 - w) + m[:, hi] * w).T


def switch_ms(camp: Campaign, setup: Setup) -> np.ndarray:
    """[C] a switch on the stated device: the campaign's load time (reading and allocating, not
    slowed) and its first inference, slowed."""
    first = camp.first_ms if camp.first_ms is not None else camp.switch_ms
    return camp.switch_ms - first + first * setup.slowdown


def realize_offload(base: Realization, camp: Campaign, server_table: SampleTable, acts: Actions, setup: Setup,
                    deadline_ms: float, seed: int) -> OffloadRealization:
    """Every action's outcome for every request, from the device world's draws ``base`` and the
    server's (its own stream: the same whichever policies run)."""
    N = base.n
    link = Link(base.trace)
    rng = np.random.default_rng([int(seed), zlib.crc32(base.trace.name.encode()), 1])
    zero = np.zeros(N, np.intp)
    srv_c = server_table.at(rng.random((N, len(camp.choices))), zero, zero, np.zeros(N)) / setup.server.speedup
    c, s, remote = acts.choice, acts.share, acts.remote
    timeout = setup.timeout_ms if setup.timeout_ms is not None else deadline_ms
    full = device_ms(base, camp, setup)[:, c]                      # [N, A] the whole model on the device
    dev = full * s
    up_mbit, down_mbit = acts.up_bytes * 8e-6, acts.down_bytes * 8e-6
    rtt_s = setup.rtt / 2e3
    t_up = base.arrivals_s[:, None] + dev / 1e3
    t_srv = link.finish(t_up, np.broadcast_to(up_mbit, dev.shape)) + rtt_s
    t_back = link.finish(t_srv + srv_c[:, c] * (1 - s) / 1e3, np.broadcast_to(down_mbit, dev.shape)) + rtt_s
    away = np.where(remote, (t_back - t_up) * 1e3, 0.0)
    fb = remote & (away > timeout)
    lat = np.where(fb, dev + timeout + full * (1 - s), dev + away)
    sent = np.where(fb, np.minimum(up_mbit, link.sent(t_up + timeout / 1e3) - link.sent(t_up)), up_mbit * remote)
    e_full = full * setup.power_w if setup.power_w is not None else base.energy_mj[:, c] * setup.slowdown
    r = setup.radio
    radio = remote * (r.up_mj_per_mbit * sent + r.down_mj_per_mbit * np.where(fb, 0.0, down_mbit)
                      + r.active_mw * np.minimum(away, timeout) / 1e3)
    energy = e_full * np.where(fb, 1.0, s) + radio
    out = OffloadRealization(**{f: getattr(base, f) for f in base.__dataclass_fields__})
    out.latency_ms, out.energy_mj = lat, energy
    # the device keeps the chosen model loaded wherever it runs (a fallback needs it): a switch is
    # a change of model, which loads the new one; a change of place alone is free
    out.group = c
    out.switch_ms = switch_ms(camp, setup)[c]
    out.switch_mj = (out.switch_ms * setup.power_w if setup.power_w is not None
                     else base.switch_mj[c] * out.switch_ms / np.maximum(base.switch_ms[c], 1e-9))
    out.bandwidth_mbps = link.at(base.arrivals_s)
    out.bytes_up = sent / 8e-6
    out.fallback = fb
    out.not_played = [n for n in base.not_played if not n.startswith(BANDWIDTH)]
    return out


@dataclass(frozen=True)
class OffloadInfo:
    """What an offload policy knows beyond the on-device Env (stated figures and belief)."""
    actions: Actions
    device_env: pol.Env            # the on-device choices, for on-device policies and belief
    slowdown: float
    rtt_ms: float
    timeout_ms: float
    radio: Radio
    server_ms: np.ndarray          # [C] believed server time of each whole model (median, even half)
    switch_ms: np.ndarray          # [A] believed load time of each action's device part
    switch_mj: np.ndarray          # [A]


def offload_env(dev_env: pol.Env, acts: Actions, setup: Setup, server_ms: np.ndarray, timeout_ms: float,
                camp: Campaign) -> pol.Env:
    bel = dev_env.belief     # already the stated device's (device_belief)
    power = bel.energy[:, 0] / np.maximum(bel.mean[:, 0], 1e-9)    # W: mJ per ms
    info = OffloadInfo(acts, dev_env, setup.slowdown, setup.rtt, timeout_ms, setup.radio, server_ms,
                       bel.switch_ms[acts.choice], (power * bel.switch_ms)[acts.choice])
    knobs = [{**(dev_env.knobs[c] if dev_env.knobs else {}), "place": p, "after_op": int(k)}
             for c, p, k in zip(acts.choice, acts.place, acts.after_op)]
    return replace(dev_env, labels=acts.labels, candidate_ids=[dev_env.candidate_ids[c] for c in acts.choice],
                   threads=dev_env.threads[acts.choice], accuracy=dev_env.accuracy[acts.choice], knobs=knobs,
                   offload=info)


class OnDevice:
    """An on-device policy in an offloading run: it sees the device choices only (its own Env),
    and its choice c is the action 'c on the device'."""

    def __init__(self, inner):
        self.inner = inner
        self.observes = bool(getattr(inner, "observes", True))

    def reset(self, env, rng) -> None:
        self.map = env.offload.actions.device_action
        self.choice_of = env.offload.actions.choice
        self.inner.reset(env.offload.device_env, rng)

    def decide(self, obs) -> int:
        cur = int(self.choice_of[obs.current]) if obs.current >= 0 else -1
        mine = replace(obs, current=cur, done_choice=self.choice_of[obs.done_choice])
        return int(self.map[self.inner.decide(mine)])


def action_level(cls) -> bool:
    """Hindsight references and offload policies choose among every action; others the device's."""
    return bool(getattr(cls, "hindsight", False) or getattr(cls, "offload", False))


def summarize_offload(st: dict, real: OffloadRealization, acts: Actions) -> dict:
    a = st["choice"]
    n = max(len(a), 1)
    i = np.arange(len(a))
    up = real.bytes_up[i, a]
    down = np.where(real.fallback[i, a], 0.0, acts.down_bytes[a])
    place = acts.place[a]
    return {"kb_sent_per_request": float((up + down).sum() / n / 1e3), "device_frac": float((place == "device").mean()),
            "split_frac": float((place == "split").mean()), "server_frac": float((place == "server").mean()),
            "fallbacks": int(real.fallback[i, a].sum())}


def replay_offload(camp: Campaign, traces: list[Trace], names: list[str], sc: Scenario, setup: Setup,
                   files: dict[str, Path], policy_args: dict | None = None, log=lambda m: None,
                   ) -> tuple[list[dict], dict, dict]:
    """Every policy on every bandwidth trace (``files``: each candidate's .tflite, for its split
    points). Returns (summary rows, {"steps": per (policy, trace), "actions"}, provenance)."""
    measured = measured_shares(setup.parts) if setup.parts else {}
    acts = actions(camp, files, setup.splits, measured)
    world = SampleTable([[split_half(s, "odd") for s in cell] for cell in camp.samples])
    server_world = SampleTable([[split_half(cell[0], "odd")] for cell in camp.samples])
    belief = device_belief(beliefs.from_samples(camp, "even"), setup, switch_ms(camp, setup))
    server_ms = np.array([np.median(split_half(cell[0], "even")) for cell in camp.samples]) / setup.server.speedup
    timeout = setup.timeout_ms if setup.timeout_ms is not None else sc.deadline_ms
    rows, steps_all, notes = [], {}, {}
    for tr in traces:
        lc = load_column(tr, sc.load_column)
        base = realize(camp, world, tr, seed=sc.seed, rate_hz=sc.rate_hz, rate_column=sc.rate_column,
                       decide_every_s=sc.decide_every_s, load_col=lc, battery_wh=None)
        if base.n == 0:
            raise BadInput(f"{tr.path}: no request arrives during the trace (rate {sc.rate_hz}/s over {tr.duration_s} s)")
        real = realize_offload(base, camp, server_world, acts, setup, sc.deadline_ms, sc.seed)
        notes[tr.name] = {"load_column": lc, "not_played": real.not_played, "requests": real.n, "sha256": tr.sha256,
                          "path": str(tr.path), "bandwidth_mbps_median": float(np.median(real.bandwidth_mbps)),
                          "zero_bandwidth_frac": float((real.bandwidth_mbps <= 0).mean())}
        dev_env = _env(camp, belief, sc, real.n_periods, None)
        env = offload_env(dev_env, acts, setup, server_ms, timeout, camp)
        for name in names:
            p = pol.make(name, (policy_args or {}).get(name))
            if not action_level(type(p)):
                p = OnDevice(p)
            p.reset(env, np.random.default_rng([int(sc.seed), 7]))
            st, timing = run_policy(real, env, p, sc.qoe)
            row = {"policy": name, "trace": tr.name, **summarize(st, real, sc.deadline_ms), "rate_hz": sc.rate_hz,
                   "seed": sc.seed, "user": sc.user, "world": world_label(camp, setup), "belief": belief_label(belief, setup),
                   "oracle_exact": getattr(p, "exact_", None), **timing, **summarize_offload(st, real, acts)}
            rows.append(row)
            steps_all[(name, tr.name)] = (st, real)
            log(f"  {tr.name} {name}: qoe {row['qoe_mean']:.4f}, {timing['wall_s']:.2f} s")
    add_ratios(rows)
    prov = {"campaign": str(camp.run_dir), "campaign_id": camp.campaign_id, "target": camp.target,
            "profile": camp.profile, "runtime": camp.runtime, "world": world_label(camp, setup),
            "belief": belief_label(belief, setup), "deadline_ms": sc.deadline_ms, "timeout_ms": timeout,
            "rate_hz": sc.rate_hz, "decide_every_s": sc.decide_every_s, "seed": sc.seed, "qoe": sc.qoe.as_dict(),
            "device_slowdown": setup.slowdown, "stalls": setup.stalls, "device_power_w": setup.power_w,
            "device_profile": setup.device_profile,
            "radio": {**setup.radio.__dict__, "estimate": True},
            "server": {**setup.server.__dict__}, "rtt_ms": setup.rtt, "splits": setup.splits,
            "split_share": ("the front's share of the model's MACs (an estimate)" + (
                f"; measured in {setup.parts} for {', '.join(f'{m} after op {k}: {v:.3f}' for (m, k), v in measured.items())}"
                if measured else "")),
            "models": {c: str(p) for c, p in files.items()},
            "actions": len(acts.labels), "choices": camp.labels,
            "accuracy": {c: float(a) for (c, _), a in zip(camp.choices, camp.accuracy)},
            "energy_source": energy_label(camp, setup),
            "policies": names, "policy_args": policy_args or {}, "traces": notes, "campaign_notes": list(camp.notes),
            "harness_version": __version__}
    return rows, {"steps": steps_all, "actions": acts}, prov


def device_belief(b, setup: Setup, sw: np.ndarray):
    """Belief about the stated device: the campaign's belief x slowdown, by the same ``stalls``
    rule as the world (energy at the stated power), switches ``sw`` (:func:`switch_ms`)."""
    k = setup.slowdown
    if setup.stalls == "scaled":
        Q, mean = b.Q * k, b.mean * k
    else:
        med = b.Q[:, :, b.Q.shape[2] // 2]
        Q, mean = b.Q + (k - 1) * med[:, :, None], b.mean + (k - 1) * med
    energy = mean * setup.power_w if setup.power_w is not None else b.energy * k
    return beliefs.Belief(f"{b.kind} x{k:g} ({setup.stalls} stalls)", b.labels, b.levels, Q, mean, energy, sw,
                          b.accuracy)


def energy_label(camp: Campaign, setup: Setup) -> str:
    compute = (f"stated {setup.power_w:g} W x device time" if setup.power_w is not None
               else f"{camp.energy_source} x slowdown")
    return f"compute: {compute}; radio: estimate ({setup.radio.source})"


def world_label(camp: Campaign, setup: Setup) -> str:
    return (f"samples:odd-half of {camp.campaign_id}/{camp.target} x{setup.slowdown:g} ({setup.stalls} stalls) on the "
            f"device; server "
            f"{setup.server.name} (unloaded odd half / {setup.server.speedup:g}); bandwidth from the trace, RTT "
            f"{setup.rtt:g} ms")


def belief_label(belief, setup: Setup) -> str:
    return f"{belief.kind}; server: even-half medians; bandwidth: the trace up to now"


def write_outputs(out: Path, camp: Campaign, rows: list[dict], result: dict, prov: dict, deadline_ms: float) -> None:
    """OUT.part, then replace OUT: a failed run leaves the previous output whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    tmp = out.with_name(out.name + ".part")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    acts = result["actions"]
    cand = np.array([c for c, _ in camp.choices])
    thr = np.array([t for _, t in camp.choices], np.int32)
    tables = []
    for (name, trace), (st, real) in result["steps"].items():
        a = st["choice"]
        n = len(a)
        i = np.arange(n)
        tables.append(pa.table({
            "policy": pa.array([name] * n).dictionary_encode(), "trace": pa.array([trace] * n).dictionary_encode(),
            "t_s": real.arrivals_s - real.t0, "candidate_id": pa.array(cand[acts.choice[a]]).dictionary_encode(),
            "threads": thr[acts.choice[a]], "place": pa.array(acts.place[a]).dictionary_encode(),
            "after_op": acts.after_op[a].astype(np.int32), "latency_ms": st["latency_ms"],
            "deadline_ms": np.full(n, deadline_ms), "missed": st["missed"], "energy_mj": st["energy_mj"],
            "qoe": st["qoe"], "served": st["served"], "switched": st["switched"], "bytes_up": real.bytes_up[i, a],
            "fallback": real.fallback[i, a], "bandwidth_mbps": real.bandwidth_mbps, "busy_cpus": real.busy}))
    pq.write_table(pa.concat_tables(tables), tmp / "steps.parquet")
    cols = SUMMARY_COLUMNS + OFFLOAD_COLUMNS
    with (tmp / "summary.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([_fmt(r.get(c)) for c in cols])
    (tmp / "offload.json").write_text(json.dumps(prov, indent=1, default=str) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)


def offload_table(rows: list[dict]) -> str:
    base = table(rows).splitlines()
    extra = [["kb_sent", "device", "split", "server", "fallbacks"]] + [
        [f"{r['kb_sent_per_request']:.2f}", f"{r['device_frac']:.2f}", f"{r['split_frac']:.2f}", f"{r['server_frac']:.2f}",
         str(r["fallbacks"])] for r in rows]
    w = [max(len(x[i]) for x in extra) for i in range(5)]
    return "\n".join(b + "  " + "  ".join(x[i].ljust(w[i]) for i in range(5)) for b, x in zip(base, extra))


def bandwidth_traces() -> list[Path]:
    """The shipped traces that have a bandwidth column."""
    out = []
    for p in shipped_traces():
        with p.open() as f:
            if BANDWIDTH in f.readline().strip().split(","):
                out.append(p)
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m simulator.offload", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", type=Path, help="run folder of harness.collect (default: the newest under ./runs/)")
    ap.add_argument("--target", help="the campaign's target (default: its only one)")
    ap.add_argument("--zoo", type=Path, help="the zoo the campaign measured, for split points (default: the bundled zoo)")
    ap.add_argument("--trace", type=Path, action="append",
                    help=f"canonical trace CSV with a {BANDWIDTH} column; repeat for several (default: the shipped ones)")
    ap.add_argument("--policy", default="all",
                    help="comma-separated policies, or all (default: all registered; on-device ones choose among the "
                         "device actions only)")
    ap.add_argument("--policy-arg", action="append", metavar="NAME.KEY=VALUE", help="a policy's parameter (repeatable)")
    ap.add_argument("--server", default="edge-server-local",
                    help="device profile of the edge server, with a server: {speedup, rtt_ms} section "
                         "(default: edge-server-local, this machine)")
    ap.add_argument("--device-profile", help="profile whose radio model prices sending (default: the campaign's)")
    ap.add_argument("--device-slowdown", type=number("--device-slowdown", 0, strict=True), default=1.0,
                    help="the device runs the campaign's models this many times slower (stated; default 1: the "
                         "campaign's target itself)")
    ap.add_argument("--stalls", choices=("absolute", "scaled"), default="absolute",
                    help="how the campaign's spread carries to the slowed device: absolute (the median x slowdown, each "
                         "sample's deviation from it kept in ms: a stall lasts as long as here; default) or scaled "
                         "(every sample x slowdown, this machine's stalls too)")
    ap.add_argument("--device-power-w", type=number("--device-power-w", 0, strict=True),
                    help="the device's power while computing, for its compute energy (stated; default: the campaign's "
                         "energy per inference x slowdown)")
    ap.add_argument("--rtt-ms", type=number("--rtt-ms", 0), help="round trip to the server (default: the server profile's)")
    ap.add_argument("--timeout-ms", type=number("--timeout-ms", 0, strict=True),
                    help="an answer not back by then is computed on the device instead (default: the deadline)")
    ap.add_argument("--splits", choices=("pareto", "all", "none"), default="pareto",
                    help="split points offered: those no other beats on both device share and bytes (default), all, "
                         "or none (device or whole offload only)")
    ap.add_argument("--parts", type=Path, metavar="RUN_DIR",
                    help="a campaign (or a runs folder: its newest) that measured split parts (python -m harness.zoo "
                         "split, then harness.collect --zoo SPLIT_DIR): their measured front share replaces the MACs'")
    ap.add_argument("--deadline-ms", type=number("--deadline-ms", 0, strict=True),
                    help="each request's deadline (default: the median of the choices' unloaded medians x slowdown)")
    ap.add_argument("--rate-hz", type=number("--rate-hz", 0, strict=True), default=10.0, help="requests per second (default: 10)")
    ap.add_argument("--decide-every", type=number("--decide-every", 0, strict=True), default=1.0,
                    help="seconds of trace time between decisions (default: 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the world's draws (default: 0)")
    ap.add_argument("--qoe", type=Path, help="YAML of QoE weights (accuracy, miss, energy_per_mj, switch)")
    ap.add_argument("--plugin", type=Path, action="append", default=[],
                    help="a Python file of yours that adds policies to simulator.policies.REGISTRY (an offload one sets "
                         "offload = True and reads env.offload; docs/offload.md)")
    ap.add_argument("--out", type=Path, help="output folder, replaced (default: CAMPAIGN/offload/)")
    ap.add_argument("--quiet", "-q", action="store_true", help="print only the summary table")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run(lambda: _main(args))


def _main(args) -> int:
    from harness.zoo.manifest import BUNDLED
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    pol.load_plugins(args.plugin)   # the user's own code, run as they asked
    names, policy_args = pol.resolve(args.policy, args.policy_arg)
    server = load_server(args.server)
    camp = load_campaign(args.campaign or newest_campaign(), args.target)
    radio = load_radio(args.device_profile or camp.profile)
    paths = args.trace or bandwidth_traces()
    if not paths:
        raise BadInput(f"no traces with a {BANDWIDTH} column: give --trace FILE")
    traces = [read_trace(p) for p in paths]
    for t in traces:
        Link(t)    # every trace checked before anything runs
    if len({t.name for t in traces}) != len(traces):
        raise BadInput("--trace: two traces share a file name; rename one")
    deadline = args.deadline_ms or default_deadline_ms(camp) * args.device_slowdown
    sc = Scenario(deadline_ms=deadline, rate_hz=args.rate_hz, decide_every_s=args.decide_every, seed=args.seed,
                  qoe=load_qoe(args.qoe))
    setup = Setup(server, radio, args.device_profile or camp.profile, args.device_slowdown, args.device_power_w,
                  args.timeout_ms, args.rtt_ms, args.splits, args.parts, args.stalls)
    zoo = args.zoo or BUNDLED
    log(f"offload: campaign {camp.campaign_id} on {camp.target} x{setup.slowdown:g} as the device, server "
        f"{server.name} (/{server.speedup:g}), RTT {setup.rtt:g} ms, {len(traces)} trace(s), deadline {deadline:.4g} ms, "
        f"{sc.rate_hz:g} req/s, seed {sc.seed}")
    rows, result, prov = replay_offload(camp, traces, names, sc, setup, model_files(camp, zoo), policy_args, log)
    out = args.out or camp.run_dir / "offload"
    write_outputs(out, camp, rows, result, prov, deadline)
    print(offload_table(rows))
    print(f"world: {prov['world']}\nbelief: {prov['belief']}\nenergy: {prov['energy_source']}")
    print(f"output: {out}/  (steps.parquet, summary.csv, offload.json); report: python -m reports.build {camp.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
