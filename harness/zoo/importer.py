"""python -m harness.zoo import DIR: user-provided .tflite files become a family.

A folder that already has a manifest (a built zoo, or an earlier import) is merged, not
rewritten: a file it lists with the same sha256 keeps its entry (accuracy, knobs, family,
training), an accuracy CSV may set accuracies, new files are added, and the previous manifest is
kept as manifest.json.bak-<time> before anything is written. ``force`` rebuilds the entries from
the graphs alone (with the same backup)."""

from __future__ import annotations

import csv
import json
import shutil
import time
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


def _previous(d: Path, force: bool) -> dict | None:
    path = d / "manifest.json"
    if not path.exists() or force:
        return None
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("candidates"), list):
            raise ValueError("no candidates list")
        return doc
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: exists but cannot be merged ({type(e).__name__}: {e}); --force rebuilds it from the "
                       f"graphs (the old one is kept as a backup)") from None


def import_dir(d: Path, accuracy_csv: Path | None = None, family: str | None = None,
               force: bool = False) -> tuple[dict, list[str]]:
    """Write DIR/manifest.json from the graphs, merged with the one there (module docstring);
    return it and one line per skipped file or warning."""
    if not d.is_dir():
        raise BadInput(f"{d}: not a directory")
    acc = _accuracies(accuracy_csv)
    files = sorted(d.glob("*.tflite"))
    unknown = sorted(set(acc) - {f.name for f in files})
    if unknown:
        raise BadInput(f"{accuracy_csv}: names files not in {d}: {', '.join(unknown)}")
    prev = _previous(d, force)
    known = {c.get("file"): c for c in (prev or {}).get("candidates", []) if isinstance(c, dict)}
    family = family or (prev or {}).get("family") or d.resolve().name
    cands, skipped, kept = [], [], 0
    for f in files:
        try:
            g = read_graph(f)
        except BadInput as e:
            skipped.append(f"skipped {e}")
            continue
        old = known.get(f.name)
        if old is not None and old.get("sha256") == g.sha256:
            entry = dict(old)        # what a builder or an earlier import knew is kept
            kept += 1
        else:
            if old is not None:
                skipped.append(f"warning: {f.name} changed since the manifest (sha256 differs): its old entry is dropped")
            inp = g.inputs[0]
            pre = {"layout": "NHWC" if len(inp.shape) == 4 else "unknown", "note": "derived from the graph; "
                   "resize/scaling unknown for imported models"}
            if inp.scale is not None:
                pre["quantize"] = {"dtype": inp.dtype, "scale": inp.scale, "zero_point": inp.zero_point}
            entry = {"id": f.stem, "file": f.name, "sha256": g.sha256, "family": family, "knobs": {},
                     "input": {"shape": list(inp.shape), "dtype": inp.dtype}, "params": g.params, "macs": g.macs,
                     "file_bytes": g.file_bytes, "op_histogram": g.op_histogram, "preprocessing": pre,
                     "accuracy": None, "training": None}
        if f.name in acc:
            entry["accuracy"] = acc[f.name]
        cands.append(entry)
    gone = sorted(set(known) - {f.name for f in files})
    if gone:
        skipped.append(f"warning: the manifest listed files no longer here, dropped: {', '.join(map(str, gone))}")
    missing = [c["id"] for c in cands if c.get("accuracy") is None]
    if missing:
        skipped.append(f"warning: {len(missing)} candidate(s) without accuracy (give --accuracy CSV with file,accuracy): "
                       f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if prev is not None:
        m = dict(prev, candidates=cands)
        m["builder"] = dict(prev.get("builder") or {}, merged_by={"harness_version": __version__, "kept": kept,
                            "accuracy_source": str(accuracy_csv) if accuracy_csv else None})
    else:
        m = {"schema_version": SCHEMA_VERSION, "family": family, "description": f"imported from {d}",
             "builder": {"harness_version": __version__, "imported": True,
                         "accuracy_source": str(accuracy_csv) if accuracy_csv else None},
             "task": None, "candidates": cands}
    if (d / "manifest.json").exists():   # never lose what the user had
        stem = f"manifest.json.bak-{time.strftime('%Y%m%d-%H%M%S')}"
        bak, n = d / stem, 1
        while bak.exists():       # two imports in one second: neither backup overwrites the other
            bak, n = d / f"{stem}-{n}", n + 1
        shutil.copy2(d / "manifest.json", bak)
        skipped.append(f"kept the previous manifest as {bak.name}")
    write_manifest(d, m)
    return m, skipped
