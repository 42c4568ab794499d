"""Read a .tflite flatbuffer with NumPy and the pure-Python ``tflite`` package.

Nothing here needs TensorFlow or a TFLite runtime: the collector, the importer and the
predictors use it on any host.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tflite
from tflite.utils import opcode2name

from harness.errors import BadInput

# TensorType enum -> numpy dtype name (subset that models use).
_DTYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool",
    7: "int16", 9: "int8", 10: "float64",
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None
    const: bool = False          # has data in the file (weights, biases, other constants)


@dataclass(frozen=True)
class OpInfo:
    """One operator of the graph, with the shapes a latency model needs."""

    index: int
    op: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    macs: int
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None


@dataclass(frozen=True)
class GraphInfo:
    sha256: str
    file_bytes: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]
    params: int
    macs: int
    activation_bytes: int
    op_histogram: dict[str, int] = field(default_factory=dict)


COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
DTYPE_CLASSES = ("float32", "int8", "hybrid")


def op_dtype_class(op: OpInfo) -> str:
    """How an operator computes: ``int8`` on integer activations, ``hybrid`` on float
    activations with int8 weights (dynamic-range quantization), else ``float32`` (float16
    weights are dequantized once, when the interpreter is prepared)."""
    act = op.inputs[0].dtype if op.inputs else "float32"
    w = op.inputs[1].dtype if len(op.inputs) > 1 else act
    if act in ("int8", "uint8", "int16"):
        return "int8"
    if w in ("int8", "uint8"):
        return "hybrid"
    return "float32"


def model_dtype_class(g: GraphInfo) -> str:
    """The :func:`op_dtype_class` most of the model's MACs are computed in (its convolutions
    and fully connected layers; ``float32`` for a model without any)."""
    macs = dict.fromkeys(DTYPE_CLASSES, 0)
    for op in g.ops:
        if op.op in COMPUTE_OPS:
            macs[op_dtype_class(op)] += op.macs + 1
    return max(DTYPE_CLASSES, key=lambda c: macs[c])


def runs_at_inference(op: OpInfo) -> bool:
    """False for an operator whose inputs are all constants (a DEQUANTIZE of float16 weights):
    it is computed once when the interpreter is prepared."""
    return not (op.inputs and all(t.const for t in op.inputs))


# What the XNNPACK delegate (on by default for CPU in tflite-runtime and ai-edge-litert) takes:
# on float activations, and on int8 activations. With int8 weights on float activations
# (dynamic-range quantization) it takes convolutions and fully connected layers, computing them
# on dynamically quantized activations, but not depthwise convolutions; on int8 activations it
# does not take average pooling. Checked against the partitions ai-edge-litert 2.3 reports
# (``delegate_partitions``) for every model of the seven zoo families (all 603 agree), which
# covers ADD, AVERAGE_POOL_2D, CONCATENATION, CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
# MAX_POOL_2D, MEAN, MUL and RELU; the other names are from the delegate's documentation, whose
# lists grow with each release (an older runtime may take fewer).
XNNPACK_FLOAT_OPS = frozenset((
    "ABS", "ADD", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CEIL", "CONCATENATION", "CONV_2D", "DEPTH_TO_SPACE",
    "DEPTHWISE_CONV_2D", "DEQUANTIZE", "DIV", "ELU", "FLOOR", "FULLY_CONNECTED", "HARD_SWISH", "LEAKY_RELU",
    "LOGISTIC", "MAX_POOL_2D", "MAXIMUM", "MEAN", "MINIMUM", "MUL", "NEG", "PAD", "PRELU", "RELU", "RELU6",
    "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "ROUND", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT",
    "SQRT", "SQUARE", "SQUARED_DIFFERENCE", "STRIDED_SLICE", "SUB", "TANH", "TRANSPOSE", "TRANSPOSE_CONV"))
XNNPACK_INT8_OPS = frozenset((
    "ADD", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "ELU", "FULLY_CONNECTED", "LEAKY_RELU",
    "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD", "QUANTIZE", "RESHAPE", "RESIZE_BILINEAR", "SLICE",
    "SPACE_TO_DEPTH", "SPLIT", "STRIDED_SLICE", "SUB", "TANH", "TRANSPOSE", "TRANSPOSE_CONV"))
XNNPACK_HYBRID_OPS = frozenset(("CONV_2D", "FULLY_CONNECTED"))
XNNPACK_OPS = {"float32": XNNPACK_FLOAT_OPS, "int8": XNNPACK_INT8_OPS, "hybrid": XNNPACK_HYBRID_OPS}


def xnnpack_delegates(op: OpInfo) -> bool:
    """Whether the XNNPACK delegate takes this operator (see :data:`XNNPACK_FLOAT_OPS`); an
    operator outside its lists runs on TFLite's own kernels."""
    return op.op in XNNPACK_OPS[op_dtype_class(op)]


def xnnpack_partitions(g: GraphInfo) -> int:
    """How many pieces of the graph the XNNPACK delegate will run, read from the graph alone: the
    runs of consecutive operators it takes (in execution order, over the operators that run at
    every inference). 1 when it takes the whole model, 0 when it takes nothing; more when
    operators it does not take (dynamic-range depthwise convolutions, int8 average pooling)
    split the model and run on TFLite's own kernels in between. An estimate for this runtime
    generation: the agent reports the real count after loading (``delegate_partitions``)."""
    pieces, inside = 0, False
    for op in g.ops:
        if not runs_at_inference(op):
            continue
        d = xnnpack_delegates(op)
        pieces += d and not inside
        inside = d
    return pieces


