"""NAS-Bench-201 adapter: the wide latency table (one row per architecture, one column per
device), cell-string features, and the bridge from harness-measured nb201 candidates to the
table's ``arch_index``."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import BadInput
from harness.zoo.nb201 import OPS, live_edges, parse_cell

EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


@dataclass
class WideTable:
    """``arch_index`` and ``arch`` per row, ``latency`` (rows x devices, ms, NaN where missing)."""
    arch_index: np.ndarray
    arch: list[str]
    devices: list[str]
    latency: np.ndarray
    source: str

    def row_of(self) -> dict[int, int]:
        return {int(a): i for i, a in enumerate(self.arch_index)}


def load_table(path: str | Path) -> WideTable:
    from harness.zoo.nb201 import open_text
    path = Path(path)
    try:
        f = open_text(path)
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    with f:
        r = csv.reader(f)
        header = next(r, None)
        if not header or header[:2] != ["arch_index", "arch"] or len(header) < 3:
            raise BadInput(f"{path}:1: expected header 'arch_index,arch,<device>,...', got {header!r}")
        idx, arch, rows = [], [], []
        for n, row in enumerate(r, start=2):
            if len(row) != len(header):
                raise BadInput(f"{path}:{n}: {len(row)} fields, header has {len(header)}")
            try:
                idx.append(int(row[0]))
                rows.append([float(v) if v.strip() else np.nan for v in row[2:]])
            except ValueError as e:
                raise BadInput(f"{path}:{n}: not a number ({e})") from None
            parse_cell(row[1])
            arch.append(row[1])
    lat = np.array(rows, float)
    if lat.size and np.nanmin(lat) <= 0:
        raise BadInput(f"{path}: latencies must be positive milliseconds")
    return WideTable(np.array(idx), arch, header[2:], lat, str(path))


def op_counts(cell: str) -> list[float]:
    """Count of each non-none op over all six edges, then over the live edges only (edges on an
    input->output path). Frameworks that execute dead edges pay for the first; those that prune
    them (TFLite) for the second; a per-device linear model learns which."""
    edges = parse_cell(cell)
    live, _ = live_edges(edges)
    return [float(sum(v == o for v in src.values())) for src in (edges, live) for o in OPS[1:]]


COUNT_NAMES = [f"{scope}_{o}" for scope in ("all", "live") for o in OPS[1:]]


def cell_features(cells: list[str]) -> np.ndarray:
    return np.array([op_counts(c) for c in cells], float)


def bridge(manifest: str | Path, table: WideTable | None = None) -> dict[str, int]:
    """candidate id -> NAS-Bench-201 arch_index for an nb201 zoo manifest. Candidates built from
    a cell string without an index are matched by their cell string in ``table``."""
    m = json.loads(Path(manifest).read_text())
    by_arch = {a: int(i) for i, a in zip(table.arch_index, table.arch)} if table else {}
    out = {}
    for c in m.get("candidates", []):
        if c.get("family") != "nb201":
            continue
        k = c.get("knobs", {})
        if k.get("arch_index") is not None:
            out[c["id"]] = int(k["arch_index"])
        elif k.get("arch") in by_arch:
            out[c["id"]] = by_arch[k["arch"]]
    return out
