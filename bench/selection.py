"""Selection on a held-out half: how often simulator.select picks the true best within a budget
when half of the digits-compressed architectures it ranks are predicted, not measured.

    python bench/selection.py [--campaign runs/C] [--splits 20] [--threads 1] [--background-load 0]

The campaign (default: the newest under runs/; it must have measured the bundled zoo, e.g. the
README's first command) holds every candidate's samples. Per split, half the architectures (all
their quantizations) are hidden: the knob models are fitted on the other half, the hidden ones
enter the ranking as predictions (select --design's path), the rest as measured. The truth ranks
every candidate by its measured samples. For 5 budgets (quantiles 20-80% of the medians), per
split: is the selected candidate the true best within the budget, and when not, its true QoE loss
(the true best's expected QoE minus the selected one's; a selection over the budget in truth is
counted as such).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator import select as select_mod  # noqa: E402
from simulator.metrics import QoE  # noqa: E402
from simulator.replay import newest_campaign  # noqa: E402
from simulator.select import designs, knob_models, options, ranked  # noqa: E402
from simulator.world import load_campaign  # noqa: E402


def arch(o) -> tuple:
    return (o.knobs["width"], o.knobs["blocks_removed"], o.knobs["resolution"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--campaign", type=Path)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--background-load", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    camp = load_campaign(args.campaign or newest_campaign())
    opts = [o for o in options(camp, args.background_load, args.threads) if "width" in o.knobs]
    archs = sorted({arch(o) for o in opts})
    meds = np.array([np.median(o.samples) for o in opts])
    budgets = np.quantile(meds, [0.2, 0.35, 0.5, 0.65, 0.8])
    qoe = QoE()
    print(f"campaign {camp.campaign_id} on {camp.target} ({camp.runtime}), threads {args.threads}, background load "
          f"{args.background_load}: {len(opts)} candidates of {len(archs)} architectures; {args.splits} splits, half "
          f"the architectures hidden (predicted) in each; QoE weights {qoe.as_dict()}; energy {camp.energy_source}")
    modes = {"designs at their prediction": 0.0,
             "designs at their accuracy's lower bound (select's)": select_mod.PESSIMISM}
    rng = np.random.default_rng(args.seed)
    res = {(m, b): [] for m in [*modes, "built only (what select recommends to run)"] for b in budgets}
    prop = []     # per split x budget: the proposal's true QoE minus the recommendation's, when it was predicted to win
    errs = []
    for _ in range(args.splits):
        perm = rng.permutation(len(archs))
        hidden = {archs[i] for i in perm[: len(archs) // 2]}
        seen = [o for o in opts if arch(o) not in hidden]
        models = knob_models(seen)
        errs.append((models["sigma_log"], models["acc_mae"]))
        want = {o.candidate_id for o in opts if arch(o) in hidden}
        preds = {m: [o for o in designs(seen, models, args.threads, k) if o.candidate_id in want]
                 for m, k in modes.items()}
        for b in budgets:
            truth = ranked(opts, b, qoe, None, None)
            if not truth[0]["meets"]:
                continue
            true_of = {r["candidate_id"]: r for r in truth}
            for m in res:
                if m[1] != b:
                    continue
                belief = ranked(seen + preds.get(m[0], []), b, qoe, None, None)
                if not belief[0]["meets"]:
                    continue
                sel = belief[0]["candidate_id"]
                res[m].append({"hit": sel == truth[0]["candidate_id"], "loss": truth[0]["qoe"] - true_of[sel]["qoe"],
                               "over": not true_of[sel]["meets"], "predicted": sel in want})
            lb = ranked(seen + preds["designs at their accuracy's lower bound (select's)"], b, qoe, None, None)
            rec = next(r for r in lb if r["candidate_id"] not in want)
            p = next((r for r in lb if r["candidate_id"] in want and r["meets"]), None)
            if p is not None and p["qoe"] > rec["qoe"]:
                prop.append(true_of[p["candidate_id"]]["qoe"] - true_of[rec["candidate_id"]]["qoe"])
    print(f"knob models over the splits (leave-one-architecture-out on the seen half): latency rms error "
          f"{np.expm1(np.median([e[0] for e in errs])):.1%} (log), accuracy mean absolute error "
          f"{100 * np.median([e[1] for e in errs]):.1f} points (medians over splits)")
    for mode in [*modes, "built only (what select recommends to run)"]:
        print(f"\n{mode}:")
        print(f"{'budget ms':>10s} {'cases':>5s} {'true best':>9s} {'loss when not (n)':>18s} {'over budget':>11s} "
              f"{'hidden chosen':>13s}")
        allr = []
        for b in budgets:
            rs = res[(mode, b)]
            allr += rs
            if not rs:
                print(f"{b:10.4g}  none meets it")
                continue
            miss = [r["loss"] for r in rs if not r["hit"]]
            print(f"{b:10.4g} {len(rs):5d} {np.mean([r['hit'] for r in rs]):9.0%} "
                  f"{(f'{np.mean(miss):.4f} ({len(miss)})' if miss else '-'):>18s} {sum(r['over'] for r in rs):11d} "
                  f"{np.mean([r['predicted'] for r in rs]):13.0%}")
        print(f"{'all':>10s} {len(allr):5d} {np.mean([r['hit'] for r in allr]):9.0%}   mean QoE loss "
              f"{np.mean([r['loss'] for r in allr]):.4f} per request")
    top = ranked(opts, budgets[-1], qoe, None, None)[0]["qoe"]
    print(f"\n(the best expected QoE is about {top:.3f}.) A proposal predicted to beat the recommendation (at its lower "
          f"bound) did so in truth in {np.mean([d > 0 for d in prop]) if prop else float('nan'):.0%} of {len(prop)} "
          f"cases; true QoE gain over the recommendation, mean {np.mean(prop) if prop else float('nan'):+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
