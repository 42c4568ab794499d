"""Every policy side by side against the oracle, on traces whose context changes.

    python bench/policies.py [--campaign runs/C ...] [--seeds 5] [--phones 6] [--deadline-ms X ...]

Traces: the shipped ones, plus --phones phone traces from ../shared/data/traces/android-battery
imported here (skipped when that folder is absent). Per campaign and deadline, per policy: the
mean over traces whose load moves (busy CPUs spanning >= 0.25) of qoe_vs_oracle, gap_closed,
miss rate, energy and switches, then mean and standard error over seeds; the differences to
static-belief and greedy are paired by seed. Decision time: median and p99 over all decisions.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator import policies as pol  # noqa: E402
from simulator import replay as rp  # noqa: E402
from simulator.traces import import_file, read_trace, shipped_traces  # noqa: E402
from simulator.world import load_campaign, load_column, place  # noqa: E402

PHONES = ROOT.parent / "shared" / "data" / "traces" / "android-battery"
ADAPTIVE = ("greedy-hysteresis", "alert", "mpc", "adaspring", "linucb", "battery-aware")


def phone_traces(n: int, out: Path) -> list[Path]:
    if not PHONES.is_dir() or n <= 0:
        return []
    by_device: dict[str, Path] = {}
    for f in sorted(PHONES.glob("*.csv")):   # one session per phone, the longest
        dev = f.name.split("-")[0]
        if dev not in by_device or f.stat().st_size > by_device[dev].stat().st_size:
            by_device[dev] = f
    return [import_file("android-battery", f, out, log=lambda m: None) for f in list(by_device.values())[:n]]


def moving(trace, camp) -> bool:
    lc = load_column(trace, None)
    if lc is None:
        return False
    v, _ = trace.held(lc)
    busy = v / 100 * camp.cpu_count if lc == "cpu_load_pct" else v
    lo, hi, w, _ = place(busy, camp.levels)
    pos = camp.levels[lo] + w * (camp.levels[hi] - camp.levels[lo])
    return float(np.nanmax(pos) - np.nanmin(pos)) >= 0.25


def ms(x: np.ndarray) -> str:
    x = np.asarray(x, float)
    se = x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
    return f"{x.mean():7.3f} +- {se:5.3f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--campaign", type=Path, action="append")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--phones", type=int, default=6)
    ap.add_argument("--deadline-ms", type=float, action="append")
    ap.add_argument("--rate-hz", type=float, default=10.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-policies-"))
    paths = shipped_traces() + phone_traces(args.phones, tmp)
    traces = list({t.name: t for t in (read_trace(p) for p in paths)}.values())   # a shipped phone trace once
    names = list(pol.REGISTRY)
    print(f"command: python bench/policies.py {' '.join(sys.argv[1:])}")
    for cpath in args.campaign or [rp.newest_campaign()]:
        camp = load_campaign(cpath)
        mov = [t for t in traces if moving(t, camp)]
        print(f"\ncampaign {camp.campaign_id} ({cpath}): {len(camp.choices)} choices, background levels "
              f"{camp.levels.tolist()}; {len(mov)} of {len(traces)} traces move the load: {', '.join(t.name[:24] for t in mov)}")
        for dl in args.deadline_ms or [rp.default_deadline_ms(camp)]:
            per = {n: {k: [] for k in ("vs", "gap", "miss", "energy", "sw", "qoe")} for n in names}
            dec = {n: [] for n in names}
            for seed in range(args.seeds):
                sc = rp.Scenario(deadline_ms=dl, rate_hz=args.rate_hz, seed=seed)
                rows, _, _ = rp.replay(camp, mov, names, sc)
                for n in names:
                    mine = [r for r in rows if r["policy"] == n]
                    per[n]["vs"].append(np.nanmean([r["qoe_vs_oracle"] for r in mine]))
                    per[n]["gap"].append(np.nanmean([r["gap_closed"] for r in mine]))
                    per[n]["miss"].append(np.mean([r["miss_rate"] for r in mine]))
                    per[n]["energy"].append(np.mean([r["energy_j"] for r in mine]))
                    per[n]["sw"].append(np.mean([r["switches"] for r in mine]))
                    per[n]["qoe"].append(np.mean([r["qoe_mean"] for r in mine]))
                    dec[n] += [(r["decision_us_median"], r["decision_us_p99"]) for r in mine]
            print(f"\ndeadline {dl:.4g} ms, {args.rate_hz:g} req/s, {args.seeds} seeds; mean +- standard error over seeds")
            print(f"{'policy':18s} {'qoe/oracle':>16s} {'gap_closed':>16s} {'miss_rate':>16s} {'energy_j':>16s} "
                  f"{'switches':>18s}  {'decide_us med/p99':>18s}")
            for n in names:
                d = np.array(dec[n])
                print(f"{n:18s} {ms(per[n]['vs'])} {ms(per[n]['gap'])} {ms(per[n]['miss'])} {ms(per[n]['energy'])} "
                      f"{ms(per[n]['sw']):>18s}  {np.median(d[:, 0]):8.1f} / {np.median(d[:, 1]):7.1f}")
            best = max(ADAPTIVE, key=lambda n: np.mean(per[n]["qoe"]))
            q = np.array(per[best]["qoe"])
            verdict = []
            for ref in ("static-belief", "greedy"):
                diff = q - np.array(per[ref]["qoe"])
                se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
                verdict.append(f"beats {ref} by {diff.mean():.4f} QoE ({diff.mean() / se if se > 0 else float('inf'):.1f} s.e.)")
            print(f"best adaptive: {best}: qoe/oracle {np.mean(per[best]['vs']):.3f} (goal >= 0.95), gap_closed "
                  f"{np.mean(per[best]['gap']):.3f} (goal >= 0.8); " + "; ".join(verdict) + " (goal > 2 s.e.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
