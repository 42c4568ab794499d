"""The README, walked: every command in its bash blocks runs, in order, in a copy of the project,
on small inputs (substitutions below). Skipped: `pip install` (done), the test command itself,
and commands on `-i inventory.yaml` (they need your devices). The zoo builds need the zoo extra
(TensorFlow), as .ci/run installs; without it they are skipped and named."""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# README text -> what runs here (smaller, or a placeholder filled in)
SMALL = [("--sample 24", "--sample 2"), ("--limit 32", "--limit 2"), ("--duration 60", "--duration 3"),
         ("--load-start 20 --load-stop 40", "--load-start 1 --load-stop 2")]


def commands(readme: str) -> list[str]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        text = re.sub(r"\\\n\s*(#[^\n]*\n\s*)*", " ", block)        # continuation lines, and comments between
        for line in text.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()            # a comment to the end of the line
            if line:
                out.append(line)
    return out


def test_readme_commands_run(tmp_path):
    cmds = commands((ROOT / "README.md").read_text())
    assert any(c == "python -m harness.collect" for c in cmds) and len(cmds) >= 30
    work = tmp_path / "clone"
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".git", "runs", "__pycache__", "*.egg-info", ".pytest_cache"))
    (work / "samples.csv").write_text("arch_index,latency_ms\n" + "".join(f"{i},{10 + i % 4}\n" for i in range(10)))
    short = work / "short-step.csv"      # the live runs: 4 s of the load-step trace's shape
    short.write_text("t_s,background_load\n" + "".join(f"{t / 2},{1 if 2 <= t < 6 else 0}\n" for t in range(8)))
    (work / "my_models").mkdir()
    bundled = ROOT / "harness" / "zoo" / "bundled" / "digits-compressed"
    for f in ("dc-w025-d2-r32-int8.tflite", "dc-w050-d0-r32-float32.tflite"):
        shutil.copy(bundled / f, work / "my_models" / f)
    (work / "acc.csv").write_text("file,accuracy\ndc-w025-d2-r32-int8.tflite,0.5\ndc-w050-d0-r32-float32.tflite,0.6\n")
    try:
        import tensorflow  # noqa: F401
        have_tf = True
    except ImportError:
        have_tf = False
    cid, ran, skipped = None, [], []
    for c in cmds:
        if c.startswith(("pip install", "python -m pytest")) or "-i inventory.yaml" in c:
            skipped.append(c)
            continue
        if ("harness.zoo build" in c or "--verify" in c or "harness.zoo split " in c or "zoo/parts" in c
                or "runs/parts" in c) and not have_tf:
            skipped.append(c + "  (needs the zoo extra)")
            continue
        run = c
        for a, b in SMALL:
            run = run.replace(a, b)
        if cid:
            run = run.replace("runs/<c>", f"runs/{cid}").replace("<campaign>", cid)
        if "simulator.live" in run:
            run = run.replace("traces/local-load1-step.csv", str(short))
        if "HEX" in run:
            run = run.replace("HEX", hashlib.sha256((work / "model" / "model.skops").read_bytes()).hexdigest())
        if run.startswith("python "):
            run = sys.executable + run[len("python"):]
        p = subprocess.run(["bash", "-c", run], cwd=work, capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, f"README command failed ({p.returncode}): {c}\nran: {run}\n{p.stderr[-2000:]}"
        ran.append(c)
        if c == "python -m harness.collect":
            cid = sorted(d.name for d in (work / "runs").iterdir() if (d / "campaign.sqlite").exists())[-1]
    assert cid and len(ran) >= 25, (len(ran), skipped)
    print(f"{len(ran)} README commands ran; skipped: {skipped}")
