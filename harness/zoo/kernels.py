"""Build the ``kernels`` family: single-kernel models, nn-Meter style (needs the ``zoo`` extra).

A kernel-level latency predictor trained only on whole models learns per-kernel costs from
sums, and cannot learn what no training family contains (an int8 depthwise convolution when only
float NAS-Bench-201 cells were measured). nn-Meter's answer is to measure kernels themselves, at
configurations sampled over the space the models use. Each candidate here is one kernel (conv,
depthwise conv, fully connected, pooling, add, concat), with BatchNorm folded and ReLU6 fused
where a model would have them, at a sampled input size, channel count, kernel size and stride,
and converted as float32, dynamic-range int8 and full int8 (int8 input and output, as the
``digits-compressed`` family's int8 variants). Measured by ``harness.collect`` like any other
family, they become training rows in which the kernel's cost is not mixed with other kernels'
(the per-model overhead is still there, and is what the predictor's intercept learns).

Random weights: the family has no task and no accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.zoo.graph import op_dtype_class, read_graph, runs_at_inference
from harness.zoo.synthetic import QUANTIZATIONS, build_family, randomize_batchnorm

FAMILY = "kernels"
# Sampling space: covers the sizes of the digits-compressed (4..64 px, 4..576 channels) and
# nb201 (8..32 px, 16..64 channels) families. Kinds are drawn with these weights.
KIND_WEIGHTS = {"conv": 0.45, "dwconv": 0.25, "fc": 0.1, "pool": 0.1, "add": 0.05, "concat": 0.05}
SIZES = (4, 8, 16, 32, 64)
CHANNELS = (4, 8, 12, 16, 24, 32, 48, 64, 96, 144, 192, 288, 384, 576)
FC_WIDTHS = (10, 16, 32, 64, 96, 128, 256, 512, 1024)
WEIGHTLESS = ("pool", "add", "concat")
MAX_MACS = 60e6   # keeps one kernel's run in milliseconds on a small CPU


def sample_configs(n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct kernel configurations, drawn reproducibly from ``seed``."""
    rng = np.random.default_rng(seed)
    kinds, weights = zip(*KIND_WEIGHTS.items())
    out, seen = [], set()
    while len(out) < n:
        kind = str(rng.choice(kinds, p=np.array(weights) / sum(weights)))
        hw = int(rng.choice(SIZES))
        c = {"kind": kind, "hw": hw}
        if kind == "conv":
            c.update(cin=int(rng.choice(CHANNELS)), cout=int(rng.choice(CHANNELS)), k=int(rng.choice((1, 3))),
                     stride=int(rng.choice((1, 2))))
        elif kind == "dwconv":
            c.update(cin=int(rng.choice(CHANNELS)), k=3, stride=int(rng.choice((1, 2))))
        elif kind == "fc":
            c = {"kind": kind, "cin": int(rng.choice(FC_WIDTHS)), "cout": int(rng.choice(FC_WIDTHS))}
        elif kind == "pool":
            c.update(cin=int(rng.choice(CHANNELS)), pool=str(rng.choice(("avg3s1", "avg2s2", "max2s2", "global"))))
        else:
            c.update(cin=int(rng.choice(CHANNELS)))
        key = tuple(sorted(c.items()))
        if key in seen or macs_of(c) > MAX_MACS:
            continue
        seen.add(key)
        out.append(c)
    return out


def config_of_op(op) -> dict | None:
    """The configuration of this family that rebuilds one operator of a network
    (:class:`harness.zoo.graph.OpInfo`) alone, to measure it in isolation; None for an operator
    the family has no builder for. Convolutions are rebuilt with BatchNorm and ReLU6 fused, as
    the family builds them, whatever activation the network fused."""
    i = op.inputs[0].shape if op.inputs else ()
    o = op.outputs[0].shape if op.outputs else ()
    if op.op == "FULLY_CONNECTED":
        return {"kind": "fc", "cin": int(i[-1]), "cout": int(o[-1])}
    if len(i) != 4 or i[1] != i[2]:
        return None
    c = {"hw": int(i[1]), "cin": int(i[3])}
    k, s = (op.kernel or (1, 1))[0], (op.stride or (1, 1))[0]
    if op.op == "CONV_2D":
        return {"kind": "conv", **c, "cout": int(o[3]), "k": int(k), "stride": int(s)}
    if op.op == "DEPTHWISE_CONV_2D" and k in (3, 5) and o[3] == i[3]:
        return {"kind": "dwconv", **c, "k": int(k), "stride": int(s)}
    if op.op in ("ADD", "CONCATENATION") and len(op.inputs) == 2 and op.inputs[1].shape == op.inputs[0].shape:
        return {"kind": "add" if op.op == "ADD" else "concat", **c}
    if op.op == "RELU":
        return {"kind": "relu", **c}
    pool = {("MEAN", None, None): "global", ("AVERAGE_POOL_2D", 3, 1): "avg3s1",
            ("AVERAGE_POOL_2D", 2, 2): "avg2s2", ("MAX_POOL_2D", 2, 2): "max2s2", ("MAX_POOL_2D", 3, 2): "max3s2"}
    key = (op.op, None, None) if op.op == "MEAN" else (op.op, k, s)
    return {"kind": "pool", **c, "pool": pool[key]} if key in pool else None


