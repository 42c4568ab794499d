from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from harness.zoo.manifest import BUNDLED, load_manifest

FIXTURES = Path(__file__).parent / "fixtures"


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write a sysfs-like tree under ``root``: {relative path: content}; each file gets a newline."""
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{text}\n")
    return root


def fake_tool(bindir: Path, name: str, body: str) -> Path:
    """An executable Python script ``bindir/name`` (put bindir on PATH to stand in for a device tool)."""
    bindir.mkdir(exist_ok=True)
    p = bindir / name
    p.write_text(f"#!{sys.executable}\n" + body)
    p.chmod(0o755)
    return p


def ok_jobs(db: Path) -> int:
    """Jobs measured ok so far in a running campaign's database (0 while the file exists but its
    tables do not yet: a test that polls the file can see it in that moment)."""
    try:
        return sqlite3.connect(db).execute("SELECT count(*) FROM jobs WHERE status='ok'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def pick_candidates(n: int) -> list[str]:
    """The ``n`` cheapest bundled candidates of distinct architectures (fast, yet different)."""
    _, cands = load_manifest(BUNDLED)
    out, seen = [], set()
    for c in sorted(cands, key=lambda c: c.macs):
        arch = (c.knobs.get("width"), c.knobs.get("blocks_removed"), c.knobs.get("resolution"))
        if arch not in seen:
            seen.add(arch)
            out.append(c.id)
        if len(out) == n:
            break
    return out


def make_zoo(dest: Path, ids: list[str], rename: dict[str, str] | None = None, corrupt: list[str] = ()) -> Path:
    """A zoo directory holding copies of bundled candidates; ``corrupt`` ones are overwritten with junk."""
    doc, _ = load_manifest(BUNDLED)
    dest.mkdir(parents=True, exist_ok=True)
    keep = []
    for c in doc["candidates"]:
        if c["id"] not in ids:
            continue
        c = dict(c)
        name = (rename or {}).get(c["id"], c["file"])
        shutil.copyfile(BUNDLED / c["file"], dest / name)
        c["file"] = name
        if c["id"] in corrupt:
            data = (dest / name).read_bytes()
            junk = data[:8] + bytes(reversed(data[8:200])) + b"\x00" * 64
            (dest / name).write_bytes(junk)
            import hashlib
            c["sha256"] = hashlib.sha256(junk).hexdigest()
        keep.append(c)
    doc = dict(doc, candidates=keep)
    (dest / "manifest.json").write_text(json.dumps(doc))
    return dest


@pytest.fixture(scope="session")
def small_ids() -> list[str]:
    return pick_candidates(3)


@pytest.fixture
def small_zoo(tmp_path, small_ids) -> Path:
    return make_zoo(tmp_path / "zoo", small_ids)


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder nobody may write to, for real: a read-only tmpfs for root (who ignores modes),
    mode 0555 for anyone else."""
    import os
    import subprocess
    d = tmp_path / "readonly"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(d)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"root without mount rights here ({p.stderr.strip()}): a read-only folder cannot be made")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=False)
