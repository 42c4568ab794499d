"""Zoo manifests: load, validate, locate the bundled default."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.errors import BadInput

SCHEMA_VERSION = 1
BUNDLED = Path(__file__).parent / "bundled" / "digits-compressed"
REQUIRED = ("id", "file", "sha256", "family", "input", "macs", "params", "file_bytes")


@dataclass(frozen=True)
class Candidate:
    id: str
    path: Path
    sha256: str
    family: str
    macs: int
    params: int
    file_bytes: int
    accuracy: float | None
    knobs: dict
    entry: dict  # the full manifest entry, kept for provenance


def write_manifest(d: Path, doc: dict) -> Path:
    """Write ``d/manifest.json`` atomically (a reader never sees half a manifest)."""
    path = d / "manifest.json"
    tmp = d / "manifest.json.part"
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return path


def _check_candidate(path: Path, i: int, c: dict) -> None:
    """Types and ranges, before any job runs: a value the store or the Parquet export cannot take
    would strand a finished campaign (issue 33)."""
    where = f"{path}: candidates[{i}]"
    for k in ("id", "file", "sha256", "family"):
        if not isinstance(c[k], str) or not c[k]:
            raise BadInput(f"{where}.{k}: expected a non-empty string, got {c[k]!r}")
    for k in ("macs", "params", "file_bytes"):
        v = c[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise BadInput(f"{where}.{k}: expected a whole number >= 0, got {v!r}")
    acc = c.get("accuracy")
    if acc is not None and (isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 1):
        raise BadInput(f"{where}.accuracy: expected a number from 0 to 1 or null, got {acc!r}")
    if not isinstance(c.get("knobs", {}), dict):
        raise BadInput(f"{where}.knobs: expected a mapping, got {c.get('knobs')!r}")


def load_manifest(zoo: str | Path) -> tuple[dict, list[Candidate]]:
    """Read ``zoo`` (a directory holding manifest.json, or the file itself)."""
    zoo = Path(zoo)
    path = zoo / "manifest.json" if zoo.is_dir() else zoo
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: no zoo manifest here (build one with python -m harness.zoo)") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a text file; expected a JSON zoo manifest") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("candidates"), list):
        raise BadInput(f"{path}: expected an object with a 'candidates' list")
    v = doc.get("schema_version")
    if v != SCHEMA_VERSION:
        raise BadInput(f"{path}: schema_version: expected {SCHEMA_VERSION}, got {v!r}")
    out = []
    seen = set()
    for i, c in enumerate(doc["candidates"]):
        for k in REQUIRED:
            if not isinstance(c, dict) or k not in c:
                raise BadInput(f"{path}: candidates[{i}].{k}: missing")
        if c["id"] in seen:
            raise BadInput(f"{path}: candidates[{i}].id: duplicate id {c['id']!r}")
        seen.add(c["id"])
        _check_candidate(path, i, c)
        out.append(Candidate(c["id"], path.parent / c["file"], c["sha256"], c["family"], int(c["macs"]),
                             int(c["params"]), int(c["file_bytes"]), c.get("accuracy"), c.get("knobs", {}), c))
    return doc, out
