"""Build ``nb201`` candidates: NAS-Bench-201 cell networks (random weights, 32x32x3, latency only).

Macro skeleton (Dong & Yang, ICLR 2020): stem conv3x3(16)+BN; three stages of 5 cells with 16,
32, 64 channels; between stages a ResNet basic block with stride 2 (ReLU-conv3x3/2-BN,
ReLU-conv3x3-BN, shortcut avgpool2x2 + conv1x1); then BN, ReLU, global average pooling, a
10-way classifier. A cell is a 4-node DAG: node j sums op(node i) over i < j; ops are ``none``,
``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3`` (ReLU-conv-BN) and ``avg_pool_3x3``.

Graph rule for dead parts, which decides what the device runs: an edge is built only when its
source node is reachable from the cell input and its destination reaches the cell output
(TFLite prunes anything else anyway). A cell whose output is cut off from its input emits zeros
(``input * 0``) and the network goes on, as NAS-Bench-201's ``none`` op does; the converter may
merge a chain of such multiplies into fewer MULs.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from harness import __version__
from harness.errors import BadInput
from harness.zoo.graph import read_graph
from harness.zoo.manifest import write_manifest
from harness.zoo.synthetic import classifier

FAMILY = "nb201"
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
N_CELLS = 5
CHANNELS = (16, 32, 64)


def parse_cell(s: str) -> dict[tuple[int, int], str]:
    """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` -> {(to_node, from_node): op}."""
    nodes = s.strip().strip("|").split("|+|")
    if len(nodes) != 3:
        raise BadInput(f"cell {s!r}: expected 3 nodes separated by '+'")
    edges = {}
    for j, node in enumerate(nodes, start=1):
        parts = node.strip("|").split("|")
        if len(parts) != j:
            raise BadInput(f"cell {s!r}: node {j} needs {j} inputs, got {len(parts)}")
        for p in parts:
            op, _, src = p.partition("~")
            if op not in OPS or not src.isdigit() or int(src) >= j:
                raise BadInput(f"cell {s!r}: bad edge {p!r} (ops: {', '.join(OPS)})")
            edges[(j, int(src))] = op
    return edges


def live_edges(edges: dict[tuple[int, int], str]) -> tuple[dict[tuple[int, int], str], bool]:
    """Edges on some input->output path, and whether the output is reachable at all."""
    fwd = {0}
    for j in (1, 2, 3):
        if any(op != "none" and i in fwd for (jj, i), op in edges.items() if jj == j):
            fwd.add(j)
    back = {3}
    for i in (2, 1, 0):
        if any(op != "none" and j in back for (j, ii), op in edges.items() if ii == i):
            back.add(i)
    live = {(j, i): op for (j, i), op in edges.items() if op != "none" and i in fwd and j in back}
    return live, 3 in fwd


def expected_ops(cell: str) -> dict[str, int]:
    """CONV_2D and AVERAGE_POOL_2D counts the built graph must have, and the least number of MULs.

    The last BatchNorm has no conv to fold into: one MUL. Dead cells add ``x * 0`` MULs, which
    the converter may merge along a chain of dead cells, so only "more than one" is certain."""
    live, connected = live_edges(parse_cell(cell))
    n = 3 * N_CELLS
    return {"CONV_2D": 1 + 2 * 3 + n * sum(op.startswith("nor_conv") for op in live.values()),
            "AVERAGE_POOL_2D": 2 + n * sum(op == "avg_pool_3x3" for op in live.values()),
            "MUL": 1 if connected else 2}


def keras_model(cell: str, seed: int = 0):
    import tensorflow as tf
    from tensorflow import keras
    L = keras.layers
    tf.keras.utils.set_random_seed(seed)
    live, connected = live_edges(parse_cell(cell))

    def rcb(x, c, k, s=1):
        x = L.ReLU()(x)
        x = L.Conv2D(c, k, s, "same", use_bias=False)(x)
        return L.BatchNormalization()(x)

    def cell_fn(x, c):
        if not connected:
            return L.Lambda(lambda t: t * 0.0)(x)
        nodes = {0: x}
        for j in (1, 2, 3):
            terms = []
            for (jj, i), op in sorted(live.items()):
                if jj != j or i not in nodes:
                    continue
                h = nodes[i]
                if op == "nor_conv_1x1":
                    h = rcb(h, c, 1)
                elif op == "nor_conv_3x3":
                    h = rcb(h, c, 3)
                elif op == "avg_pool_3x3":
                    h = L.AveragePooling2D(3, 1, "same")(h)
                terms.append(h)
            if terms:
                nodes[j] = terms[0] if len(terms) == 1 else L.Add()(terms)
        return nodes[3]

    def reduction(x, c):
        y = rcb(x, c, 3, 2)
        y = rcb(y, c, 3)
        s = L.AveragePooling2D(2, 2)(x)
        s = L.Conv2D(c, 1, use_bias=False)(s)
        return L.Add()([s, y])

    inp = keras.Input((32, 32, 3), batch_size=1, name="image")
    x = L.Conv2D(CHANNELS[0], 3, 1, "same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    for stage, c in enumerate(CHANNELS):
        if stage:
            x = reduction(x, c)
        for _ in range(N_CELLS):
            x = cell_fn(x, c)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    return classifier(inp, x, seed)


def convert(model) -> bytes:
    import tensorflow as tf
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


SHIPPED_TABLE = Path(__file__).resolve().parent / "data" / "nb201_latency_ms.csv.gz"


def open_text(path: Path):
    """A text file, gzipped or not (the shipped table is)."""
    import gzip
    return gzip.open(path, "rt", newline="") if str(path).endswith(".gz") else path.open(newline="")


def _table(path: Path | None) -> dict[int, str]:
    if path is None:
        return {}
    try:
        with open_text(path) as f:
            return {int(r["arch_index"]): r["arch"] for r in csv.DictReader(f)}
    except (OSError, KeyError, ValueError) as e:
        raise BadInput(f"{path}: expected a CSV with arch_index and arch columns ({e})") from None


def build(out: Path, archs: list[tuple[int | None, str]], seed: int = 0, log=print) -> dict:
    import tensorflow as tf
    out.mkdir(parents=True, exist_ok=True)
    cands = []
    for idx, cell in archs:
        parse_cell(cell)
        cid = f"nb201-{idx:05d}" if idx is not None else "nb201-" + _cell_id(cell)
        path = out / f"{cid}.tflite"
        path.write_bytes(convert(keras_model(cell, seed)))
        g = read_graph(path)
        cands.append({"id": cid, "file": path.name, "sha256": g.sha256, "family": FAMILY,
                      "knobs": {"arch_index": idx, "arch": cell}, "input": {"shape": list(g.inputs[0].shape),
                                                                            "dtype": g.inputs[0].dtype},
                      "params": g.params, "macs": g.macs, "file_bytes": g.file_bytes,
                      "preprocessing": {"layout": "NHWC", "note": "random weights: any 32x32x3 float input"},
                      "accuracy": None, "training": {"weights": f"random (seed {seed})"}})
        log(f"{cid}: macs={g.macs} ops={g.op_histogram}")
    m = {"schema_version": 1, "family": FAMILY, "description": "NAS-Bench-201 cell networks, random weights",
         "builder": {"harness_version": __version__, "tensorflow": tf.__version__, "seed": seed},
         "task": None, "candidates": cands}
    write_manifest(out, m)
    return m


def _cell_id(cell: str) -> str:
    edges = parse_cell(cell)
    return "".join(str(OPS.index(edges[k])) for k in sorted(edges))


def choose_archs(args) -> list[tuple[int | None, str]]:
    """The cells to build: --archs lines, then --sample cells of the table drawn without
    replacement; a cell named twice is built once (two equal ids would be refused by collect)."""
    table = _table(args.table or SHIPPED_TABLE)
    archs: list[tuple[int | None, str]] = []
    index_of = {v: k for k, v in table.items()}
    if args.archs:
        for n, line in enumerate(args.archs.read_text().splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.isdigit():
                if int(line) not in table:
                    raise BadInput(f"{args.archs}:{n}: index {line} needs --table CSV with that arch_index")
                archs.append((int(line), table[int(line)]))
            else:
                archs.append((index_of.get(line), line))
    if args.sample:
        if not table:
            raise BadInput(f"{args.table}: no architectures to sample from")
        keys = sorted(table)
        if args.sample > len(keys):
            raise BadInput(f"--sample {args.sample}: the table has {len(keys)} architectures")
        rng = np.random.default_rng(args.seed)
        archs += [(int(k), table[int(k)]) for k in rng.choice(keys, size=args.sample, replace=False)]
    seen, out = set(), []
    for a in archs:
        if _cell_id(a[1]) not in seen:
            seen.add(_cell_id(a[1]))
            out.append(a)
    if len(out) < len(archs):
        print(f"nb201: {len(archs) - len(out)} cell(s) named twice, built once", file=sys.stderr)
    if args.limit:
        out = out[: args.limit]
    if not out:
        raise BadInput("nb201: give --archs FILE or --sample N")
    return out


def build_cli(args, log=print) -> dict:
    archs = choose_archs(args)
    return build(args.out, archs, args.seed, log=log)
