"""Which reference model makes relative latency repeat? (what `--reference auto` rests on)

Every candidate of a zoo is paired, in the same job, with each bundled reference in turn
(``dc-w100-d0-r64`` as float32, int8 and dynamic-range int8), the way the agent pairs a job with
its reference (300 alternating pairs; ratio = median pair ratio). That is repeated in rounds with
a pause between them, so that the machine's state changes between rounds the way it changes
between campaigns. Prints, per candidate class (:func:`harness.zoo.graph.reference_class`)
and per reference, how often two rounds agree within 10%: with each fixed reference, with
``auto`` (:data:`harness.collect.AUTO_REFERENCES` of the candidate's class, or the small
:data:`harness.collect.AUTO_SMALL_REFERENCE` in a round where the candidate's median is below
``AUTO_SMALL_BELOW_MS``, as the agent picks per job), with the class rule alone, and for the
model's latency in ms alone. ``auto`` compares ratio x the reference's median ms over all rounds
(what ``latency_ms_corrected`` does), so that a candidate near the threshold which takes one
reference in one round and the other in the next is compared in the same unit.

    python bench/reference_choice.py --zoo zoo/mbv2 --rounds 5     # ~4 min a round for 72 models
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import agent  # noqa: E402
from harness.collect import AUTO_REFERENCES, AUTO_SMALL_BELOW_MS, AUTO_SMALL_REFERENCE, _reference  # noqa: E402
from harness.zoo.graph import read_graph, reference_class  # noqa: E402
from harness.zoo.manifest import load_manifest  # noqa: E402

CANDIDATE_REFERENCES = [f"dc-w100-d0-r64-{q}" for q in ("float32", "int8", "dynamic-int8")] + [AUTO_SMALL_REFERENCE]


def one_round(rt, cands, refs: dict[str, str], pairs: int) -> dict[str, dict]:
    out = {}
    for c in cands:
        it = rt.Interpreter(model_path=c.path, num_threads=1)
        it.allocate_tensors()
        agent._inputs(it, 0)
        for _ in range(20):
            it.invoke()
        out[c.id] = {}
        for rid, path in refs.items():
            d = agent._paired_reference(rt, it, {"model": path, "id": rid, "n": pairs}, 1, pairs, time.perf_counter)
            out[c.id][rid] = float(np.median(np.asarray(d["model_ms"]) / np.asarray(d["reference_ms"])))
            out[c.id].setdefault("ms", float(np.median(d["model_ms"])))   # in ms, from the first pairing
        del it
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pause", type=float, default=90.0, help="seconds between rounds")
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--also", default="", help="more references to compare, comma-separated candidate ids of the "
                    "bundled zoo (e.g. dc-w025-d2-r32-float32, a small one)")
    ap.add_argument("--json", type=Path, help="also write every round's per-candidate ratios (and ms) here, "
                    "with each candidate's class and MACs, for rules this table does not show (by size)")
    args = ap.parse_args(argv)
    rt = agent.load_runtime()
    _, cands = load_manifest(args.zoo)
    extra = [r for r in args.also.split(",") if r and r not in CANDIDATE_REFERENCES]
    refs = {rid: _reference(rid, None)["path"] for rid in CANDIDATE_REFERENCES + extra}
    graphs = {c.id: read_graph(c.path) for c in cands}
    classes = {cid: reference_class(g) for cid, g in graphs.items()}
    kinds = list(AUTO_REFERENCES)
    rounds = []
    for i in range(args.rounds):
        if i:
            time.sleep(args.pause)
        t0 = time.time()
        rounds.append(one_round(rt, cands, refs, args.pairs))
        print(f"round {i + 1}: {time.time() - t0:.0f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"references": list(refs), "rounds": rounds, "pairs": args.pairs,
                                         "candidates": {cid: {"class": cls, "macs": graphs[cid].macs}
                                                        for cid, cls in classes.items()}}, indent=1))
    columns = [*refs, "auto", "auto, by class only", "ms"]
    # each reference's median ms over every round and candidate: ratio x this is in ms
    ref_ms = {k: float(np.median([r[c]["ms"] / r[c][k] for r in rounds for c in classes])) for k in refs}

    def value(r, cid, k):
        if k == "auto":
            key = AUTO_SMALL_REFERENCE if r[cid]["ms"] < AUTO_SMALL_BELOW_MS else AUTO_REFERENCES[classes[cid]]
            return r[cid][key] * ref_ms[key]
        return r[cid][AUTO_REFERENCES[classes[cid]] if k == "auto, by class only" else k]

    agree = {(k, cls): [] for k in columns for cls in [*kinds, "all"]}
    for a, b in itertools.combinations(rounds, 2):
        for cid, cls in classes.items():
            for k in columns:
                ok = abs(value(b, cid, k) / value(a, cid, k) - 1) <= 0.10
                agree[(k, cls)].append(ok)
                agree[(k, "all")].append(ok)
    n = {cls: sum(v == cls for v in classes.values()) for cls in kinds}
    print(f"{len(cands)} candidates ({', '.join(f'{v} {k}' for k, v in n.items())}), {args.rounds} rounds: "
          "fraction of round pairs within 10%")
    print(f"{'paired with':28s}" + "".join(f"{cls:>14s}" for cls in kinds) + f"{'all':>8s}")
    for k in columns:
        name = {"ms": "none (ms alone)"}.get(k, k)
        cells = "".join(f"{np.mean(agree[(k, cls)]) if agree[(k, cls)] else float('nan'):14.2f}"
                        for cls in kinds)
        print(f"{name:28s}{cells}{np.mean(agree[(k, 'all')]):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
