"""Split points of a .tflite graph, and its front and back parts as .tflite files.

A *split point* is a place in the operator order where exactly one non-constant tensor crosses
from the operators before it to those after it (the graph's ops are stored in execution order):
the device runs the front, sends that tensor, and the server runs the back. A cut where two
tensors are live (inside a residual block) is not a split point.

Listing needs only the ``tflite`` reader; building the parts rewrites the flatbuffer with
TensorFlow's schema (extra: zoo).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from harness.errors import BadInput, HarnessError
from harness.zoo.graph import _tensor, read_graph

_ITEMSIZE = {"float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "bool": 1, "int16": 2, "int8": 1,
             "float64": 8}


@dataclass(frozen=True)
class SplitPoint:
    after_op: int          # the front runs operators 0..after_op
    tensor: str            # the one tensor sent
    shape: tuple[int, ...]
    dtype: str
    bytes: int             # its size: what the device uploads
    front_macs: int
    macs_share: float      # front MACs / all MACs (an estimate of the front's share of the time)


@dataclass(frozen=True)
class Splits:
    path: Path
    input_bytes: int       # what offloading the whole request uploads
    output_bytes: int      # what the server sends back
    macs: int
    points: tuple[SplitPoint, ...]


def _bytes(shape, dtype) -> int:
    return int(np.prod(shape or (1,))) * _ITEMSIZE.get(dtype, 4)


def _structure(path: Path):
    """(ops' input and output tensor indices, const flags, graph inputs, graph outputs, tensor info)."""
    import tflite
    buf = path.read_bytes()
    model = tflite.Model.GetRootAs(buf, 0)
    sub = model.Subgraphs(0)
    ins, outs = [], []
    for i in range(sub.OperatorsLength()):
        o = sub.Operators(i)
        ins.append([int(x) for x in o.InputsAsNumpy() if x >= 0] if o.InputsLength() else [])
        outs.append([int(x) for x in o.OutputsAsNumpy()] if o.OutputsLength() else [])
    const = set()
    for j in range(sub.TensorsLength()):
        b = sub.Tensors(j).Buffer()
        if b > 0 and model.Buffers(b).DataLength() > 0:
            const.add(j)
    return (ins, outs, const, [int(x) for x in sub.InputsAsNumpy()], [int(x) for x in sub.OutputsAsNumpy()],
            lambda j: _tensor(model, sub, j))


def _crossing(ins, outs, const, g_in, g_out, k: int) -> set[int]:
    """Non-constant tensors made at or before op k (or graph inputs) and used after it (or outputs)."""
    made = set(g_in) | {t for o in outs[: k + 1] for t in o}
    used = set(g_out) | {t for i in ins[k + 1:] for t in i}
    return (made & used) - const


def split_points(path: str | Path) -> Splits:
    """Every valid split point of ``path``'s first subgraph, in execution order."""
    path = Path(path)
    g = read_graph(path)    # checks the file; names it if it is not a .tflite
    if len(g.inputs) != 1:
        raise BadInput(f"{path}: {len(g.inputs)} inputs; splitting handles a model with one input")
    ins, outs, const, g_in, g_out, tensor = _structure(path)
    cum = np.cumsum([op.macs for op in g.ops])
    pts = []
    for k in range(len(g.ops) - 1):
        cross = _crossing(ins, outs, const, g_in, g_out, k)
        if len(cross) != 1 or cross & set(g_in) or cross & set(g_out):
            continue
        info = tensor(next(iter(cross)))
        pts.append(SplitPoint(k, info.name, info.shape, info.dtype, _bytes(info.shape, info.dtype), int(cum[k]),
                              float(cum[k] / cum[-1]) if cum[-1] else (k + 1) / len(g.ops)))
    return Splits(path, sum(_bytes(t.shape, t.dtype) for t in g.inputs),
                  sum(_bytes(t.shape, t.dtype) for t in g.outputs), g.macs, tuple(pts))


def point(path: Path, after_op: int) -> SplitPoint:
    """The split point after operator ``after_op``, or one line naming the valid ones."""
    sp = split_points(path)
    pt = next((p for p in sp.points if p.after_op == after_op), None)
    if pt is None:
        valid = ", ".join(str(p.after_op) for p in sp.points) or "none"
        raise BadInput(f"--after {after_op}: not a split point of {path} (valid: {valid}; "
                       f"python -m harness.zoo splits {path})")
    return pt


def _prune(model) -> None:
    """Drop the tensors and buffers no operator or graph edge of subgraph 0 uses, renumbering."""
    sg = model.subgraphs[0]
    keep = sorted(set(sg.inputs) | set(sg.outputs) | {t for op in sg.operators for t in list(op.inputs) + list(op.outputs)
                                                     if t >= 0})
    new = {old: i for i, old in enumerate(keep)}
    sg.tensors = [sg.tensors[i] for i in keep]
    for op in sg.operators:
        op.inputs = [new[t] if t >= 0 else t for t in op.inputs]
        op.outputs = [new[t] for t in op.outputs]
    sg.inputs = [new[t] for t in sg.inputs]
    sg.outputs = [new[t] for t in sg.outputs]
    bufs = sorted({0} | {t.buffer for t in sg.tensors})
    bmap = {old: i for i, old in enumerate(bufs)}
    model.buffers = [model.buffers[b] for b in bufs]
    for t in sg.tensors:
        t.buffer = bmap[t.buffer]
    model.signatureDefs = None   # they name the whole model's inputs and outputs
    model.metadata = None
    model.metadataBuffer = None


def build_parts(path: str | Path, after_op: int, out: str | Path) -> tuple[Path, Path]:
    """Write OUT/<stem>-front<k>.tflite (ops 0..k, output: the split tensor) and
    OUT/<stem>-back<k>.tflite (the rest, input: the split tensor). Needs TensorFlow."""
    import copy
    path, out = Path(path), Path(out)
    point(path, after_op)
    try:
        from tensorflow.lite.python import schema_py_generated as schema_fb
        from tensorflow.lite.tools import flatbuffer_utils as fbu
    except ImportError:
        raise HarnessError("building split parts needs TensorFlow: pip install -e '.[zoo]'") from None
    whole = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(path.read_bytes(), 0))
    ins, outs, const, g_in, g_out, _ = _structure(path)
    (t,) = _crossing(ins, outs, const, g_in, g_out, after_op)
    front, back = copy.deepcopy(whole), copy.deepcopy(whole)
    front.subgraphs[0].operators = front.subgraphs[0].operators[: after_op + 1]
    front.subgraphs[0].outputs = [t]
    back.subgraphs[0].operators = back.subgraphs[0].operators[after_op + 1:]
    back.subgraphs[0].inputs = [t]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for part, m in (("front", front), ("back", back)):
        _prune(m)
        p = out / f"{path.stem}-{part}{after_op}.tflite"
        p.write_bytes(fbu.convert_object_to_bytearray(m))
        paths.append(p)
    return paths[0], paths[1]


