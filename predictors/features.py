"""Features from a .tflite graph (via harness.zoo.graph, pure Python) and from the context.

* model level: MACs, params, activation bytes, file bytes, depth, input size, dtype, op
  histogram over a fixed vocabulary;
* kernel level (nn-Meter style), one row per kernel: kind (conv, dwconv, fc, avgpool, maxpool,
  mean = global average pooling, add, concat, other; the three poolings are apart because
  XNNPACK takes int8 max pooling and means and leaves int8 average pooling to TFLite's kernels;
  in the predictor's sums a 1x1 conv is its own kind, its cost per MAC is not a 3x3's),
  H, W, Cin, Cout, kernel, stride, MACs, bytes moved, and its dtype class (float32,
  int8, hybrid = int8 weights with float activations); summed per (kind, dtype) for the
  kernel-level predictor, with MACs padded to SIMD tile widths (:func:`kernel_basis`);
* context: threads, background load, CPU frequency when known.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from harness.zoo.graph import COMPUTE_OPS, DTYPE_CLASSES, GraphInfo, read_graph, runs_at_inference
from harness.zoo.graph import op_dtype_class as dtype_class

OP_VOCAB = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "MUL",
            "CONCATENATION", "MEAN", "RESHAPE", "QUANTIZE", "DEQUANTIZE", "SOFTMAX", "RELU", "RELU6", "PAD")
KINDS = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dwconv", "FULLY_CONNECTED": "fc", "AVERAGE_POOL_2D": "avgpool",
         "MAX_POOL_2D": "maxpool", "MEAN": "mean", "ADD": "add", "MUL": "add", "CONCATENATION": "concat"}
KIND_LIST = ("conv", "conv1x1", "dwconv", "fc", "avgpool", "maxpool", "mean", "add", "concat", "other")
CONTEXT = ("threads", "background_load", "cpu_freq_mhz")


def _nbytes(t) -> int:
    return int(np.prod(t.shape or (1,))) * np.dtype(t.dtype if t.dtype != "bool" else "uint8").itemsize


KERNEL_FIELDS = ("kind", "dtype", "h", "w", "cin", "cout", "kernel", "stride", "macs", "bytes")


def kernel_rows(g: GraphInfo) -> list[dict]:
    """One dict per operator that runs at every inference (:func:`runs_at_inference`), with the
    nn-Meter kernel descriptors."""
    out = []
    for op in g.ops:
        if not runs_at_inference(op):
            continue
        i0 = op.inputs[0].shape if op.inputs else ()
        o0 = op.outputs[0].shape if op.outputs else ()
        h, w = (o0[1], o0[2]) if len(o0) == 4 else (1, 1)
        cin = i0[-1] if i0 else 1
        cout = o0[-1] if o0 else 1
        out.append({"op": op.op, "kind": KINDS.get(op.op, "other"), "dtype": dtype_class(op), "h": h, "w": w,
                    "cin": cin, "cout": cout, "kernel": (op.kernel or (1, 1))[0], "stride": (op.stride or (1, 1))[0],
                    "macs": op.macs, "bytes": sum(_nbytes(t) for t in op.inputs + op.outputs)})
    return out


def model_features(g: GraphInfo) -> dict[str, float]:
    inp = g.inputs[0]
    f = {"log_macs": np.log10(g.macs + 1), "log_params": np.log10(g.params + 1),
         "log_activation_bytes": np.log10(g.activation_bytes + 1), "log_file_bytes": np.log10(g.file_bytes + 1),
         "depth": float(len(g.ops)), "input_size": float(np.prod(inp.shape)),
         "input_int8": float(inp.dtype in ("int8", "uint8"))}
    classes = [dtype_class(op) for op in g.ops if op.op in COMPUTE_OPS]
    for c in DTYPE_CLASSES:
        f[f"frac_{c}"] = classes.count(c) / len(classes) if classes else 0.0
    for name in OP_VOCAB:
        f[f"n_{name}"] = float(g.op_histogram.get(name, 0))
    return f


# SIMD tile widths in channels: a GEMM or depthwise microkernel computes output channels (and
# reads input channels) in blocks of a fixed width, so a layer of 8 channels on a kernel that
# tiles by 16 costs about what 16 channels cost. The widths differ by ISA and dtype (XNNPACK:
# 8-16 on NEON, 16-32 on AVX-512 for float32; int8 reads inputs in groups of 4-8); the
# predictor gets every width here and its non-negative fit keeps the ones the device shows.
COUT_TILES = (8, 16, 32, 64)
CIN_TILES = (4, 8, 16, 32)
TILED_KINDS = ("conv", "conv1x1", "dwconv", "fc")


def _padded(c: int, tile: int) -> float:
    """Channels rounded up to the tile, over channels: the factor of MACs a tiled kernel does."""
    c = max(int(c), 1)
    return -(-c // tile) * tile / c


def kernel_basis_columns() -> list[str]:
    cols = [f"{k}_{d}_{q}" for k in KIND_LIST for d in DTYPE_CLASSES for q in ("n", "mmacs", "mbytes")]
    return cols + [f"{k}_{d}_{q}{t}" for k in TILED_KINDS for d in DTYPE_CLASSES
                   for q, tiles in (("mmacs_cout", COUT_TILES), ("mmacs_cin", CIN_TILES)) for t in tiles]


def cost_kind(r: dict) -> str:
    """A kernel row's kind as the predictors price it: a 1x1 conv is its own kind, its cost per
    MAC is not a 3x3's (one of :data:`KIND_LIST`)."""
    return "conv1x1" if r["kind"] == "conv" and r["kernel"] == 1 else r["kind"]


def kernel_contribution(r: dict) -> dict[str, float]:
    """One kernel's (a :func:`kernel_rows` row's) share of :func:`kernel_basis`."""
    kind = cost_kind(r)
    key = f"{kind}_{r['dtype']}"
    f = {key + "_n": 1.0, key + "_mmacs": r["macs"] / 1e6, key + "_mbytes": r["bytes"] / 1e6}
    if kind in TILED_KINDS:
        for t in COUT_TILES:
            f[f"{key}_mmacs_cout{t}"] = r["macs"] / 1e6 * _padded(r["cout"], t)
        for t in CIN_TILES:
            f[f"{key}_mmacs_cin{t}"] = r["macs"] / 1e6 * _padded(r["cin"], t)
    return f


def kernel_basis(g: GraphInfo) -> dict[str, float]:
    """Per (kind, dtype class): kernel count, MACs and bytes summed over the model's kernels,
    and for convolutions and fully connected layers the MACs padded to each SIMD tile width
    (:data:`COUT_TILES` on output channels, :data:`CIN_TILES` on input channels), which is what
    makes a narrow layer cost more per MAC than a wide one. A model's latency that is a sum of
    per-kernel costs linear in these descriptors is a linear function of these sums, so the
    kernel-level predictor can learn per-kernel costs from whole-model measurements (the
    measured runtime does not profile single operators), among them the ``kernels`` family's
    models of one operator each."""
    return kernel_sums(kernel_rows(g))


def kernel_sums(rows) -> dict[str, float]:
    """:func:`kernel_basis` of the given kernel rows (:func:`kernel_rows` dicts)."""
    f = dict.fromkeys(kernel_basis_columns(), 0.0)
    for r in rows:
        for k, v in kernel_contribution(r).items():
            f[k] += v
    return f


@lru_cache(maxsize=4096)
def graph_of(path: str) -> GraphInfo:
    return read_graph(Path(path))
