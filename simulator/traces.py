"""Context traces: the canonical schema (the one ``harness.record`` writes), a validating reader,
and importers for other formats.

    python -m simulator.traces import --format android-battery|pensieve|tegrastats|record FILE... --out DIR
    python -m simulator.traces show TRACE.csv

Canonical: CSV, first column ``t_s`` (seconds, strictly increasing), every other column numeric
with its unit in its name (``cpu_load_pct``, ``bandwidth_mbps``, ``temp_c_max``) or in the
manifest's ``units`` (``background_load``: busy processes). An empty cell is a missing value,
never 0. ``FILE.manifest.json`` beside it says where the trace came from (source file, sha256,
format) and the units.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness import __version__
from harness.cli import run
from harness.errors import BadInput
from harness.record import TRACE_SCHEMA_VERSION
from harness.record import UNITS as RECORD_UNITS

SHIPPED = Path(__file__).resolve().parents[1] / "traces"
# A column whose name ends so carries its unit (harness.record's names and the importers').
UNIT_SUFFIXES = {"_s": "s", "_ms": "ms", "_pct": "%", "_mhz": "MHz", "_c": "deg C", "_mb": "MB", "_mw": "mW",
                 "_mbps": "Mbit/s", "_mj": "mJ", "_hz": "1/s", "_v": "V", "_wh": "Wh", "_1m": "runnable tasks"}
# A row more than this many median periods after the one before starts after a gap.
GAP_FACTOR = 2.5


@dataclass(frozen=True)
class Trace:
    """A canonical trace in memory: ``columns`` are float arrays, NaN where a value is missing."""
    name: str
    path: Path | None
    t_s: np.ndarray
    columns: dict[str, np.ndarray]
    units: dict[str, str]
    manifest: dict = field(default_factory=dict)
    sha256: str = ""

    @property
    def duration_s(self) -> float:
        return float(self.t_s[-1] - self.t_s[0]) if len(self.t_s) > 1 else 0.0

    @property
    def period_s(self) -> float:
        return float(np.median(np.diff(self.t_s))) if len(self.t_s) > 1 else 1.0

    def row_at(self, t: np.ndarray) -> np.ndarray:
        """Index of the last row at or before each time (0 before the first row)."""
        return np.clip(np.searchsorted(self.t_s, t, side="right") - 1, 0, len(self.t_s) - 1)

    def held(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(values, held): the column with each missing value replaced by the last one before it
        (the first one after it at the start), and which rows were filled in so."""
        v = self.columns[name].astype(float)
        miss = np.isnan(v)
        if miss.all():
            return v, miss
        idx = np.where(~miss, np.arange(len(v)), 0)
        np.maximum.accumulate(idx, out=idx)
        first = int(np.argmax(~miss))
        idx[:first] = first
        return v[idx], miss

    def gap_after(self) -> np.ndarray:
        """True for a row followed by a gap (the next row comes more than GAP_FACTOR periods later)."""
        if len(self.t_s) < 3:
            return np.zeros(len(self.t_s), bool)
        d = np.diff(self.t_s)
        return np.append(d > GAP_FACTOR * np.median(d), False)


def unit_of(col: str, manifest_units: dict) -> str | None:
    if col in manifest_units and manifest_units[col]:
        return str(manifest_units[col])
    for suf, unit in UNIT_SUFFIXES.items():
        if col.endswith(suf):
            return unit
    return RECORD_UNITS.get(col)


