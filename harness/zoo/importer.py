"""python -m harness.zoo import DIR: user-provided .tflite files become a family."""

from __future__ import annotations

import csv
from pathlib import Path

from harness import __version__
from harness.errors import BadInput
from harness.zoo.graph import read_graph
from harness.zoo.manifest import SCHEMA_VERSION, write_manifest


def _accuracies(path: Path | None) -> dict[str, float]:
    if path is None:
        return {}
    try:
        rows = list(csv.DictReader(path.open(newline="")))
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    out = {}
    for i, r in enumerate(rows, start=2):
        if "file" not in r or "accuracy" not in r:
            raise BadInput(f"{path}: expected columns file,accuracy")
        try:
            out[r["file"]] = float(r["accuracy"])
        except (TypeError, ValueError):
            raise BadInput(f"{path}:{i}: accuracy: expected a number, got {r['accuracy']!r}") from None
    return out


def import_dir(d: Path, accuracy_csv: Path | None = None, family: str | None = None) -> tuple[dict, list[str]]:
    """Write DIR/manifest.json from the graphs; return it and one line per skipped file."""
    if not d.is_dir():
        raise BadInput(f"{d}: not a directory")
    acc = _accuracies(accuracy_csv)
    family = family or d.resolve().name
    cands, skipped = [], []
    for f in sorted(d.glob("*.tflite")):
        try:
            g = read_graph(f)
        except BadInput as e:
            skipped.append(f"skipped {e}")
            continue
        inp = g.inputs[0]
        pre = {"layout": "NHWC" if len(inp.shape) == 4 else "unknown", "note": "derived from the graph; "
               "resize/scaling unknown for imported models"}
        if inp.scale is not None:
            pre["quantize"] = {"dtype": inp.dtype, "scale": inp.scale, "zero_point": inp.zero_point}
        cands.append({"id": f.stem, "file": f.name, "sha256": g.sha256, "family": family, "knobs": {},
                      "input": {"shape": list(inp.shape), "dtype": inp.dtype}, "params": g.params, "macs": g.macs,
                      "file_bytes": g.file_bytes, "op_histogram": g.op_histogram, "preprocessing": pre,
                      "accuracy": acc.get(f.name), "training": None})
    m = {"schema_version": SCHEMA_VERSION, "family": family, "description": f"imported from {d}",
         "builder": {"harness_version": __version__, "imported": True,
                     "accuracy_source": str(accuracy_csv) if accuracy_csv else None},
         "task": None, "candidates": cands}
    write_manifest(d, m)
    return m, skipped
