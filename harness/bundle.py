"""The agent as deployed: one zip file (a Python zipapp) holding harness/agent.py, the power
meters and the tool-output parsers, runnable as ``python3 agent-<sha>.pyz`` on Python >= 3.7.

The zip is deterministic (sorted entries, fixed timestamps), so its sha256 names the agent's
code exactly: the collector uploads it once per version and the store records which one ran."""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
FILES = ("__init__.py", "agent.py", "telemetry/__init__.py", "telemetry/parsers.py", "telemetry/meters/*.py")
MAIN = b"import sys\nfrom harness.agent import main\nsys.exit(main())\n"


def bundle_bytes() -> bytes:
    files = sorted({p for pat in FILES for p in ROOT.glob(pat)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
        add("__main__.py", MAIN)
        for p in files:
            add("harness/" + p.relative_to(ROOT).as_posix(), p.read_bytes())
    return buf.getvalue()


def agent_bundle(dest: Path | None = None) -> Path:
    """Write the bundle (once per content) and return its path: DIR/agent-<sha16>.pyz."""
    data = bundle_bytes()
    sha = hashlib.sha256(data).hexdigest()[:16]
    d = Path(dest) if dest else Path(tempfile.gettempdir()) / "edge-harness-agent"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"agent-{sha}.pyz"
    if not path.exists():
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path