def _parse_csv(path: Path, strict: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(columns, t_s, values[rows, columns-1]) of a canonical CSV. Not strict: rows may be out of
    time order (the importer sorts them)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read the trace ({type(e).__name__})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or not rows[0]:
        raise BadInput(f"{path}: empty file; expected a CSV header starting with t_s")
    head = [h.strip() for h in rows[0]]
    if head[0] != "t_s":
        raise BadInput(f"{path}:1: the first column must be t_s (seconds), got {head[0]!r}")
    if len(set(head)) != len(head):
        raise BadInput(f"{path}:1: a column name appears twice")
    data = [r for r in rows[1:] if any(x.strip() for x in r)]
    if not data:
        raise BadInput(f"{path}: no rows after the header")
    vals = np.full((len(data), len(head)), np.nan)
    for i, r in enumerate(data):
        line = i + 2
        if len(r) != len(head):
            raise BadInput(f"{path}:{line}: {len(r)} fields, the header has {len(head)}")
        for j, x in enumerate(r):
            x = x.strip()
            if x == "":
                if j == 0:
                    raise BadInput(f"{path}:{line}: t_s is empty")
                continue
            try:
                vals[i, j] = float(x)
            except ValueError:
                raise BadInput(f"{path}:{line}: column {head[j]}: expected a number, got {x!r}") from None
            if not np.isfinite(vals[i, j]):
                raise BadInput(f"{path}:{line}: column {head[j]}: expected a finite number, got {x!r}")
    t = vals[:, 0]
    if strict:
        bad = np.nonzero(np.diff(t) <= 0)[0]
        if len(bad):
            i = int(bad[0]) + 1
            raise BadInput(f"{path}:{i + 2}: t_s {t[i]:g} does not increase (previous row {t[i - 1]:g}); a canonical "
                           f"trace's t_s increases: import the source with python -m simulator.traces import")
    return head, t, vals[:, 1:]


def read_trace(path: str | Path) -> Trace:
    """Read and validate a canonical trace (and its manifest, when there is one)."""
    path = Path(path)
    mpath = path.with_name(path.name + ".manifest.json")
    manifest: dict = {}
    if mpath.exists():
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as e:
            raise BadInput(f"{mpath}: not a readable manifest ({type(e).__name__})") from None
        if not isinstance(manifest, dict):
            raise BadInput(f"{mpath}: expected a JSON object")
    head, t, vals = _parse_csv(path, strict=True)
    units = {"t_s": "s"}
    for c in head[1:]:
        u = unit_of(c, manifest.get("units") or {})
        if u is None:
            raise BadInput(f"{path}:1: column {c!r} has no unit: put it in the name (e.g. {c}_pct, {c}_mbps) "
                           f"or in {mpath.name} 'units'")
        units[c] = u
    return Trace(path.stem, path, t, {c: vals[:, j] for j, c in enumerate(head[1:])}, units, manifest,
                 hashlib.sha256(path.read_bytes()).hexdigest())


# ---------------------------------------------------------------- importers
# Each returns (t_s, columns, units, extra manifest fields); rows may be out of order.
Imported = tuple[np.ndarray, dict[str, np.ndarray], dict[str, str], dict]


def import_record(path: Path, interval_s: float | None = None) -> Imported:
    head, t, vals = _parse_csv(path, strict=False)
    src = path.with_name(path.name + ".manifest.json")
    extra: dict = {}
    mu = {}
    if src.exists():
        try:
            extra["source_manifest"] = json.loads(src.read_text())
            mu = extra["source_manifest"].get("units") or {}
        except (OSError, ValueError):
            raise BadInput(f"{src}: not a readable manifest") from None
    units = {}
    for c in head[1:]:
        u = unit_of(c, mu)
        if u is None:
            raise BadInput(f"{path}:1: column {c!r} has no unit (in its name or the manifest's units)")
        units[c] = u
    return t, {c: vals[:, j] for j, c in enumerate(head[1:])}, units, extra


# android-battery (mpalaourg/Thesis): column -> (canonical name, unit, conversion)
_ANDROID = {"level": ("battery_pct", "%", float), "temperature": ("battery_temp_c", "deg C", float),
            "voltage": ("battery_voltage_v", "V", float), "usage": ("cpu_load_pct", "% of CPU (the phone's usage)", float),
            "RAM": ("mem_available_pct", "% of RAM available", float),
            "status": ("charging", "0/1 (status 2 = charging)", lambda s: float(int(float(s)) == 2)),
            "isInteractive": ("screen_on", "0/1", lambda s: float(s.strip().lower() == "true")),
            "Brightness": ("brightness", "screen brightness level (0-255)", float),
            "WiFi": ("wifi_on", "0/1", lambda s: float(s.strip().lower() == "true")),
            "Cellular": ("cellular_on", "0/1", lambda s: float(s.strip().lower() == "true"))}


def import_android_battery(path: Path, interval_s: float | None = None) -> Imported:
    try:
        rows = list(csv.DictReader(path.read_text().splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BadInput(f"{path}: cannot read ({type(e).__name__})") from None
    if not rows or "Timestamp" not in rows[0]:
        raise BadInput(f"{path}:1: expected the android-battery CSV header (Timestamp, level, usage, ...)")
    have = [k for k in _ANDROID if k in rows[0]]
    t = np.empty(len(rows))
    cols = {_ANDROID[k][0]: np.full(len(rows), np.nan) for k in have}
    for i, r in enumerate(rows):
        try:
            t[i] = float(r["Timestamp"]) / 1000.0
        except (TypeError, ValueError):
            raise BadInput(f"{path}:{i + 2}: Timestamp: expected milliseconds since the epoch, "
                           f"got {r.get('Timestamp')!r}") from None
        for k in have:
            x = r.get(k)
            if x is None or x.strip() == "":
                continue
            try:
                cols[_ANDROID[k][0]][i] = _ANDROID[k][2](x)
            except ValueError:
                raise BadInput(f"{path}:{i + 2}: {k}: expected a number, got {x!r}") from None
    first = rows[0]
    extra = {"device": {"brandModel": first.get("brandModel"), "androidVersion": first.get("androidVersion")},
             "epoch_s_at_t0": float(np.min(t))}
    return t - np.min(t), cols, {_ANDROID[k][0]: _ANDROID[k][1] for k in have}, extra


def import_pensieve(path: Path, interval_s: float | None = None) -> Imported:
    ts, bw = [], []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read ({type(e).__name__})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise BadInput(f"{path}:{i}: expected two whitespace-separated numbers (time s, throughput Mbit/s)")
        try:
            a, b = float(parts[0]), float(parts[1])
        except ValueError:
            raise BadInput(f"{path}:{i}: expected two numbers, got {line.strip()!r}") from None
        ts.append(a)
        bw.append(b)
    if not ts:
        raise BadInput(f"{path}: no rows")
    t = np.asarray(ts)
    return t - t.min(), {"bandwidth_mbps": np.asarray(bw)}, {"bandwidth_mbps": "Mbit/s (throughput)"}, {}


def import_tegrastats(path: Path, interval_s: float | None = None) -> Imported:
    from datetime import datetime

    from harness.telemetry.parsers import ParseError, parse_tegrastats
    try:
        rows = parse_tegrastats(path.read_text())
    except ParseError as e:
        raise BadInput(f"{path}: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read ({type(e).__name__})") from None
    if all("timestamp" in r for r in rows):
        t = np.array([datetime.fromisoformat(r["timestamp"]).timestamp() for r in rows])
        t -= t.min()
    elif interval_s:
        t = np.arange(len(rows)) * float(interval_s)
    else:
        raise BadInput(f"{path}: the log has no timestamps: give --interval-s (tegrastats --interval, in seconds)")
    n = len(rows)

    def col(fn):
        out = np.full(n, np.nan)
        for i, r in enumerate(rows):
            v = fn(r)
            if v is not None:
                out[i] = v
        return out

    def cpu(r, key, agg):
        v = [x for k, x in r.items() if re.fullmatch(rf"cpu\d+_{key}", k)]
        return agg(v) if v else None
    cols = {"cpu_load_pct": col(lambda r: cpu(r, "load_pct", lambda v: sum(v) / len(v))),
            "cpu_freq_mhz_mean": col(lambda r: cpu(r, "freq_mhz", lambda v: sum(v) / len(v))),
            "cpu_freq_mhz_min": col(lambda r: cpu(r, "freq_mhz", min)),
            # PMIC@100C is a fixed placeholder on many modules, not a reading
            "temp_c_max": col(lambda r: max([x for k, x in r.items() if k.endswith("_temp_c") and not k.startswith("pmic")],
                                             default=None)),
            "gpu_load_pct": col(lambda r: r.get("gpu_load_pct")), "gpu_freq_mhz": col(lambda r: r.get("gpu_freq_mhz")),
            "power_mw": col(lambda r: r.get("board_power_mw", r.get("rails_power_sum_mw"))),
            "mem_available_mb": col(lambda r: r["ram_total_mb"] - r["ram_used_mb"] if "ram_total_mb" in r else None)}
    cols = {k: v for k, v in cols.items() if not np.isnan(v).all()}
    units = {"cpu_load_pct": "% (mean over online CPUs)", "power_mw": "mW (board rail, or the sum of module rails)"}
    return t, cols, {k: units.get(k, unit_of(k, {}) or "") for k in cols}, \
        {"power_scope": rows[0].get("power_scope"), "clock": "tegrastats timestamps" if "timestamp" in rows[0]
         else f"row index x --interval-s {interval_s}"}


IMPORTERS: dict[str, Callable[..., Imported]] = {
    "record": import_record, "android-battery": import_android_battery, "pensieve": import_pensieve,
    "tegrastats": import_tegrastats}


def canonicalize(t: np.ndarray, cols: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray], int, int]:
    """Sort rows by time (stably) and drop rows whose time repeats an earlier one (the first kept):
    (t, cols, rows moved, rows dropped)."""
    order = np.argsort(t, kind="stable")
    moved = int(np.sum(order != np.arange(len(t))))
    t = t[order]
    keep = np.append(True, np.diff(t) > 0)
    return t[keep], {k: v[order][keep] for k, v in cols.items()}, moved, int(np.sum(~keep))


def write_trace(out: Path, t: np.ndarray, cols: dict[str, np.ndarray], units: dict[str, str], manifest: dict) -> Path:
    """Write a canonical CSV and its manifest (each through a temporary file)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    names = list(cols)
    lines = [",".join(["t_s", *names])]
    for i in range(len(t)):
        vals = [f"{t[i]:.6g}" if abs(t[i]) < 1e5 else f"{t[i]:.3f}"]
        vals += ["" if np.isnan(cols[c][i]) else f"{cols[c][i]:.10g}" for c in names]
        lines.append(",".join(vals))
    doc = {"schema_version": TRACE_SCHEMA_VERSION, "kind": "context-trace", "file": out.name, "rows": len(t),
           "period_s": float(np.median(np.diff(t))) if len(t) > 1 else None,
           "columns": ["t_s", *names], "units": {"t_s": "s", **{c: units[c] for c in names}}, **manifest}
    tmp = out.with_name(out.name + ".part")
    tmp.write_text("\n".join(lines) + "\n")
    mtmp = out.with_name(out.name + ".manifest.json.part")
    mtmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    tmp.replace(out)
    mtmp.replace(out.with_name(out.name + ".manifest.json"))
    return out


def import_file(fmt: str, src: Path, out_dir: Path, interval_s: float | None = None, log=print) -> Path:
    t, cols, units, extra = IMPORTERS[fmt](src, interval_s)
    t, cols, moved, dropped = canonicalize(np.asarray(t, float), cols)
    if moved or dropped:
        log(f"warning: {src}: {moved} row(s) out of time order sorted, {dropped} row(s) with a repeated time dropped")
    if len(t) == 0:
        raise BadInput(f"{src}: no rows left")
    manifest = {"source": {"file": str(src), "name": src.name, "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                           "format": fmt, "rows_sorted": moved, "rows_dropped": dropped},
                "imported_by": f"edge-harness {__version__} simulator.traces import",
                "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "complete": True, **extra}
    # pensieve names have dots of their own (trace_1_http---www.yahoo.com): only a text extension goes
    stem = src.stem if src.suffix.lower() in (".csv", ".txt", ".log", ".tsv", ".dat") else src.name
    return write_trace(out_dir / f"{stem}.csv", t, cols, units, manifest)


def shipped_traces() -> list[Path]:
    """The canonical traces shipped with the project (traces/*.csv), wherever the command runs."""
    return sorted(SHIPPED.glob("*.csv"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulator.traces", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="convert traces of another format into canonical CSV + manifest")
    imp.add_argument("--format", required=True, choices=sorted(IMPORTERS), help="the source files' format")
    imp.add_argument("files", nargs="+", type=Path, help="source files (any name; pensieve files need no extension)")
    imp.add_argument("--out", type=Path, required=True,
                     help="folder for DIR/<input file stem>.csv + .manifest.json (other files in it are left alone)")
    imp.add_argument("--interval-s", type=float, help="tegrastats: seconds between lines of a log without timestamps")
    show = sub.add_parser("show", help="validate a canonical trace and print its columns")
    show.add_argument("trace", type=Path, help="canonical trace CSV")
    args = ap.parse_args(argv)
    return run(lambda: _main(args))


def _main(args) -> int:
    if args.cmd == "show":
        tr = read_trace(args.trace)
        print(f"{args.trace}: {len(tr.t_s)} rows over {tr.duration_s:.1f} s (period {tr.period_s:.3g} s), "
              f"{int(tr.gap_after().sum())} gap(s)")
        for c, v in tr.columns.items():
            ok = v[~np.isnan(v)]
            rng = f"{ok.min():.4g} .. {ok.max():.4g}" if len(ok) else "all missing"
            print(f"  {c:24s} {tr.units[c]:40s} {rng}  ({int(np.isnan(v).sum())} missing)")
        return 0
    if args.interval_s is not None and not (args.interval_s > 0):
        raise BadInput(f"--interval-s: expected seconds > 0, got {args.interval_s}")
    for f in args.files:
        if not f.is_file():
            raise BadInput(f"{f}: no such file")
    for f in args.files:
        print(import_file(args.format, f, args.out, args.interval_s, log=lambda m: print(m, file=sys.stderr)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
