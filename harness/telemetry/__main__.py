"""python -m harness.telemetry: turn captured device-tool output into data.

    python -m harness.telemetry parse --format tegrastats tegrastats.log [--out rows.csv]
    python -m harness.telemetry import-benchmark bm.txt --model m.tflite --target pixel7 \\
        --profile android-adb [--threads 4] [--runtime-version 2.16] [--out runs/]

``parse`` writes CSV rows whose column names carry their units; a value the tool did not print
is an empty cell, never 0. ``import-benchmark`` stores TensorFlow Lite ``benchmark_model`` runs
as measurements of a new campaign (measured_by = benchmark_model), so phones profiled with
Google's tool join the same store and measurements.parquet as the harness's own runs.
"""

from __future__ import annotations

import argparse
import csv
import io
import secrets
import shlex
import sys
import time
from pathlib import Path

from harness.errors import BadInput, HarnessError
from harness.telemetry.parsers import PARSERS, ParseError


def parse_file(fmt: str, path: Path) -> list[dict]:
    if fmt not in PARSERS:
        raise BadInput(f"--format: expected one of {', '.join(sorted(PARSERS))}, got {fmt!r}")
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    try:
        return PARSERS[fmt](text)
    except ParseError as e:
        where = f"{path}:{e.line}" if e.line else str(path)
        raise BadInput(f"{where}: {fmt}: {str(e).split(': ', 1)[1]}") from None


def to_csv(rows: list[dict]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def import_benchmark(path: Path, model: Path, target: str, profile: str, threads: int | None,
                     runtime_version: str | None, out: Path, argv: list[str]) -> tuple[Path, int]:
    """Store benchmark_model runs from ``path`` as a new campaign; return (run dir, rows)."""
    from harness.inventory import Target, load_profile
    from harness.store import Store
    from harness.zoo.graph import read_graph
    from harness.zoo.manifest import Candidate

    runs = parse_file("benchmark_model", path)
    prof = load_profile(profile)
    g = read_graph(model)
    cand = Candidate(model.stem, model.resolve(), g.sha256, "imported", g.macs, g.params, g.file_bytes, None, {},
                     {"id": model.stem, "file": str(model.resolve()), "imported_from": str(path)})
    jobs = []
    for i, r in enumerate(runs):
        th = r.get("threads")
        if th is not None and threads is not None and th != threads:
            raise BadInput(f"{path}: run {i + 1} says 'Num threads: [{th}]' but --threads is {threads}")
        th = th if th is not None else threads
        if th is None:
            raise BadInput(f"{path}: run {i + 1} does not echo 'Num threads'; pass --threads N")
        if "n_inference" not in r:
            raise BadInput(f"{path}: run {i + 1} has no count= line for its timed runs")
        if th in [t for t, _ in jobs]:
            raise BadInput(f"{path}: run {i + 1} repeats threads={th} of an earlier run; the store keeps one "
                           f"measurement per model, threads and background load: import each run from its own file")
        jobs.append((th, r))
    cid = "import-" + time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    run_dir = out / cid
    store = Store(run_dir / "campaign.sqlite")
    try:
        store.create_campaign(cid, {"imported": str(path.resolve()), "tool": "benchmark_model", "model": str(model)},
                              shlex.join(["python", "-m", "harness.telemetry", *argv]))
        store.add_target(cid, Target(target, prof, "imported"))
        store.add_candidate(cid, cand)
        for th, r in jobs:
            store.add_jobs(cid, [(target, cand.id, th, 0, r["n_inference"])])
            (job,) = [j for j in store.pending_jobs(cid, target) if j["threads"] == th]
            summary = {"n": r["n_inference"], "n_warmup": r.get("n_warmup"), "mean": r["inference_avg_us"] / 1e3}
            for k in ("min", "max", "std", "median", "p5", "p95"):
                if f"inference_{k}_us" in r:
                    summary[k] = r[f"inference_{k}_us"] / 1e3
            fields = {"runtime": "benchmark_model", "runtime_version": runtime_version or "unknown",
                      "load_ms": r["init_us"] / 1e3 if "init_us" in r else None,
                      "first_inference_ms": r["first_inference_us"] / 1e3 if "first_inference_us" in r else None,
                      "peak_rss_mb": r.get("peak_memory_mb"),
                      "rss_method": "benchmark_model peak memory footprint" if "peak_memory_mb" in r else None}
            store.record_imported(job["id"], "benchmark_model", summary, fields, r)
        store.export_parquet(cid, run_dir / "measurements.parquet")
    finally:
        store.close()
    return run_dir, len(jobs)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness.telemetry", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parse", help="tool output -> CSV with units in the column names")
    p.add_argument("--format", required=True, choices=sorted(PARSERS), help="which tool printed FILE")
    p.add_argument("file", type=Path, help="the tool's output, as recorded")
    p.add_argument("--out", type=Path, help="CSV file (default: stdout)")
    b = sub.add_parser("import-benchmark", help="benchmark_model output -> measurements in a new campaign")
    b.add_argument("file", type=Path, help="benchmark_model's output, as printed on the device")
    b.add_argument("--model", type=Path, required=True, help="the .tflite file that was benchmarked")
    b.add_argument("--target", required=True, help="a name for the device it ran on")
    b.add_argument("--profile", required=True, help="its device profile (device_profiles/NAME.yaml)")
    b.add_argument("--threads", type=int, help="when the output does not echo 'Num threads'")
    b.add_argument("--runtime-version", help="the TensorFlow Lite version benchmark_model was built from")
    b.add_argument("--out", type=Path, default=Path("runs"), help="runs folder (default: runs/)")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    try:
        if args.cmd == "parse":
            text = to_csv(parse_file(args.format, args.file))
            if args.out:
                args.out.write_text(text)
            else:
                sys.stdout.write(text)
        else:
            run_dir, n = import_benchmark(args.file, args.model, args.target, args.profile, args.threads,
                                          args.runtime_version, args.out, argv)
            print(f"imported {n} benchmark_model run(s) -> {run_dir}/ (measurements.parquet)")
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
