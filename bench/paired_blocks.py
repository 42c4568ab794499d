"""Does the reference run at its own speed when paired with a candidate? (behind PAIRED_BLOCKS)

Relative latency (``latency_rel_median``) pairs a job's model with a reference model, so that a
machine whose speed drifts moves both alike. Invoked one after the other, each model runs right
after the other one: a large candidate leaves the reference its caches cold (and a core's clock
where it left it), and the reference then runs slower than it does on its own, by how much
depending on the candidate, not on the machine. This bench pairs every candidate with its
``--reference auto`` reference (by class; the small one under 20 us) the way the agent does
(``harness.agent._paired_reference``), in rounds a pause apart, three ways:

* ``single``: one invoke of each in turn (campaigns begun before ``PAIRED_BLOCKS``);
* ``blocks``: :data:`harness.collect.PAIRED_BLOCKS` (untimed invokes, then timed ones, per model);
* ``apart``: each model's own loop of invokes, the reference's after its own warm-up: its own
  speed, and the ratio the timed loop's latency has to it (not drift-corrected: a check only).

Prints per candidate the reference's median ms in each way and the ratios, then per size class
(candidate median ms) the median of ratio / apart-ratio (1 is unbiased), and how often two rounds
agree within 10% (the drift tracking that pairing is for: blocks must not lose it).

    python bench/paired_blocks.py zoo/nb201/*.tflite harness/zoo/bundled/digits-compressed/*.tflite \\
        --rounds 3 --pause 20
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness import agent  # noqa: E402
from harness.collect import AUTO_REFERENCES, AUTO_SMALL_BELOW_MS, AUTO_SMALL_REFERENCE, PAIRED_BLOCKS, _reference  # noqa: E402
from harness.zoo.graph import read_graph, reference_class  # noqa: E402

SIZES = [(0, 0.02), (0.02, 0.2), (0.2, 1.0), (1.0, float("inf"))]


def _interp(rt, path):
    it = rt.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    agent._inputs(it, 0)
    for _ in range(20):
        it.invoke()
    return it


def _loop(it, n) -> float:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        it.invoke()
        out.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(out))


def one(rt, it, ref_path, n) -> dict:
    out = {}
    for how, blocks in (("single", None), ("blocks", PAIRED_BLOCKS)):
        spec = {"model": ref_path, "id": "ref", "n": n, **({"blocks": blocks} if blocks else {})}
        d = agent._paired_reference(rt, it, spec, 1, n, time.perf_counter)
        m, r = np.asarray(d["model_ms"]), np.asarray(d["reference_ms"])
        out[how] = (float(np.median(m / r)), float(np.median(r)))
    ref = _interp(rt, ref_path)
    r_ms, m_ms = _loop(ref, n), _loop(it, n)
    out["apart"] = (m_ms / r_ms, r_ms)
    out["ms"] = m_ms
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pause", type=float, default=20.0, help="seconds between rounds")
    ap.add_argument("--pairs", type=int, default=300)
    args = ap.parse_args(argv)
    rt = agent.load_runtime()
    refs = {k: _reference(v, None)["path"] for k, v in AUTO_REFERENCES.items()}
    small = _reference(AUTO_SMALL_REFERENCE, None)["path"]
    classes = {p: reference_class(read_graph(p)) for p in args.models}
    rounds = []
    for i in range(args.rounds):
        if i:
            time.sleep(args.pause)
        t0 = time.time()
        r = {}
        for p in args.models:
            it = _interp(rt, p)
            probe = _loop(it, 30)   # the agent picks the small reference by the timed loop's median
            r[p] = one(rt, it, small if probe < AUTO_SMALL_BELOW_MS else refs[classes[p]], args.pairs)
        rounds.append(r)
        print(f"round {i + 1}: {time.time() - t0:.0f} s", flush=True)
    print(f"{'candidate':52s} {'ms':>8s}  reference ms: apart / single / blocks   ratio over apart: single / blocks")
    for p in args.models:
        v = {k: np.median([r[p][k][1] for r in rounds]) for k in ("apart", "single", "blocks")}
        q = {k: np.median([r[p][k][0] / r[p]["apart"][0] for r in rounds]) for k in ("single", "blocks")}
        print(f"{p.stem[:52]:52s} {np.median([r[p]['ms'] for r in rounds]):8.3f}  "
              f"{v['apart']:.3f} / {v['single']:.3f} / {v['blocks']:.3f}   {q['single']:.3f} / {q['blocks']:.3f}")
    print(f"\n{'candidate median ms':20s} {'n':>4s}   ratio over apart: single  blocks   "
          "within 10% across rounds: single  blocks  apart")
    for lo, hi in SIZES:
        sel = [p for p in args.models if lo <= np.median([r[p]["ms"] for r in rounds]) < hi]
        if not sel:
            continue
        q = {k: np.median([r[p][k][0] / r[p]["apart"][0] for r in rounds for p in sel]) for k in ("single", "blocks")}
        agree = {k: np.mean([abs(b[p][k][0] / a[p][k][0] - 1) <= 0.10 for a, b in itertools.combinations(rounds, 2)
                             for p in sel]) if len(rounds) > 1 else float("nan") for k in ("single", "blocks", "apart")}
        print(f"{f'{lo:g}-{hi:g} ms':20s} {len(sel):4d}   {q['single']:24.3f} {q['blocks']:7.3f}   "
              f"{agree['single']:32.2f} {agree['blocks']:7.2f} {agree['apart']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
