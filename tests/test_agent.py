"""The on-device agent, spoken to through its JSON-lines protocol over a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import agent
from harness.bundle import agent_bundle
from harness.transport.local import LocalTransport
from harness.zoo.manifest import BUNDLED, load_manifest
from tests.sshd import descendants

AGENT = str(agent_bundle())   # what the collector deploys: agent + meters + parsers in one zip
ALT_PYTHON = os.environ.get("EDGE_AGENT_ALT_PYTHON")  # e.g. a venv with tflite-runtime + numpy<2


def _talk(proc, req, timeout=120):
    proc.write_line(json.dumps(req))
    return json.loads(proc.read_line(timeout))


def _model():
    _, cands = load_manifest(BUNDLED)
    return str(min(cands, key=lambda c: c.macs).path)


@pytest.fixture(params=["host-python"] + (["alt-python"] if ALT_PYTHON else []))
def python(request):
    return sys.executable if request.param == "host-python" else ALT_PYTHON


def test_hello_and_measure(python):
    p = LocalTransport().start([python, AGENT])
    try:
        hello = _talk(p, {"cmd": "hello", "id": 1})
        assert hello["ok"] and hello["id"] == 1 and hello["runtime_version"]
        if python == ALT_PYTHON:
            assert hello["runtime"] == "tflite-runtime" and hello["numpy"].startswith("1.")
        r = _talk(p, {"cmd": "measure", "model": _model(), "threads": 1, "n_runs": 15, "id": 2})
        assert r["ok"], r
        assert len(r["samples_ms"]) == 15 and all(x > 0 for x in r["samples_ms"])
        assert r["load_ms"] > 0 and r["first_inference_ms"] > 0 and len(r["warmup_ms"]) >= 10
        assert r["peak_rss_mb"] > 1 and r["runtime"] == hello["runtime"]
        assert "loadavg" in r["context_before"] and r["context_after"]["t_mono"] > r["context_before"]["t_mono"]
        # XNNPACK takes the whole float graph; it leaves this model's hybrid (dynamic-range int8)
        # convolutions to the reference kernels, which split the graph into pieces
        assert r["delegate_partitions"] == 1
        hybrid = str(Path(BUNDLED) / "dc-w100-d0-r64-dynamic-int8.tflite")
        r = _talk(p, {"cmd": "measure", "model": hybrid, "threads": 1, "n_runs": 5, "id": 3})
        assert r["ok"] and r["delegate_partitions"] > 1, r.get("delegate_partitions")
    finally:
        p.close()


def test_paired_reference_alternates_blocks_and_keeps_the_untimed_invokes(python):
    """With ``blocks``, the pairs phase alternates blocks of k untimed then m timed invokes of
    each model (the last block shorter, so n timed of each); the untimed ones are returned apart.
    The model as its own reference: ratio 1. Without ``blocks``: single invokes, as before."""
    model = _model()
    p = LocalTransport().start([python, AGENT])
    try:
        ref = {"model": model, "id": "self", "sha256": "x", "blocks": {"skip": 2, "timed": 4}}
        r = _talk(p, {"cmd": "measure", "model": model, "threads": 1, "n_runs": 10, "id": 1, "reference": ref})
        assert r["ok"], r
        pr = r["reference"]
        assert pr["blocks"] == {"skip": 2, "timed": 4}
        assert len(pr["model_ms"]) == len(pr["reference_ms"]) == 10
        assert len(pr["model_switch_ms"]) == len(pr["reference_switch_ms"]) == 2 * 3   # blocks of 4, 4, 2
        ratios = sorted(a / b for a, b in zip(pr["model_ms"], pr["reference_ms"]))
        assert 0.7 <= ratios[len(ratios) // 2] <= 1.4
        del ref["blocks"]
        r = _talk(p, {"cmd": "measure", "model": model, "threads": 1, "n_runs": 6, "id": 2, "reference": ref})
        assert len(r["reference"]["model_ms"]) == 6 and "model_switch_ms" not in r["reference"]
    finally:
        p.close()


def test_protocol_stays_clean_and_errors_are_answers(tmp_path):
    bad = tmp_path / "bad model.tflite"
    bad.write_bytes(b"\x00" * 4 + b"TFL3" + os.urandom(300))
    p = LocalTransport().start([sys.executable, AGENT])
    try:
        r = _talk(p, {"cmd": "measure", "model": str(bad), "n_runs": 3, "id": 7})
        assert r["ok"] is False and r["kind"] == "model" and r["id"] == 7
        p.write_line("this is not json")
        assert json.loads(p.read_line(30))["kind"] == "protocol"
        assert _talk(p, {"cmd": "nope", "id": 8})["kind"] == "protocol"
        assert _talk(p, {"cmd": "hello", "id": 9})["ok"]  # still serving
    finally:
        p.close()


def test_background_load_is_stopped_after_the_job_and_when_the_agent_dies():
    proc = subprocess.Popen([sys.executable, AGENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc.stdin.write(json.dumps({"cmd": "measure", "model": _model(), "n_runs": 5, "background_load": 2}) + "\n")
    proc.stdin.flush()
    r = json.loads(proc.stdout.readline())
    assert r["ok"] and len(r["background"]) == 2
    assert all(not os.path.exists(f"/proc/{b['pid']}") or _zombie(b["pid"]) for b in r["background"])
    # Now kill the agent mid-job: its busy children must go away on their own.
    proc.stdin.write(json.dumps({"cmd": "measure", "model": _model(), "n_runs": 100000, "background_load": 2}) + "\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 10
    kids = []
    while time.monotonic() < deadline and len(kids) < 2:
        kids = [k for k in descendants(proc.pid)]
        time.sleep(0.05)
    assert len(kids) == 2
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{k}") and not _zombie(k) for k in kids):
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{k}") and not _zombie(k) for k in kids)


def _zombie(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_agent_exits_when_stdin_closes():
    proc = subprocess.Popen([sys.executable, AGENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_runtime_fallback_order_and_report(monkeypatch):
    rt = agent.load_runtime()
    assert rt.name in ("tflite-runtime", "ai-edge-litert", "tensorflow.lite") and rt.version
    monkeypatch.setattr(agent, "RUNTIMES", ())
    with pytest.raises(RuntimeError, match="no TFLite runtime"):
        agent.load_runtime()


def test_agent_source_is_python37_compatible(tmp_path):
    """vermin on the source files the bundle holds (handed the .pyz, vermin skips it and checks
    nothing); a 3.8 construct in a copy is caught, so the check can fail."""
    from harness import bundle
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    files = sorted({str(p) for pat in bundle.FILES for p in bundle.ROOT.glob(pat)})
    assert any(f.endswith("harness/agent.py") for f in files) and len(files) >= 5
    out = subprocess.run([vermin, "--target=3.7-", "--no-tips", "--violations", *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    bad = tmp_path / "agent.py"
    bad.write_text(Path(files[0]).read_text() + "\nif (n := 1):\n    pass\n")
    out = subprocess.run([vermin, "--target=3.7-", "--no-tips", "--violations", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "target versions not met" in out.stdout.lower()


def test_agent_command_line(tmp_path):
    """argparse, 3.7-compatible: --help says what it does, a missing value is one usage line."""
    h = subprocess.run([sys.executable, AGENT, "--help"], capture_output=True, text=True, timeout=60)
    assert h.returncode == 0 and "--provision" in h.stdout and "--log FILE" in h.stdout
    p = subprocess.run([sys.executable, AGENT, "--log"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "argument --log: expected one argument" in p.stderr and "Traceback" not in p.stderr


def test_provision_creates_a_venv_with_a_runtime(tmp_path):
    """--provision on a target: a venv in the work dir with NumPy and a runtime. With
    --system-site-packages pip finds both already installed, so this needs no network; on a bare
    device the same command downloads them."""
    out = subprocess.run([sys.executable, AGENT, "--provision", str(tmp_path), "ai-edge-litert",
                          "--system-site-packages"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    py = out.stdout.strip().splitlines()[-1]
    assert py == str(tmp_path / "venv" / "bin" / "python") and os.access(py, os.X_OK)
    p = LocalTransport().start([py, AGENT])
    try:
        hello = _talk(p, {"cmd": "hello", "id": 1})
        assert hello["ok"] and hello["executable"] == py and hello["runtime"] == "ai-edge-litert"
    finally:
        p.close()