def reference_class(g: GraphInfo) -> str:
    """Which kind of reference model a model's speed moves with on a machine whose state changes:
    its :func:`model_dtype_class`, with ``hybrid`` (dynamic-range int8) in two: ``hybrid`` when
    the XNNPACK delegate runs it whole (on dynamically quantized int8 kernels, it moves with an
    int8 model), ``hybrid-split`` when it runs in pieces (:func:`xnnpack_partitions` other than
    1: its depthwise convolutions on TFLite's own float kernels, it moves with a float32 model).
    Measured by bench/reference_choice.py."""
    c = model_dtype_class(g)
    return "hybrid-split" if c == "hybrid" and xnnpack_partitions(g) != 1 else c


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tensor(model, sub, idx: int) -> TensorInfo:
    t = sub.Tensors(idx)
    shape = tuple(int(x) for x in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    scale = zp = None
    q = t.Quantization()
    if q is not None and q.ScaleLength() == 1:
        scale = float(q.Scale(0))
        zp = int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0
    name = t.Name().decode("utf-8", "replace") if t.Name() else ""
    return TensorInfo(name, shape, _DTYPES.get(t.Type(), f"type{t.Type()}"), scale, zp, _is_const(model, sub, idx))


def _is_const(model, sub, idx: int) -> bool:
    b = sub.Tensors(idx).Buffer()
    return b > 0 and model.Buffers(b).DataLength() > 0


def _macs(op: str, ins: list[TensorInfo], outs: list[TensorInfo]) -> int:
    if not outs or not ins:
        return 0
    out = outs[0].shape
    if op == "CONV_2D" and len(ins) > 1 and len(ins[1].shape) == 4:
        cout, kh, kw, cin = ins[1].shape
        return int(np.prod(out[:-1])) * cout * kh * kw * cin
    if op == "DEPTHWISE_CONV_2D" and len(ins) > 1 and len(ins[1].shape) == 4:
        _, kh, kw, c = ins[1].shape
        return int(np.prod(out[:-1])) * c * kh * kw
    if op == "FULLY_CONNECTED" and len(ins) > 1 and len(ins[1].shape) == 2:
        units, k = ins[1].shape
        return int(np.prod(out)) * k
    return 0


def read_graph(path: str | Path) -> GraphInfo:
    """Parse ``path``; raise :class:`BadInput` naming the file if it is not a TFLite model."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise BadInput(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = tflite.Model.GetRootAs(buf, 0)
        sub = model.Subgraphs(0)
        ops: list[OpInfo] = []
        params = 0
        act = 0
        seen_const: set[int] = set()
        for i in range(sub.OperatorsLength()):
            o = sub.Operators(i)
            code = model.OperatorCodes(o.OpcodeIndex())
            bc = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = opcode2name(bc)
            in_idx = [int(x) for x in o.InputsAsNumpy() if x >= 0] if o.InputsLength() else []
            out_idx = [int(x) for x in o.OutputsAsNumpy()] if o.OutputsLength() else []
            ins = [_tensor(model, sub, j) for j in in_idx]
            outs = [_tensor(model, sub, j) for j in out_idx]
            for j in in_idx:
                if j not in seen_const and _is_const(model, sub, j):
                    seen_const.add(j)
                    params += int(np.prod(sub.Tensors(j).ShapeAsNumpy())) if sub.Tensors(j).ShapeLength() else 1
            for t in outs:
                act += int(np.prod(t.shape or (1,))) * np.dtype(t.dtype if t.dtype in _DTYPES.values() else "float32").itemsize
            kernel = stride = None
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(ins) > 1 and len(ins[1].shape) == 4:
                kernel = (ins[1].shape[1], ins[1].shape[2])
            if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D"):
                stride = _stride(o, name)
                if name.endswith("POOL_2D"):
                    kernel = _pool_kernel(o)
            ops.append(OpInfo(i, name, tuple(ins), tuple(outs), _macs(name, ins, outs), kernel, stride))
        inputs = tuple(_tensor(model, sub, int(j)) for j in sub.InputsAsNumpy())
        outputs = tuple(_tensor(model, sub, int(j)) for j in sub.OutputsAsNumpy())
    except BadInput:
        raise
    except Exception as e:  # a truncated or garbled flatbuffer raises anything
        raise BadInput(f"{path}: corrupt TFLite flatbuffer ({type(e).__name__}: {e})") from None
    hist = Counter(op.op for op in ops)
    return GraphInfo(
        sha256=hashlib.sha256(buf).hexdigest(),
        file_bytes=len(buf),
        inputs=inputs,
        outputs=outputs,
        ops=tuple(ops),
        params=params,
        macs=sum(op.macs for op in ops),
        activation_bytes=act,
        op_histogram=dict(sorted(hist.items())),
    )


def _options(o, cls):
    table = o.BuiltinOptions()
    if table is None:
        return None
    opt = cls()
    opt.Init(table.Bytes, table.Pos)
    return opt


def _stride(o, name: str) -> tuple[int, int] | None:
    cls = {"CONV_2D": tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions}.get(
        name, tflite.Pool2DOptions)
    opt = _options(o, cls)
    return (opt.StrideH(), opt.StrideW()) if opt is not None else None


def _pool_kernel(o) -> tuple[int, int] | None:
    opt = _options(o, tflite.Pool2DOptions)
    return (opt.FilterHeight(), opt.FilterWidth()) if opt is not None else None