def macs_of(c: dict) -> float:
    if c["kind"] == "pair":
        return macs_of(c["a"]) + macs_of(c["b"])
    if c["kind"] == "conv":
        o = c["hw"] // c["stride"]
        return o * o * c["cin"] * c["cout"] * c["k"] ** 2
    if c["kind"] == "dwconv":
        o = c["hw"] // c["stride"]
        return o * o * c["cin"] * c.get("k", 3) ** 2
    if c["kind"] == "fc":
        return c["cin"] * c["cout"]
    return 0.0


def config_id(c: dict) -> str:
    k = c["kind"]
    if k == "pair":   # "then" when the second runs on the first's output, "and" when on its own input
        return f"{config_id(c['a'])}-{'then' if c['chain'] else 'and'}-{config_id(c['b'])}"
    if k == "conv":
        return f"conv-h{c['hw']}-c{c['cin']}-o{c['cout']}-k{c['k']}-s{c['stride']}"
    if k == "dwconv":
        return f"dwconv-h{c['hw']}-c{c['cin']}-k{c.get('k', 3)}-s{c['stride']}"
    if k == "fc":
        return f"fc-i{c['cin']}-o{c['cout']}"
    if k == "pool":
        return f"pool-{c['pool']}-h{c['hw']}-c{c['cin']}"
    return f"{k}-h{c['hw']}-c{c['cin']}"


def _apply(c: dict, keras, name: str = "x"):
    """The inputs and output of one kernel of configuration ``c`` (Keras functional layers)."""
    shape = (c["cin"],) if c["kind"] == "fc" else (c["hw"], c["hw"], c["cin"])
    inp = [keras.Input(shape, batch_size=1, name=name)]
    if c["kind"] in ("add", "concat"):
        inp.append(keras.Input(shape, batch_size=1, name=name + "2"))
    return inp, _layer(c, keras.layers, inp)


def _layer(c: dict, L, inp: list):
    """Configuration ``c``'s kernel applied to ``inp`` (one tensor, two for add and concat)."""
    k = c["kind"]
    if k == "fc":
        return L.Dense(c["cout"])(inp[0])
    if k in ("add", "concat"):
        return L.Add()(inp) if k == "add" else L.Concatenate()(inp)
    if k == "relu":   # not sampled; for measuring a network's standalone ReLUs alone
        return L.ReLU()(inp[0])
    if k == "pool":
        p = c["pool"]
        return (L.GlobalAveragePooling2D()(inp[0]) if p == "global" else
                L.AveragePooling2D(3, 1, "same")(inp[0]) if p == "avg3s1" else
                L.AveragePooling2D(2, 2)(inp[0]) if p == "avg2s2" else
                L.MaxPooling2D(3, 2)(inp[0]) if p == "max3s2" else L.MaxPooling2D(2, 2)(inp[0]))
    x = (L.Conv2D(c["cout"], c["k"], c["stride"], "same", use_bias=False)(inp[0]) if k == "conv" else
         L.DepthwiseConv2D(c.get("k", 3), c["stride"], "same", use_bias=False)(inp[0]))
    x = L.BatchNormalization()(x)
    return L.ReLU(6.0)(x)


