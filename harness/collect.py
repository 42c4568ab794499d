"""python -m harness.collect: profile zoo candidates on local and SSH targets.

With no arguments: the bundled zoo on the local machine, a quick context grid; results in
runs/<campaign>/ (campaign.sqlite, measurements.parquet).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import sqlite3
import sys
import threading
import time
from pathlib import Path

from harness.cli import number, ssh_arguments
from harness.errors import BadInput, HarnessError
from harness.inventory import PROFILES_DIR, load_inventory
from harness.runner import RunSettings, TargetWorker
from harness.store import Store
from harness.zoo.manifest import BUNDLED, load_manifest

QUICK = {"threads": [1, 2], "background_load": [0, 1], "runs": 50}
FULL = {"threads": [1, 2, 4], "background_load": [0, 1, 2], "runs": 200}
# Measured in pairs with every job (relative latency, latency_rel_median): a mid-sized bundled
# model, float32 for a candidate that computes in float, int8 for one with int8 weights that the
# XNNPACK delegate runs whole, float32 again for a dynamic-range int8 one it runs in pieces
# (harness.zoo.graph.reference_class). A shared machine whose state changes does not slow float
# and int8 kernels alike, so a float32 reference leaves int8 candidates drifting; the bundled
# dynamic-range int8 model (6 delegate pieces) tracks no class best. Measured by
# bench/reference_choice.py (figures in the README, "Relative latency").
AUTO_REFERENCES = {"float32": "dc-w100-d0-r64-float32", "int8": "dc-w100-d0-r64-int8",
                   "hybrid": "dc-w100-d0-r64-int8", "hybrid-split": "dc-w100-d0-r64-float32"}
# ... except a candidate faster than AUTO_SMALL_BELOW_MS (its median in the job's own timed loop;
# the agent decides): tiny models (single operators, mostly interpreter overhead) move with a tiny
# reference of any dtype, not with a large one of their own (bench/reference_choice.py, kernels:
# under 20 us the class rule agrees within 10% in 0.48 of round pairs, this 36-us int8 model 0.79;
# on a second run, all 223 kernels: 0.78 with this rule, 0.68 by class alone).
AUTO_SMALL_REFERENCE = "dc-w025-d2-r32-int8"
AUTO_SMALL_BELOW_MS = 0.02
# The pairs alternate blocks, not single invokes: per block 2 untimed invokes of a model, then 4
# timed. Right after a large model the reference's first invoke ran 1.6x and its second 1.1x its
# own speed (caches, the core's clock), which made the ratio of a NAS-Bench-201 network over 1 ms
# 25% low and of a kernel under 20 us 7% high; in blocks 3% low and 2% high, and rounds repeat as
# often (bench/paired_blocks.py). A campaign begun before keeps single alternation.
PAIRED_BLOCKS = {"skip": 2, "timed": 4}
DEFAULT_REFERENCE = "auto"


def _int_list(s: str, what: str) -> list[int]:
    try:
        vals = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: expected comma-separated integers, got {s!r}") from None
    low = 1 if what == "--threads" else 0     # a job needs a thread; background load may be none
    if not vals or any(v < low for v in vals):
        raise argparse.ArgumentTypeError(f"{what}: expected integers >= {low}, got {s!r}")
    return vals


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness.collect", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inventory", "-i", type=Path, help="targets YAML (default: the local machine only)")
    ap.add_argument("--zoo", type=Path, help="zoo directory or manifest.json (default: the bundled zoo)")
    ap.add_argument("--plan", type=Path, help="YAML with threads, background_load, runs, candidates, targets")
    ap.add_argument("--threads", type=lambda s: _int_list(s, "--threads"), help="e.g. 1,2,4")
    ap.add_argument("--background-load", type=lambda s: _int_list(s, "--background-load"),
                    help="busy processes on the target, e.g. 0,1,2")
    ap.add_argument("--runs", type=number("--runs", 1, int), help="timed runs per job")
    ap.add_argument("--reference", default=DEFAULT_REFERENCE,
                    help="after each job's timed runs, this model and the job's are invoked in pairs, back to back, "
                         "for a relative latency that a drifting machine repeats (a candidate id of the zoo or the "
                         "bundled zoo, or a .tflite path; 'none' to skip; default auto: the bundled "
                         "dc-w100-d0-r64 in float32 for a candidate computing in float, in int8 for one with int8 "
                         "weights that XNNPACK runs whole, in float32 for a dynamic-range int8 one it runs in pieces)")
    ap.add_argument("--full", action="store_true", help=f"the full grid {FULL}")
    ap.add_argument("--candidates", help="comma-separated candidate ids (default: all)")
    ap.add_argument("--limit", type=number("--limit", 1, int), help="only the first N candidates")
    ap.add_argument("--targets", help="comma-separated target names (default: all)")
    ap.add_argument("--out", type=Path, default=Path("runs"), help="runs folder (default: runs/)")
    ap.add_argument("--resume", metavar="CAMPAIGN", help="measure only what CAMPAIGN is missing")
    ap.add_argument("--job-timeout", type=number("--job-timeout", 0, strict=True), default=120.0,
                    help="seconds one job may take on the target (default 120)")
    ap.add_argument("--retries", type=number("--retries", 0, int), default=3,
                    help="extra attempts per job and per connection after the first (default 3)")
    ap.add_argument("--backoff", type=number("--backoff", 0), default=1.0,
                    help="seconds before the first retry, doubled each time, at most 30 (default 1)")
    ssh_arguments(ap)
    ap.add_argument("--allow-changed-target", action="store_true",
                    help="with --resume: a target whose profile, transport or host changed since the campaign began is "
                         "measured under a new name (NAME@<identity>) instead of being refused")
    ap.add_argument("--profiles", type=Path, default=PROFILES_DIR, help=argparse.SUPPRESS)
    ap.add_argument("--no-report", action="store_true", help="skip the HTML report")
    ap.add_argument("--quiet", "-q", action="store_true",
                    help="no progress lines and no results table: only the summary (the table is in the report "
                         "and measurements.parquet)")
    return ap


def _plan(args) -> dict:
    grid = dict(FULL if args.full else QUICK)
    if args.plan:
        from harness.inventory import load_yaml
        doc = load_yaml(args.plan) or {}
        if not isinstance(doc, dict):
            raise BadInput(f"{args.plan}: expected a mapping with threads, background_load, runs")
        for k in ("threads", "background_load"):
            if k in doc:
                v = doc[k]
                if not (isinstance(v, list) and v and all(isinstance(x, int) and x >= 0 for x in v)):
                    raise BadInput(f"{args.plan}: {k}: expected a list of non-negative integers, got {v!r}")
                grid[k] = v
        if "runs" in doc:
            if not (isinstance(doc["runs"], int) and doc["runs"] > 0):
                raise BadInput(f"{args.plan}: runs: expected a positive integer, got {doc['runs']!r}")
            grid["runs"] = doc["runs"]
        for k in ("candidates", "targets"):
            if k in doc and getattr(args, k) is None:
                setattr(args, k, ",".join(doc[k]) if isinstance(doc[k], list) else str(doc[k]))
    if args.threads:
        grid["threads"] = args.threads
    if args.background_load is not None:
        grid["background_load"] = args.background_load
    if args.runs:
        grid["runs"] = args.runs
    ref = _reference(args.reference, args.zoo)
    grid["reference"] = {**ref, "blocks": dict(PAIRED_BLOCKS)} if ref else None
    return grid


def _reference(spec: str, zoo: Path | None) -> dict | None:
    """None, one reference {id, path, sha256}, or for ``auto`` {"by_dtype": {reference class: reference},
    "small": reference + {"below_ms"}} (see :func:`harness.runner.reference_for`); the plan adds
    ``blocks`` (:data:`PAIRED_BLOCKS`)."""
    if spec == "none":
        return None
    if spec == "auto":
        return {"by_dtype": {k: _reference(v, None) for k, v in AUTO_REFERENCES.items()},
                "small": {**_reference(AUTO_SMALL_REFERENCE, None), "below_ms": AUTO_SMALL_BELOW_MS}}
    from harness.zoo.graph import sha256_file
    p = Path(spec)
    if p.suffix == ".tflite":
        if not p.is_file():
            raise BadInput(f"--reference: {p}: no such file")
        from harness.zoo.graph import read_graph
        read_graph(p)     # a corrupt reference is refused now, not dropped from every job's result later
        return {"id": p.stem, "path": str(p.resolve()), "sha256": sha256_file(p)}
    for z in ([zoo] if zoo else []) + [BUNDLED]:
        for c in load_manifest(z)[1]:
            if c.id == spec:
                return {"id": c.id, "path": str(Path(c.path).resolve()), "sha256": c.sha256}
    raise BadInput(f"--reference: {spec!r} is neither a .tflite file nor a candidate of the zoo or the bundled zoo")


def _reference_name(ref: dict | None) -> str | None:
    if ref and "by_dtype" in ref:
        small = f"; below {ref['small']['below_ms']} ms: {ref['small']['id']}" if ref.get("small") else ""
        return "auto(" + ", ".join(f"{k}: {v['id']}" for k, v in ref["by_dtype"].items()) + small + ")"
    return (ref or {}).get("id")


def _settings_doc(args, grid) -> dict:
    return {"inventory": str(args.inventory.resolve()) if args.inventory else None,
            "zoo": str((args.zoo or BUNDLED).resolve()), "grid": grid, "candidates": args.candidates,
            "limit": args.limit, "targets": args.targets}


def _table(rows: list[dict]) -> str:
    head = ("target", "candidate", "thr", "bg", "median ms", "p90 ms", "load ms", "rss MB", "energy", "status")
    lines = []
    for r in rows:
        ok = r["status"] == "ok"
        f = (lambda x: f"{x:.3f}" if x is not None else "-")
        flag = (" THROTTLED" if r.get("throttled") else "") + (f" CONTEXT-CHANGED({r['context_flags']})"
                                                              if r.get("context_flags") else "")
        en = r.get("energy_mj")
        energy = "none" if en is None else f"{en:.3g} mJ {r['energy_source']}"
        lines.append((r["target"], r["candidate_id"], str(r["threads"]), str(r["background_load"]),
                      f(r["latency_ms_median"]) if ok else "-", f(r["latency_ms_p90"]) if ok else "-",
                      f(r["load_ms"]) if ok else "-", f"{r['peak_rss_mb']:.0f}" if ok and r["peak_rss_mb"] else "-",
                      energy if ok else "-", r["status"] + flag))
    widths = [max(len(h), *(len(x[i]) for x in lines)) if lines else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    out += ["  ".join(v.ljust(w) for v, w in zip(x, widths)) for x in lines]
    return "\n".join(out)


def _identity(t) -> dict:
    return {"profile_sha256": t.profile.sha256, "transport": t.transport, "host": t.host or t.serial}


def _same_targets(store: Store, cid: str, targets: list, allow: bool, log) -> list:
    """On --resume, a target must still be what the campaign measured (profile file, transport,
    host): otherwise its pending jobs would be stored under the old identity. With ``allow``, a
    changed target continues under a new name and its pending jobs move there."""
    import dataclasses
    import hashlib
    import json as _json
    stored = {t["name"]: t for t in store.targets(cid)}
    out = []
    for t in targets:
        was = stored.get(t.name)
        now = _identity(t)
        if was is None:
            out.append(t)
            continue
        changed = [f"{k} {was.get(k)!r} -> {v!r}" for k, v in now.items() if was.get(k) != v]
        if not changed:
            out.append(t)
            continue
        if not allow:
            raise BadInput(f"--resume: target {t.name} changed since campaign {cid} began ({'; '.join(changed)}): "
                           f"its jobs would be stored as the old one's; --allow-changed-target measures the rest "
                           f"under a new name")
        new = f"{t.name}@{hashlib.sha256(_json.dumps(now, sort_keys=True).encode()).hexdigest()[:8]}"
        t2 = dataclasses.replace(t, name=new)
        store.add_target(cid, t2)
        store.move_pending(cid, t.name, new)
        log(f"target {t.name} changed ({'; '.join(changed)}): its pending jobs are measured as {new}")
        out.append(t2)
    return out


class CampaignLock:
    """One collector per campaign: an exclusive lock on RUN_DIR/campaign.lock, held while it runs
    (released by the OS if the process dies)."""

    def __init__(self, run_dir: Path):
        import fcntl
        run_dir.mkdir(parents=True, exist_ok=True)
        self.f = (run_dir / "campaign.lock").open("a+")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.f.seek(0)
            who = self.f.read().strip() or "another process"
            self.f.close()
            raise BadInput(f"{run_dir}: campaign is being collected by {who}; one collector per campaign") from None
        self.f.seek(0)
        self.f.truncate()
        self.f.write(f"pid {os.getpid()}\n")
        self.f.flush()

    def release(self) -> None:
        self.f.close()


def _build_report(run_dir: Path) -> str:
    """The report through its CLI: harness is the lowest layer and imports nothing above it
    (reports imports the simulator, which imports harness)."""
    import subprocess
    cmd = [sys.executable, "-m", "reports.build", str(run_dir)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        p = None
        why = type(e).__name__
    if p is not None and p.returncode == 0:
        return f"report: {p.stdout.strip().splitlines()[-1]}"
    if p is not None:   # the measurements are safe in the store; say why the report is missing
        lines = (p.stderr or p.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit {p.returncode}"
    return f"report: not written ({why}); try python -m reports.build {run_dir}"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    locks: list[CampaignLock] = []
    try:
        return _main(args, argv, locks)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:   # before any job: the runs folder cannot be made or written
        print(f"error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        for lock in locks:
            lock.release()


def _main(args, argv, locks: list) -> int:
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    if args.resume:
        run_dir = args.out / args.resume
        if not (run_dir / "campaign.sqlite").is_file():
            raise HarnessError(f"{run_dir}/campaign.sqlite: no such campaign to resume")
        locks.append(CampaignLock(run_dir))
        store = Store(run_dir / "campaign.sqlite")
        camp = store.campaign(args.resume)
        if camp is None:
            raise HarnessError(f"{run_dir}/campaign.sqlite: campaign {args.resume} not in this store")
        cid, saved = args.resume, camp["settings"]
        inv = Path(saved["inventory"]) if saved["inventory"] else None
        targets = load_inventory(inv, args.profiles)
        if saved.get("targets"):
            targets = [t for t in targets if t.name in saved["targets"].split(",")]
        targets = _same_targets(store, cid, targets, args.allow_changed_target, log)
        grid = saved["grid"]
    else:
        grid = _plan(args)
        targets = load_inventory(args.inventory, args.profiles)
        if args.targets:
            want = args.targets.split(",")
            missing = set(want) - {t.name for t in targets}
            if missing:
                raise BadInput(f"--targets: no target named {', '.join(sorted(missing))} in the inventory")
            targets = [t for t in targets if t.name in want]
        _, cands = load_manifest(args.zoo or BUNDLED)
        if args.candidates:
            want = args.candidates.split(",")
            unknown = set(want) - {c.id for c in cands}
            if unknown:
                raise BadInput(f"--candidates: not in the zoo: {', '.join(sorted(unknown))}")
            cands = [c for c in cands if c.id in want]
        if args.limit:
            cands = cands[: args.limit]
        cid = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
        run_dir = args.out / cid
        locks.append(CampaignLock(run_dir))
        store = Store(run_dir / "campaign.sqlite")
        store.create_campaign(cid, _settings_doc(args, grid), shlex.join(["python", "-m", "harness.collect",
                                                                           *(argv or sys.argv[1:])]))
        for t in targets:
            store.add_target(cid, t)
        for c in cands:
            store.add_candidate(cid, c)
        store.add_jobs(cid, [(t.name, c.id, th, bg, grid["runs"]) for t in targets for c in cands
                             for th in grid["threads"] for bg in grid["background_load"]])
    settings = RunSettings(job_timeout_s=args.job_timeout, retries=args.retries, backoff_s=args.backoff,
                           known_hosts=args.known_hosts, ssh_config=args.ssh_config,
                           trust_new_hosts=args.trust_new_hosts, reference=grid.get("reference"))
    log(f"campaign {cid}: {len(targets)} target(s), grid threads={grid['threads']} "
        f"background_load={grid['background_load']} runs={grid['runs']} "
        f"reference={_reference_name(grid.get('reference'))} -> {run_dir}/")
    t0 = time.time()
    stop = threading.Event()
    workers = [TargetWorker(cid, t, store, settings, log, stop) for t in targets]
    threads = [threading.Thread(target=w.run, name=f"target-{w.target.name}", daemon=True) for w in workers]
    for th in threads:
        th.start()
    try:
        for th in threads:
            while th.is_alive():
                th.join(0.5)
    except KeyboardInterrupt:
        for w in workers:
            w.abort()
        log("interrupted: stopping workers (resume with --resume " + cid + ")")
        for th in threads:
            th.join(30)
    fatal = [w.fatal for w in workers if w.fatal]
    for f in fatal:
        print(f"error: {f}; the jobs measured before are kept (--resume {cid} measures the rest)", file=sys.stderr)
    try:
        return _summary(args, store, cid, run_dir, t0, fatal)
    except (OSError, sqlite3.Error) as e:   # a disk that filled during the run: what was stored stays stored
        print(f"error: {run_dir}: cannot finish the outputs ({e}); the jobs measured are kept in campaign.sqlite "
              f"(resume with --resume {cid} once there is room)", file=sys.stderr)
        return 1


def _summary(args, store: Store, cid: str, run_dir: Path, t0: float, fatal: list[str]) -> int:
    rows = store.rows(cid)
    pq = store.export_parquet(cid, run_dir / "measurements.parquet")
    counts = store.status_counts(cid)
    errs = store.errors(cid)
    measured = [r for r in rows if r["status"] in ("ok", "failed")]
    if not args.quiet:
        print(_table(measured) + "\n")
    left: dict[str, int] = {}
    for r in rows:
        if r["status"] not in ("ok", "failed"):
            left[r["target"]] = left.get(r["target"], 0) + 1
    for t, n in left.items():   # one line per target, not a row per job it never reached
        print(f"{t}: {n} job(s) not measured (--resume {cid} measures them)")
    print("jobs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f"  ({time.time() - t0:.0f} s)")
    changed = [r for r in rows if r.get("context_flags") or r.get("throttled")]
    if changed:
        print(f"context changed during {len(changed)} measurement(s) (frequency drop, throttling or load the job did "
              f"not start); they are flagged in the table above and in measurements.parquet (context_flags)")
    est = sorted({r["energy_source"] for r in rows if str(r.get("energy_source")).startswith("estimate:")})
    if est:
        print(f"energy: no power sensor on {', '.join(sorted({r['target'] for r in rows if r['energy_source'] in est}))}; "
              f"energy_mj is an ESTIMATE from the device profile's power model ({', '.join(est)}), not a measurement")
    if errs:
        seen: dict[tuple, int] = {}
        for e in errs:   # the same error on every retry is said once, with its count
            k = (e["target"], e["candidate_id"] or "-", e["kind"], e["message"])
            seen[k] = seen.get(k, 0) + 1
        print(f"errors ({len(errs)}):")
        for (t, c, kind, msg), n in list(seen.items())[-(5 if args.quiet else 20):]:
            print(f"  [{t}] {c} {kind}: {msg}" + (f" (x{n})" if n > 1 else ""))
    if not args.no_report and not fatal:
        print(_build_report(run_dir))
    print(f"output: {run_dir}/  ({pq.name})")
    store.close()
    incomplete = sum(v for k, v in counts.items() if k not in ("ok", "failed"))
    failed = counts.get("failed", 0)
    if failed:
        print(f"{failed} of {sum(counts.values())} job(s) failed (errors above and in campaign.sqlite)")
    return 1 if incomplete or failed or fatal else 0


if __name__ == "__main__":
    sys.exit(main())
