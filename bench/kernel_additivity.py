"""Is a network's latency the sum of its kernels' latencies on this machine? The premise of every
kernel-level predictor (nn-Meter's, and predictors.models.KernelLevelRegressor), measured.

For each given .tflite network, every operator that runs at inference is rebuilt alone, at the
network's exact shapes and dtype (by harness.zoo.kernels, as the ``kernels`` family builds
kernels; needs the ``zoo`` extra), and timed like the network, in interleaved rounds (network,
then each kernel, repeated) so that a drifting machine affects all alike. Printed per network:
its median latency, the sum of its kernels' medians, and their ratio; then the fraction of
networks whose latency lies within 10% of the sum. A single-kernel model also pays the per-invoke
cost of a whole model once per kernel, so the sum is printed again with that floor (the median of
the smallest rebuilt kernel, a 4x4x4 ReLU) counted once instead of once per kernel.

If the ratios spread beyond +-10% here, no predictor that sums per-kernel costs, however exact,
reaches acc@10% = 1 on held-out networks of this machine: the spread is its ceiling.

    python bench/kernel_additivity.py harness/zoo/bundled/digits-compressed/*.tflite [--threads 1]
        [--runs 300] [--rounds 5]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from harness.agent import _inputs, load_runtime  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.zoo import kernels as K  # noqa: E402
from harness.zoo.graph import read_graph  # noqa: E402
from harness.zoo.synthetic import convert  # noqa: E402
from predictors.features import dtype_class, runs_at_inference  # noqa: E402

FLOOR = {"kind": "relu", "hw": 4, "cin": 4}


@contextlib.contextmanager
def quiet():
    """TensorFlow's converter talks on both file descriptors; silence them while it builds."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


class Timer:
    def __init__(self, rt, path: Path, threads: int):
        self.interp = rt.Interpreter(model_path=str(path), num_threads=threads)
        self.interp.allocate_tensors()
        _inputs(self.interp, 0)
        for _ in range(20):
            self.interp.invoke()

    def median_ms(self, runs: int) -> float:
        ts = np.empty(runs)
        for i in range(runs):
            t = time.perf_counter()
            self.interp.invoke()
            ts[i] = time.perf_counter() - t
        return float(np.median(ts) * 1e3)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=300, help="timed invokes per model per round")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    rt = load_runtime()
    print(f"runtime {rt.name} {rt.version}, threads {a.threads}, {a.runs} runs x {a.rounds} rounds")
    tmp = Path(tempfile.mkdtemp(prefix="additivity-"))
    built: dict[tuple, Path] = {}

    def kernel_file(cfg: dict, quant: str) -> Path:
        key = (tuple(sorted(cfg.items())), quant)
        if key not in built:
            p = tmp / f"k{len(built)}.tflite"
            with quiet():
                p.write_bytes(convert(K.keras_model(cfg), quant))
            built[key] = p
        return built[key]

    floor = Timer(rt, kernel_file(FLOOR, "float32"), a.threads)
    ratios, floors = [], []
    print(f"{'model':36} {'kernels':>7} {'net ms':>8} {'sum ms':>8} {'net/sum':>7} {'floor once':>10}  not rebuilt")
    for m in a.models:
        try:
            g = read_graph(m)
        except HarnessError as e:
            print(f"skipped: {e}")
            continue
        parts, missing = [], []
        for op in g.ops:
            if not runs_at_inference(op):
                continue
            cfg = K.config_of_op(op)
            if cfg is None:
                missing.append(op.op)
                continue
            parts.append(kernel_file(cfg, K.QUANTIZATION_OF[dtype_class(op)]))
        if not parts:
            print(f"{m.stem}: skipped: no operator this harness can rebuild alone ({','.join(sorted(set(missing)))})")
            continue
        timers = {p: Timer(rt, p, a.threads) for p in set(parts)}
        net = Timer(rt, m, a.threads)
        rounds = []
        for _ in range(a.rounds):
            f = floor.median_ms(a.runs)
            n = net.median_ms(a.runs)
            per = {p: t.median_ms(a.runs) for p, t in timers.items()}
            rounds.append((n, sum(per[p] for p in parts), f))
        n, s, f = np.median(np.array(rounds), axis=0)
        floors.append(f)
        once = s - (len(parts) - 1) * f
        ratios.append((n / s, n / once))
        print(f"{m.stem[:36]:36} {len(parts):7d} {n:8.4f} {s:8.4f} {n / s:7.3f} {n / once:10.3f}  "
              f"{','.join(sorted(set(missing))) or '-'}")
    if not ratios:
        return 1
    r = np.array(ratios)
    print(f"floor (smallest kernel alone): median {np.median(floors) * 1e3:.2f} us")
    for j, name in enumerate(("net/sum", "net/sum with the floor once")):
        print(f"{name}: median {np.median(r[:, j]):.3f}, range {r[:, j].min():.3f}-{r[:, j].max():.3f}, "
              f"within 10%: {np.mean(np.abs(r[:, j] - 1) <= 0.1):.2f} of {len(r)} networks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