def keras_model(c: dict, seed: int = 0):
    """One kernel alone; or, for a ``pair`` configuration, two run one after the other: the
    second on the first's output (``chain``), or each on its own input."""
    import tensorflow as tf
    from tensorflow import keras
    tf.keras.utils.set_random_seed(seed)
    if c["kind"] != "pair":
        inp, x = _apply(c, keras)
        return randomize_batchnorm(keras.Model(inp, x), seed)   # folded into the conv by the converter
    inp, a = _apply(c["a"], keras, "x")
    if c["chain"]:
        rest = [keras.Input(a.shape[1:], batch_size=1, name="y2")] if c["b"]["kind"] in ("add", "concat") else []
        inp += rest
        out = _layer(c["b"], keras.layers, [a, *rest])
        return randomize_batchnorm(keras.Model(inp, out), seed)
    inp_b, b = _apply(c["b"], keras, "y")
    return randomize_batchnorm(keras.Model(inp + inp_b, [a, b]), seed)


# the conversion that gives a rebuilt kernel the dtype class (harness.zoo.graph.op_dtype_class)
# the network's operator computes in
QUANTIZATION_OF = {"float32": "float32", "int8": "int8", "hybrid": "dynamic-int8"}


def _class_of(classes) -> str:
    """The dtype class a model computing in these classes is converted in: a network's float
    operators stay float in its dynamic-range and float16 conversions."""
    return next((c for c in ("hybrid", "int8") if c in classes), "float32")


def configs_like(models, pairs: bool = False) -> list[tuple[dict, str]]:
    """The distinct (configuration, quantization) pairs that rebuild, alone, the operators the
    given .tflite networks run at inference, at their shapes and dtype class: nn-Meter's kernel
    sampling taken to its end, where the configurations are those of the candidates to predict.
    Standalone ReLUs (XNNPACK fuses them into the operator before) and operators this family has
    no builder for are left out; each pair once, in the order first met.

    With ``pairs``, also every two operators that run one after the other in a network (the same
    left out), as a ``pair`` configuration: what the second costs after the first, where an
    operator alone pays the whole per-invoke cost and a boundary between the pieces XNNPACK runs
    and TFLite's own kernels is in none of them."""
    out = {}
    for m in models:
        prev, alias = None, {}   # alias: a standalone ReLU's output is its input, for "fed"
        for op in read_graph(m).ops:
            c = config_of_op(op) if runs_at_inference(op) else None
            if c is None:
                continue
            if c["kind"] == "relu":
                alias[op.outputs[0].name] = alias.get(op.inputs[0].name, op.inputs[0].name)
                continue
            cls = op_dtype_class(op)
            out.setdefault((config_id(c), QUANTIZATION_OF[cls]), c)
            if pairs and prev is not None:
                pop, pc, pcls = prev
                fed = pop.outputs[0].name in {alias.get(t.name, t.name) for t in op.inputs}
                p = {"kind": "pair", "a": pc, "b": c, "chain": fed}
                out.setdefault((config_id(p), QUANTIZATION_OF[_class_of((pcls, cls))]), p)
            prev = (op, c, cls)
    return [(c, q) for (_, q), c in out.items()]


def build(out: Path, n: int = 80, seed: int = 0, quantizations=QUANTIZATIONS, log=print) -> dict:
    return build_family(out, FAMILY, "single-kernel models at sampled configurations (nn-Meter style), random weights",
                        sample_configs(n, seed), config_id, keras_model, "k", seed, quantizations,
                        # nothing to quantize in a weightless kernel: the same file as float32
                        skip=lambda c, q: q == "dynamic-int8" and c["kind"] in WEIGHTLESS, log=log)


def build_like(out: Path, models, seed: int = 0, log=print, pairs: bool = False) -> dict:
    """The family at the operators of ``models`` (:func:`configs_like`) instead of sampled ones;
    with ``pairs``, also at every two of them that run one after the other."""
    models = list(models)
    todo = configs_like(models, pairs)
    if not todo:
        raise HarnessError(f"no operator of the {len(models)} given model(s) can be rebuilt alone")
    configs = list({config_id(c): c for c, _ in todo}.values())
    wanted = {(config_id(c), q) for c, q in todo}
    quants = [q for q in QUANTIZATIONS if any(q == w for _, w in wanted)]
    what = "single-kernel models and consecutive pairs" if pairs else "single-kernel models"
    return build_family(out, FAMILY, f"{what} at the operators of {len(models)} networks "
                        "(nn-Meter style), random weights", configs, config_id, keras_model, "k", seed, quants,
                        skip=lambda c, q: (config_id(c), q) not in wanted, log=log)
