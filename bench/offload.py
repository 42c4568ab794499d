"""Offloading under recorded bandwidth: every policy against the oracle, and one split model
measured front and back.

    python bench/offload.py [--campaign runs/C] [--imported 8] [--seeds 3] [--deadline-ms 40 ...] [--split-runs 3]
                            [--stalls absolute|scaled] [--skip-split]

Part 1. The campaign (default: the newest under runs/, else ``python -m harness.collect`` is
run: the bundled zoo on this machine) is the device, slowed by a stated factor (``--slowdown``,
default 2000: these digits CNNs then take 20-170 ms, an MCU-class device) and computing at a
stated power (``--power-w``, 0.1 W); the server is this machine (device_profiles/edge-server-local,
speed-up 1, RTT 20 ms). Traces: the shipped bandwidth traces plus ``--imported`` pensieve
traces from ../shared/data/traces/network-bandwidth (HSDPA 3G and FCC, imported here; skipped
when absent). Per deadline, per policy, means over traces and seeds: QoE / oracle, miss rate,
KB sent per request, the share of requests sent whole or split, fallbacks; and how many
(trace, seed) runs any policy beat the oracle (must be 0).

Part 2 (needs TensorFlow: extra zoo). ``python -m harness.zoo split`` builds one bundled model's
front and back at a split point and ``python -m harness.collect`` measures the whole model and
both parts ``--split-runs`` times; printed: front + back against the whole (within 10%?), the
measured front share against the MAC share the simulator uses, and the end-to-end split
latency (front + transfer of the tensor + back) against offloading the whole input.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.zoo.manifest import BUNDLED  # noqa: E402
from simulator import offload as off  # noqa: E402
from simulator import policies as pol  # noqa: E402
from simulator.replay import Scenario  # noqa: E402
from simulator.traces import import_file, read_trace  # noqa: E402
from simulator.world import load_campaign  # noqa: E402

PENSIEVE = ROOT.parent / "shared" / "data" / "traces" / "network-bandwidth"
SPLIT_MODEL = BUNDLED / "dc-w050-d0-r32-float32.tflite"
SPLIT_AFTER = 13      # a 4x4x16 float tensor: a quarter of the input's bytes, 77% of the MACs before it


def imported_traces(n: int, out: Path) -> list[Path]:
    """n pensieve traces, alternating HSDPA 3G (*.log) and FCC (trace_*), in name order."""
    if not PENSIEVE.is_dir() or n <= 0:
        return []
    hsdpa = sorted(PENSIEVE.glob("*.log"))
    fcc = sorted(p for p in PENSIEVE.glob("trace_*") if not p.name.endswith(".log"))
    pick = [p for pair in zip(hsdpa[:: max(1, len(hsdpa) // n)], fcc[:: max(1, len(fcc) // n)]) for p in pair][:n]
    return [import_file("pensieve", p, out, log=lambda m: None) for p in pick]


def campaign(path: Path | None) -> Path:
    if path:
        return path
    found = sorted(p.parent for p in (ROOT / "runs").glob("*/campaign.sqlite"))
    if found:
        return found[-1]
    subprocess.run([sys.executable, "-m", "harness.collect", "-q"], cwd=ROOT, check=True)
    return sorted(p.parent for p in (ROOT / "runs").glob("*/campaign.sqlite"))[-1]


def part1(args, tmp: Path) -> None:
    camp = load_campaign(campaign(args.campaign))
    setup = off.Setup(off.load_server("edge-server-local"), off.load_radio(camp.profile), camp.profile,
                      args.slowdown, args.power_w, rtt_ms=args.rtt_ms, stalls=args.stalls)
    files = off.model_files(camp, BUNDLED)
    paths = off.bandwidth_traces() + imported_traces(args.imported, tmp)
    traces = list({t.name: t for t in (read_trace(p) for p in paths)}.values())
    names = list(pol.REGISTRY)
    print(f"campaign {camp.campaign_id} ({camp.target}, {len(camp.choices)} choices, {camp.runtime}) x{args.slowdown:g} "
          f"at {args.power_w:g} W as the device ({args.stalls} stalls); server edge-server-local "
          f"(speed-up {setup.server.speedup:g}), "
          f"RTT {setup.rtt:g} ms; radio {camp.profile} (estimate); {len(traces)} traces "
          f"({len(off.bandwidth_traces())} shipped); {args.rate_hz:g} req/s; seeds {args.seeds}")
    for deadline in args.deadline_ms or [40.0, 60.0, 80.0]:
        per: dict[str, list[dict]] = {n: [] for n in names}
        beaten = 0
        runs = 0
        for seed in range(args.seeds):
            rows, _, _ = off.replay_offload(camp, traces, names, Scenario(deadline_ms=deadline, rate_hz=args.rate_hz,
                                                                          seed=seed), setup, files)
            for t in traces:
                mine = {r["policy"]: r for r in rows if r["trace"] == t.name}
                runs += 1
                beaten += any(r["qoe_mean"] > mine["oracle"]["qoe_mean"] + 1e-9 for k, r in mine.items() if k != "oracle")
                for k, r in mine.items():
                    per[k].append(r)
        print(f"\ndeadline {deadline:g} ms: per policy, mean over {len(traces)} traces x {args.seeds} seeds")
        print(f"{'policy':<18} {'qoe':>7} {'vs_oracle':>9} {'miss':>6} {'KB/req':>7} {'server':>7} {'split':>6} "
              f"{'fallbacks':>9} {'decide_us':>9}")
        for k in names:
            rs = per[k]

            def m(c, rs=rs):
                return float(np.nanmean([r[c] for r in rs]))
            print(f"{k:<18} {m('qoe_mean'):7.4f} {m('qoe_vs_oracle'):9.3f} {m('miss_rate'):6.3f} "
                  f"{m('kb_sent_per_request'):7.2f} {m('server_frac'):7.3f} {m('split_frac'):6.3f} {m('fallbacks'):9.1f} "
                  f"{float(np.median([r['decision_us_median'] for r in rs])):9.1f}")
        print(f"runs where a policy beat the oracle: {beaten} of {runs}")


def part2(args, tmp: Path) -> None:
    if importlib.util.find_spec("tensorflow") is None:
        print("\nsplit model: skipped (building parts needs TensorFlow: pip install -e '.[zoo]')")
        return
    from harness.store import Store
    from harness.zoo.split import point, split_points
    d = tmp / "split"
    subprocess.run([sys.executable, "-m", "harness.zoo", "split", str(SPLIT_MODEL), "--after", str(SPLIT_AFTER),
                    "--out", str(d)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    sp, pt = split_points(SPLIT_MODEL), point(SPLIT_MODEL, SPLIT_AFTER)
    med: dict[str, list[float]] = {}
    for i in range(args.split_runs):
        out = tmp / f"split-runs-{i}"
        subprocess.run([sys.executable, "-m", "harness.collect", "--zoo", str(d), "--threads", "1", "--background-load", "0",
                        "--runs", "300", "--out", str(out), "-q"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        store = Store(next(out.glob("*/campaign.sqlite")))
        cid = store.campaign_ids()[0]
        for r in store.rows(cid):
            part = "front" if "-front" in r["candidate_id"] else "back" if "-back" in r["candidate_id"] else "whole"
            med.setdefault(part, []).append(r["latency_ms_median"])
        info = store.targets(cid)[0]["info"]
        store.close()
    f, b, w = (np.array(med[k]) for k in ("front", "back", "whole"))
    ratio = (f + b) / w
    print(f"\nsplit model {SPLIT_MODEL.name} after op {SPLIT_AFTER} (tensor {'x'.join(map(str, pt.shape))} {pt.dtype}, "
          f"{pt.bytes} B vs input {sp.input_bytes} B), measured here ({info['runtime']} {info['runtime_version']}, "
          f"1 thread), {args.split_runs} collections x 300 runs, medians in ms:")
    for i in range(len(w)):
        print(f"  run {i}: front {f[i]:.5f} + back {b[i]:.5f} = {f[i] + b[i]:.5f}; whole {w[i]:.5f}; "
              f"sum / whole {ratio[i]:.3f}")
    print(f"  sum within 10% of the whole: {bool((np.abs(ratio - 1) <= 0.10).all())} (median ratio {np.median(ratio):.3f}); "
          f"front share measured {np.median(f / w):.3f}, MACs {pt.macs_share:.3f} (what the simulator uses)")
    bw = args.transfer_mbps
    k = args.slowdown
    xfer = lambda nbytes: nbytes * 8e-6 / bw * 1e3   # noqa: E731
    rtt = args.rtt_ms
    split = np.median(f) * k + xfer(pt.bytes) + rtt + np.median(b) + xfer(sp.output_bytes)
    whole_off = xfer(sp.input_bytes) + rtt + np.median(w) + xfer(sp.output_bytes)
    print(f"  at {bw:g} Mbit/s, RTT {rtt:g} ms, device x{k:g} (measured parts, stated link): split = front "
          f"{np.median(f) * k:.2f} + up {xfer(pt.bytes):.2f} + RTT + back {np.median(b):.4f} + down "
          f"{xfer(sp.output_bytes):.3f} = {split:.2f} ms; offload whole = up {xfer(sp.input_bytes):.2f} + RTT + "
          f"{np.median(w):.4f} + down = {whole_off:.2f} ms; device alone {np.median(w) * k:.2f} ms")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--campaign", type=Path)
    ap.add_argument("--imported", type=int, default=8, help="pensieve traces imported from ../shared (0: none)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--deadline-ms", type=float, action="append")
    ap.add_argument("--rate-hz", type=float, default=10.0)
    ap.add_argument("--slowdown", type=float, default=2000.0)
    ap.add_argument("--power-w", type=float, default=0.1)
    ap.add_argument("--stalls", choices=("absolute", "scaled"), default="absolute")
    ap.add_argument("--rtt-ms", type=float, default=20.0)
    ap.add_argument("--split-runs", type=int, default=3)
    ap.add_argument("--transfer-mbps", type=float, default=1.0, help="bandwidth of part 2's transfer arithmetic")
    ap.add_argument("--skip-split", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-offload-"))
    part1(args, tmp)
    if not args.skip_split:
        part2(args, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
