"""python -m harness.record: record a context trace on a target.

    python -m harness.record --target local --duration 60 --period 0.5 --out traces/idle.csv
    python -m harness.record -i targets.yaml --target pi5 --duration 300 --period 1 \\
        --load 2 --load-start 60 --load-stop 180 --out pi5-load.csv

The trace is CSV in the canonical format: time in ``t_s`` (seconds since the first sample, on the
device's monotonic clock), then context columns with their units in their names. Rows are
written and flushed as they arrive, so a dropped connection loses nothing already recorded. Next
to it, ``FILE.manifest.json`` says where it came from: target, profile, period, sources, the
workload, and whether the recording completed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from harness import __version__
from harness.cli import number, ssh_arguments
from harness.errors import BadInput, HarnessError
from harness.inventory import PROFILES_DIR, load_inventory
from harness.runner import RunSettings, Session
from harness.transport.base import TransportError

TRACE_SCHEMA_VERSION = 1
# Canonical columns, in order; a column the target cannot provide is left out of the file.
COLUMNS = ("t_s", "cpu_load_pct", "cpu_freq_mhz_mean", "cpu_freq_mhz_min", "temp_c_max", "mem_available_mb",
           "loadavg_1m", "power_mw", "battery_pct", "charging", "battery_temp_c", "gpu_load_pct", "gpu_freq_mhz",
           "nvpmodel", "thermal_status", "throttled", "background_load")
UNITS = {"t_s": "s", "cpu_load_pct": "% of all CPUs busy over the period (/proc/stat)",
         "cpu_freq_mhz_mean": "MHz (mean over CPUs)", "cpu_freq_mhz_min": "MHz (slowest CPU)",
         "temp_c_max": "deg C (hottest thermal zone)", "mem_available_mb": "MB", "loadavg_1m": "runnable tasks",
         "power_mw": "mW (power meter; mean over the period for energy counters)", "battery_pct": "%",
         "charging": "0/1", "battery_temp_c": "deg C", "gpu_load_pct": "%", "gpu_freq_mhz": "MHz",
         "nvpmodel": "Jetson power mode id",
         "thermal_status": "Android thermal status 0-6 (none, light, moderate, severe, critical, emergency, shutdown)",
         "throttled": "0/1 (throttle counter rose, vcgencmd bits 0-3, or Android thermal status above none)",
         "background_load": "busy processes the recorder started"}


def row_of(ctx: dict, prev: dict | None, t0: float, n_cpus: int, load: int) -> dict:
    """One canonical row from a context snapshot (and the previous one, for rates)."""
    r: dict = {"t_s": round(ctx["t_mono"] - t0, 4), "background_load": load}
    if prev is not None and "system_cpu_busy_s" in ctx and "system_cpu_busy_s" in prev:
        dt = ctx["t_mono"] - prev["t_mono"]
        if dt > 0:
            busy = (ctx["system_cpu_busy_s"] - prev["system_cpu_busy_s"]) / dt / max(1, n_cpus)
            r["cpu_load_pct"] = round(100.0 * min(1.0, max(0.0, busy)), 2)
    f = ctx.get("cpu_freq_mhz") or {}
    if f:
        r["cpu_freq_mhz_mean"] = round(sum(f.values()) / len(f), 1)
        r["cpu_freq_mhz_min"] = min(f.values())
    if ctx.get("temp_c"):
        r["temp_c_max"] = max(ctx["temp_c"].values())
    for k in ("mem_available_mb", "battery_pct", "battery_temp_c", "gpu_load_pct", "gpu_freq_mhz", "nvpmodel",
              "power_mw"):   # snapshot keys that are canonical columns already
        if k in ctx:
            r[k] = round(ctx[k], 3) if isinstance(ctx[k], float) else ctx[k]
    if "charging" in ctx:
        r["charging"] = int(bool(ctx["charging"]))
    if ctx.get("loadavg"):
        r["loadavg_1m"] = ctx["loadavg"][0]
    if "energy_counter_mj" in ctx and prev is not None and "energy_counter_mj" in prev:
        dt = ctx["t_mono"] - prev["t_mono"]
        de = ctx["energy_counter_mj"] - prev["energy_counter_mj"]
        if dt > 0 and de >= 0:   # a wrapped counter is a gap, not a negative power
            r["power_mw"] = round(de / dt, 1)
    thr = None
    if prev is not None and "throttle_count" in ctx and "throttle_count" in prev:
        thr = int(ctx["throttle_count"] > prev["throttle_count"])
    if "vcgencmd_throttled" in ctx:
        thr = max(thr or 0, int(bool(ctx["vcgencmd_throttled"] & 0xF)))
    if "android_thermal_status" in ctx:
        r["thermal_status"] = ctx["android_thermal_status"]
        thr = max(thr or 0, int(ctx["android_thermal_status"] > 0))
    if thr is not None:
        r["throttled"] = thr
    return r


class TraceWriter:
    """CSV rows flushed as they come. The header is the union of the first two rows' columns (rates
    such as cpu_load_pct need a previous sample, so the first row lacks them): the first row is
    held until the second arrives."""

    def __init__(self, path: Path):
        self.path = path
        self.f = None
        self.cols: list[str] = []
        self.n = 0
        self._first: dict | None = None

    def write(self, row: dict) -> None:
        if self.f is None and self._first is None:
            self._first = row
            return
        if self.f is None:
            self._open([self._first, row])
            self._put(self._first)
            self._first = None
        self._put(row)

    def _open(self, rows: list[dict]) -> None:
        self.cols = [c for c in COLUMNS if any(c in r for r in rows)]
        self.f = self.path.open("w", newline="")
        self.w = csv.DictWriter(self.f, self.cols, extrasaction="ignore", lineterminator="\n")
        self.w.writeheader()

    def _put(self, row: dict) -> None:
        self.w.writerow({c: row.get(c, "") for c in self.cols})
        self.f.flush()
        self.n += 1

    def close(self) -> None:
        if self.f is None and self._first is not None:
            self._open([self._first])
            self._put(self._first)
        if self.f is not None:
            self.f.close()


def record(target, duration_s: float, period_s: float, out: Path, settings: RunSettings,
           load: int = 0, load_start_s: float = 0.0, load_stop_s: float | None = None, power: bool = True,
           log=lambda m: None) -> dict:
    """Record on ``target``; return the manifest (also written next to ``out``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest = {"schema_version": TRACE_SCHEMA_VERSION, "kind": "context-trace", "file": out.name,
                "target": target.name, "profile": target.profile.name, "profile_sha256": target.profile.sha256,
                "transport": target.transport, "host": target.host or target.serial, "period_s": period_s,
                "duration_s_requested": duration_s, "clock": "device monotonic (t_s = seconds since first row)",
                "workload": {"background_load": load, "start_s": load_start_s, "stop_s": load_stop_s} if load else None,
                "units": {}, "harness_version": __version__, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "complete": False, "error": None}
    mpath = out.with_name(out.name + ".manifest.json")
    w = TraceWriter(out)
    s = Session(target, settings)
    loaded = 0
    try:
        info = s.open()
        manifest["agent"] = {k: info.get(k) for k in ("hostname", "machine", "release", "cpu_count", "python",
                                                      "power_source")}
        n_cpus = int(info.get("cpu_count") or 1)
        host_meter = s.host_meter if power else None    # a meter on this computer is read here
        req = {"cmd": "context", "power": power and s.host_meter is None}
        if target.power_meter and s.host_meter is None:
            req["power_meter"] = target.power_meter
        prev = None
        t0 = None
        start = time.monotonic()
        k = 0
        while True:
            due = start + k * period_s
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            el = time.monotonic() - start
            if el > duration_s + 1e-9:
                break
            want = load if (load and el >= load_start_s and (load_stop_s is None or el < load_stop_s)) else 0
            if want != loaded:
                r = s.request({"cmd": "load", "n": want}, timeout=30)
                if not r.get("ok"):
                    raise TransportError(f"cannot start background load: {r.get('error')}")
                loaded = want
            r = s.request(req, timeout=max(30.0, 5 * period_s))
            if not r.get("ok"):
                raise TransportError(f"context request failed: {r.get('error')}")
            ctx = r["context"]
            if host_meter is not None:
                ctx["power_source"] = host_meter.name
                v = host_meter.meter.read()
                if v is not None:
                    ctx["power_mw"] = v
            if t0 is None:
                t0 = ctx["t_mono"]
            if "power_source" in ctx:
                manifest["power_source"] = ctx["power_source"]
            w.write(row_of(ctx, prev, t0, n_cpus, loaded))
            prev = ctx
            k += 1
        manifest["complete"] = True
    except (TransportError, ValueError) as e:
        manifest["error"] = str(e)
    except KeyboardInterrupt:   # Ctrl-C: the rows so far are the recording, said in the manifest
        manifest["error"] = "interrupted (Ctrl-C)"
        manifest["interrupted"] = True
    finally:
        w.close()
        s.close()
        manifest["rows"] = w.n
        manifest["columns"] = w.cols
        manifest["units"] = {c: UNITS[c] for c in w.cols}
        manifest.setdefault("power_source", None)
        tmp = mpath.with_suffix(".part")
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
        tmp.replace(mpath)
    return manifest


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness.record", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="local", help="target name (default: local, the local machine)")
    ap.add_argument("--inventory", "-i", type=Path, help="targets YAML (default: the local machine only)")
    ap.add_argument("--duration", type=float, required=True, help="seconds (> 0)")
    ap.add_argument("--period", type=float, required=True, help="seconds between samples (> 0)")
    ap.add_argument("--out", type=Path, required=True, help="trace CSV (a .manifest.json is written beside it)")
    ap.add_argument("--load", type=number("--load", 0, int), default=0, help="busy processes to run on the target as a "
                    "workload (default 0)")
    ap.add_argument("--load-start", type=number("--load-start", 0), default=0.0,
                    help="start the load this many seconds in (default 0)")
    ap.add_argument("--load-stop", type=number("--load-stop", 0), help="stop it this many seconds in (default: at the end)")
    ap.add_argument("--no-power", action="store_true", help="do not read the power meter")
    ssh_arguments(ap)
    ap.add_argument("--profiles", type=Path, default=PROFILES_DIR, help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        import math
        if not (args.duration > 0 and args.period > 0 and math.isfinite(args.duration) and math.isfinite(args.period)):
            # nan compared false and recorded until killed
            raise BadInput(f"--duration and --period: expected seconds > 0, got {args.duration} and {args.period}")
        targets = {t.name: t for t in load_inventory(args.inventory, args.profiles)}
        if args.target not in targets:
            raise BadInput(f"--target: no target named {args.target!r} (known: {', '.join(sorted(targets))})")
        settings = RunSettings(known_hosts=args.known_hosts, ssh_config=args.ssh_config,
                               trust_new_hosts=args.trust_new_hosts)
        m = record(targets[args.target], args.duration, args.period, args.out, settings, args.load, args.load_start,
                   args.load_stop, not args.no_power)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{m['rows']} rows, {len(m['columns'])} columns ({', '.join(m['columns'])}) -> {args.out}; "
          f"power: {m['power_source'] or 'no meter'}")
    if not m["complete"]:
        print(f"error: {args.out}: recording stopped after {m['rows']} rows: {m['error']} "
              f"(rows so far are kept)", file=sys.stderr)
        return 130 if m.get("interrupted") else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