def check_parts(whole: Path, front: Path, back: Path, seed: int = 0) -> float:
    """Largest |back(front(x)) - whole(x)| over one random input, with the TFLite runtime here."""
    from harness.agent import load_runtime  # the agent's choice: litert, tflite-runtime, tf.lite
    rt = load_runtime()

    def run(p, x):
        it = rt.Interpreter(model_path=str(p), num_threads=1)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], x.astype(d["dtype"]))
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])
    d = read_graph(whole).inputs[0]
    rng = np.random.default_rng(seed)
    x = (rng.random(d.shape) * (255 if d.dtype in ("uint8", "int8") else 1)).astype(d.dtype)
    if d.dtype == "int8":
        x = (x.astype(np.int16) - 128).astype(np.int8)
    y = run(whole, x)
    z = run(back, run(front, x))
    return float(np.max(np.abs(y.astype(float) - z.astype(float))))


def table(sp: Splits) -> str:
    lines = [f"{sp.path}: input {sp.input_bytes} B, output {sp.output_bytes} B, {sp.macs / 1e6:.3f} MMACs, "
             f"{len(sp.points)} split point(s)",
             f"{'after_op':>8}  {'bytes':>7}  {'vs_input':>8}  {'macs_share':>10}  shape  dtype  tensor"]
    for p in sp.points:
        lines.append(f"{p.after_op:>8}  {p.bytes:>7}  {p.bytes / sp.input_bytes:>8.2f}  {p.macs_share:>10.3f}  "
                     f"{'x'.join(map(str, p.shape))}  {p.dtype}  {p.tensor[:60]}")
    return "\n".join(lines)


def as_json(sp: Splits) -> str:
    return json.dumps({"model": str(sp.path), "input_bytes": sp.input_bytes, "output_bytes": sp.output_bytes,
                       "macs": sp.macs, "points": [asdict(p) for p in sp.points]}, indent=1)
