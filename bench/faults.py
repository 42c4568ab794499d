"""Every fault and bad input the harness is known to meet, run for real: what the user sees, what is kept.

    python bench/faults.py [--out docs/faults.md] [--only SUBSTRING]

Each fault runs its command line in a subprocess on this machine (the local target, the bundled
zoo) and is judged: the exit status it should have, no Python traceback on the screen, and a
check of what is kept afterwards (rows in the store, the trace, the manifest, the marker file a
tampered artifact would write). Exit status 1 when any fault misses its expectation. With --out,
the table is written as Markdown (docs/faults.md is this script's output).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.zoo.manifest import BUNDLED, load_manifest  # noqa: E402

PY = sys.executable
QUICK = ["--runs", "5", "--threads", "1", "--background-load", "0", "--reference", "none", "--no-report"]


@dataclass
class Fault:
    area: str
    what: str
    expect: int                       # the exit status the command should have
    setup: Callable                   # (Work) -> (argv, kept: () -> str, how: dict)


@dataclass
class Outcome:
    fault: Fault
    rc: int
    seen: str
    kept: str
    traceback: bool

    @property
    def ok(self) -> bool:
        return self.rc == self.fault.expect and not self.traceback and not self.kept.startswith("LOST")


class Work:
    """A scratch folder with a small zoo and one finished campaign to break."""

    def __init__(self, root: Path):
        self.root = root
        self.zoo = self._zoo(root / "zoo", 3)
        self.base = self.collect_ok(root / "base-runs")

    def _zoo(self, dest: Path, n: int) -> Path:
        doc, cands = load_manifest(BUNDLED)
        keep = [c for c in doc["candidates"] if c["id"].endswith("-float32")][:n]
        dest.mkdir(parents=True)
        for c in keep:
            shutil.copyfile(BUNDLED / c["file"], dest / c["file"])
        (dest / "manifest.json").write_text(json.dumps(dict(doc, candidates=keep)))
        return dest

    def zoo_copy(self, name: str) -> Path:
        d = self.root / name
        shutil.copytree(self.zoo, d)
        return d

    def collect_ok(self, out: Path) -> Path:
        run([PY, "-m", "harness.collect", "--zoo", str(self.zoo), "--out", str(out), *QUICK, "-q"], check=True)
        (d,) = [p for p in out.iterdir() if p.is_dir()]
        return d

    def campaign_copy(self, name: str) -> Path:
        out = self.root / name
        shutil.copytree(self.base.parent, out)
        return out / self.base.name

    def file(self, name: str, data: str | bytes) -> Path:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        return p


def run(argv, check=False, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=kw.pop("cwd", None),
                       timeout=kw.pop("timeout", 300), **kw)
    if check and p.returncode != 0:
        raise SystemExit(f"setup failed: {' '.join(map(str, argv))}\n{p.stderr[-2000:]}")
    return p


def jobs(d: Path) -> dict[str, int]:
    try:
        return dict(sqlite3.connect(d / "campaign.sqlite").execute("SELECT status, count(*) FROM jobs GROUP BY status"))
    except sqlite3.Error as e:
        return {"unreadable": str(e)}


def campaign_in(out: Path) -> Path | None:
    ds = [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []
    return ds[0] if ds else None


def jobs_text(d: Path | None) -> str:
    if d is None:
        return "no campaign folder made"
    j = jobs(d)
    return ", ".join(f"{k} {v}" for k, v in sorted(j.items()))


def sha(p: Path) -> str:
    import hashlib
    return hashlib.sha256(p.read_bytes()).hexdigest()


def collect(w: Work, *args, out: Path | None = None):
    out = out or w.root / f"runs-{time.monotonic_ns()}"
    argv = [PY, "-m", "harness.collect", "--out", out, *args]
    return argv, out


FAULTS: list[Fault] = []


def fault(area: str, what: str, expect: int):
    def deco(f):
        FAULTS.append(Fault(area, what, expect, f))
        return f
    return deco


# ---------------------------------------------------------------- collect: bad input before any job
def _inv(name: str, text: str | bytes):
    def setup(w: Work):
        inv = w.file(name, text)
        argv, out = collect(w, "-i", inv, "--zoo", w.zoo, *QUICK)
        return argv, lambda: "nothing run; " + jobs_text(campaign_in(out)) if campaign_in(out) else "nothing run, no folder made"
    return setup


for _name, _what, _text in [
    ("broken.yaml", "inventory: broken YAML", "targets:\n  - name: a\n    profile: [x86-linux\n"),
    ("binary.yaml", "inventory: a binary file", bytes(range(256)) * 4),
    ("dup.yaml", "inventory: a key given twice", "targets:\n  - name: a\n    name: b\n    profile: x86-linux\n"
                                                   "    transport: local\n"),
    ("port.yaml", "inventory: `port: true`", "targets:\n  - name: a\n    profile: x86-linux\n    transport: ssh\n"
                                               "    host: 127.0.0.1\n    port: true\n"),
    ("cpus.yaml", "inventory: `cpus: [true]`", "targets:\n  - name: a\n    profile: x86-linux\n    transport: local\n"
                                                 "    cpus: [true]\n"),
]:
    FAULTS.append(Fault("collect", _what, 2, _inv(_name, _text)))


def _manifest_fault(edit):
    def setup(w: Work):
        z = w.zoo_copy(f"zoo-{time.monotonic_ns()}")
        edit(z)
        argv, out = collect(w, "--zoo", z, *QUICK)
        return argv, lambda: "nothing run" if campaign_in(out) is None else "LOST? a campaign began"
    return setup


def _set_first(key, value):
    def edit(z: Path):
        doc = json.loads((z / "manifest.json").read_text())
        doc["candidates"][0][key] = value
        (z / "manifest.json").write_text(json.dumps(doc))
    return edit


fault("collect", "zoo manifest: a binary file", 2)(
    _manifest_fault(lambda z: (z / "manifest.json").write_bytes(bytes(range(256)))))
fault("collect", 'zoo manifest: `accuracy: "high"`', 2)(_manifest_fault(_set_first("accuracy", "high")))
fault("collect", 'zoo manifest: `macs: "lots"`', 2)(_manifest_fault(_set_first("macs", "lots")))

for _opt, _val in [("--runs", "0"), ("--runs", "-1"), ("--limit", "0"), ("--threads", "0"), ("--retries", "-1"),
                   ("--job-timeout", "nan")]:
    def _cli(w: Work, opt=_opt, val=_val):
        args = [a for a in QUICK if a != opt]
        if opt in ("--runs", "--threads"):
            i = QUICK.index(opt)
            args = QUICK[:i] + QUICK[i + 2:]
        argv, out = collect(w, "--zoo", w.zoo, *args, opt, val)
        return argv, lambda: "nothing run" if campaign_in(out) is None else "LOST? a campaign began"
    FAULTS.append(Fault("collect", f"`{_opt} {_val}`", 2, _cli))


@fault("collect", "`--reference` a corrupt .tflite", 2)
def _(w: Work):
    bad = w.file("corrupt-ref.tflite", b"TFL3" + bytes(500))
    argv, out = collect(w, "--zoo", w.zoo, *[a for a in QUICK if a not in ("--reference", "none")], "--reference", bad)
    return argv, lambda: "nothing run" if campaign_in(out) is None else "LOST? a campaign began"


# ---------------------------------------------------------------- collect: the campaign store
def _store_fault(name, corrupt, extra=()):
    def setup(w: Work):
        d = w.campaign_copy(f"store-{name}")
        db = d / "campaign.sqlite"
        for side in ("campaign.sqlite-wal", "campaign.sqlite-shm"):
            (d / side).unlink(missing_ok=True)
        corrupt(db)
        before = sha(db)
        argv = [PY, "-m", "harness.collect", "--resume", d.name, "--out", d.parent, "--no-report", *extra]
        return argv, lambda: "the file is left as it was" if sha(db) == before else "LOST: the file was rewritten"
    return setup


fault("collect", "`--resume` on a zero-byte campaign.sqlite", 2)(_store_fault("empty", lambda p: p.write_bytes(b"")))
fault("collect", "`--resume` on random bytes as campaign.sqlite", 2)(
    _store_fault("random", lambda p: p.write_bytes(os.urandom(8192))))
fault("collect", "`--resume` on a truncated campaign.sqlite", 2)(
    _store_fault("truncated", lambda p: p.write_bytes(p.read_bytes()[:3000])))


@fault("report", "`reports.build` on a zero-byte campaign.sqlite (measurements.parquet beside it)", 0)
def _(w: Work):
    d = w.campaign_copy("store-report")
    db = d / "campaign.sqlite"
    for side in ("campaign.sqlite-wal", "campaign.sqlite-shm"):
        (d / side).unlink(missing_ok=True)
    db.write_bytes(b"")

    def kept():
        if db.stat().st_size:
            return "LOST: the store was rewritten"
        said = "campaign.sqlite: unreadable" in (d / "report.html").read_text()
        return "the store left as it was (0 bytes); the report is built from measurements.parquet" + \
            (" and says the store is unreadable" if said else "; LOST? it does not say the store is unreadable")
    return [PY, "-m", "reports.build", d], kept


@fault("collect", "`--resume` after the target's profile changed in the inventory", 2)
def _(w: Work):
    out = w.root / "changed"
    inv = w.file("changed-inv.yaml", f"targets:\n  - name: here\n    profile: x86-linux\n    transport: local\n"
                                     f"    python: {PY}\n    workdir: {w.root / 'wd'}\n")
    run([PY, "-m", "harness.collect", "-i", inv, "--zoo", w.zoo, "--out", out, *QUICK, "--limit", "1", "-q"], check=True)
    d = campaign_in(out)
    sqlite3.connect(d / "campaign.sqlite").execute("UPDATE jobs SET status='pending'")   # jobs left to do
    inv.write_text(inv.read_text().replace("x86-linux", "raspberry-pi-5"))
    argv = [PY, "-m", "harness.collect", "--resume", d.name, "--out", out, "--no-report"]
    return argv, lambda: "nothing measured under the old name: " + jobs_text(d)


@fault("collect", "a second collector on the same campaign", 2)
def _(w: Work):
    d = w.campaign_copy("locked")
    sqlite3.connect(d / "campaign.sqlite").execute("UPDATE jobs SET status='pending'")
    holder = subprocess.Popen([PY, "-c", "import fcntl,sys,time; f=open(sys.argv[1],'a+'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); f.write('pid 1 (bench holder)'); f.flush(); "
                               "print('held', flush=True); time.sleep(60)", str(d / "campaign.lock")],
                              stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    argv = [PY, "-m", "harness.collect", "--resume", d.name, "--out", d.parent, "--no-report"]

    def kept():
        holder.kill()
        return "the running collector's campaign untouched: " + jobs_text(d)
    return argv, kept


# ---------------------------------------------------------------- collect: faults during a run
@fault("collect", "a corrupt .tflite among the candidates", 1)
def _(w: Work):
    z = w.zoo_copy("zoo-corrupt")
    doc = json.loads((z / "manifest.json").read_text())
    f = z / doc["candidates"][1]["file"]
    junk = f.read_bytes()[:8] + bytes(300)
    f.write_bytes(junk)
    doc["candidates"][1]["sha256"] = sha(f)
    (z / "manifest.json").write_text(json.dumps(doc))
    argv, out = collect(w, "--zoo", z, *QUICK)
    return argv, lambda: "its error row; the others measured: " + jobs_text(campaign_in(out))


@fault("collect", "a model file deleted after the manifest was written", 1)
def _(w: Work):
    z = w.zoo_copy("zoo-missing")
    doc = json.loads((z / "manifest.json").read_text())
    (z / doc["candidates"][1]["file"]).unlink()
    argv, out = collect(w, "--zoo", z, *QUICK)
    return argv, lambda: "its error row; the others measured: " + jobs_text(campaign_in(out))


@fault("collect", "a target whose workdir cannot be created", 1)
def _(w: Work):
    inv = w.file("wd-inv.yaml", f"targets:\n  - name: here\n    profile: x86-linux\n    transport: local\n"
                                f"    python: {PY}\n    workdir: /dev/null/edge\n")
    argv, out = collect(w, "-i", inv, "--zoo", w.zoo, *QUICK)
    return argv, lambda: "said once, not retried; jobs left for --resume: " + jobs_text(campaign_in(out))


@fault("collect", "a target whose adb is missing, beside a working one", 1)
def _(w: Work):
    inv = w.file("adb-inv.yaml", f"targets:\n  - name: here\n    profile: x86-linux\n    transport: local\n"
                                 f"    python: {PY}\n    workdir: {w.root / 'wd2'}\n"
                                 f"  - name: phone\n    profile: android-adb\n    transport: adb\n    serial: X1\n"
                                 f"    python: /data/local/tmp/python3\n    adb: {w.root / 'no-adb'}\n")
    argv, out = collect(w, "-i", inv, "--zoo", w.zoo, *QUICK)
    return argv, lambda: "one error line for it; the other target measured: " + jobs_text(campaign_in(out))


def _mount(path: Path, opts: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return os.geteuid() == 0 and run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path]).returncode == 0


@fault("collect", "a read-only `--out`", 2)
def _(w: Work):
    ro = w.root / "ro"
    if not _mount(ro, "size=64k,ro"):
        if os.geteuid() == 0:
            return None   # root writes through modes: without mount rights no folder is read-only to it
        ro.chmod(0o555)
    argv, out = collect(w, "--zoo", w.zoo, *QUICK, out=ro / "runs")
    return argv, lambda: (run(["umount", ro]), "nothing to keep (no job ran)")[1]


@fault("collect", "the disk fills during a run", 1)
def _(w: Work):
    full = w.root / "full"
    how = {}
    if _mount(full, "size=300k"):
        how["note"] = "a 300 KB tmpfs"
    else:   # not root: the file-size limit stands in for the full disk
        import resource
        how["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
    argv, out = collect(w, "--zoo", w.zoo, "--runs", "1000", "--threads", "1,2", "--background-load", "0",
                        "--reference", "none", "--no-report", out=full / "runs")

    def kept():
        d = campaign_in(out)
        txt = jobs_text(d)
        saved = w.root / "full-saved"
        shutil.copytree(out, saved)
        run(["umount", full])
        p = run([PY, "-m", "harness.collect", "--resume", d.name, "--out", saved, "--no-report", "-q"])
        return f"jobs stored before: {txt}; --resume elsewhere then: {jobs_text(saved / d.name)} (exit {p.returncode})"
    return argv, kept, how


@fault("collect", "the agent is killed (SIGKILL) mid-job", 0)
def _(w: Work):
    out = w.root / "killed"
    argv = [PY, "-c", f"""
import subprocess, sys, time, os, signal
p = subprocess.Popen([{PY!r}, '-m', 'harness.collect', '--zoo', {str(w.zoo)!r}, '--out', {str(out)!r},
                      '--runs', '40000', '--threads', '1', '--limit', '2', '--background-load', '0',
                      '--reference', 'none', '--no-report', '-q', '--backoff', '0.1'])
time.sleep(1.5)
kids = [int(k) for t in os.listdir(f'/proc/{{p.pid}}/task')
        for k in open(f'/proc/{{p.pid}}/task/{{t}}/children').read().split()]
for k in kids:   # the collector's own children: its agent
    os.kill(k, signal.SIGKILL)
sys.exit(p.wait() if kids else 3)
"""]
    return argv, lambda: "retried on a fresh agent: " + jobs_text(campaign_in(out))


@fault("collect", "Ctrl-C during a run", 1)
def _(w: Work):
    out = w.root / "ctrlc"
    return _interrupt([PY, "-m", "harness.collect", "--zoo", w.zoo, "--out", out, "--runs", "3000", "--threads", "1,2",
                       "--background-load", "0,1", "--reference", "none", "--no-report"], 4), \
        lambda: "what was measured; the rest left for --resume: " + jobs_text(campaign_in(out))


def _interrupt(argv, after_s: float) -> list:
    """A command that runs ``argv`` in its own process group and sends the group SIGINT, as a
    terminal's Ctrl-C does; its exit status is the command's."""
    return [PY, "-c", f"""
import subprocess, sys, time, os, signal
p = subprocess.Popen({[str(a) for a in argv]!r}, start_new_session=True)
time.sleep({after_s})
os.killpg(p.pid, signal.SIGINT)
sys.exit(p.wait())
"""]


# ---------------------------------------------------------------- SSH targets (a real sshd on loopback)
def _sshd(w: Work, name: str, known: bool):
    """A loopback sshd, an inventory for it, and the collect options that verify it (known_hosts
    holds its key, or nothing); None without openssh-server."""
    sys.path.insert(0, str(ROOT))
    from tests.sshd import SSHD, keygen, make_server
    if not Path(SSHD).exists():
        return None
    d = w.root / name
    d.mkdir()
    srv = make_server(d / "sshd", "127.0.0.2", keygen(d / "user_ed25519")).start()
    kh = d / "known_hosts"
    kh.write_text(srv.known_hosts_line() if known else "")
    inv = w.file(f"{name}.yaml", f"targets:\n  - {{name: board, profile: x86-linux, transport: ssh, host: {srv.addr}, "
                                 f"port: {srv.port}, identity_file: '{srv.user_key}', python: '{PY}', "
                                 f"workdir: '{d / 'work'}'}}\n")
    return srv, inv, kh, ["--known-hosts", kh, "--ssh-config", d / "none"]


@fault("collect", "an SSH target whose host key is not in known_hosts", 1)
def _(w: Work):
    got = _sshd(w, "unknown-key", known=False)
    if got is None:
        return None
    srv, inv, kh, ssh = got
    argv, out = collect(w, "-i", inv, "--zoo", w.zoo, *QUICK, *ssh)

    def kept():
        srv.kill_all()
        return "refused before connecting, not retried; known_hosts unchanged (" + \
            ("empty" if not kh.read_text() else "LOST? written") + "); " + jobs_text(campaign_in(out))
    return argv, kept


@fault("collect", "the SSH server dies mid-campaign", 1)
def _(w: Work):
    got = _sshd(w, "dies", known=True)
    if got is None:
        return None
    srv, inv, kh, ssh = got
    import threading
    argv, out = collect(w, "-i", inv, "--zoo", w.zoo, "--runs", "20000", "--threads", "1,2", "--background-load", "0",
                        "--reference", "none", "--no-report", "--retries", "1", "--backoff", "0.2", *ssh)
    threading.Timer(5, srv.kill_all).start()    # sshd and every connection it serves, mid-campaign

    def kept():
        srv.kill_all()
        return "the jobs finished before are kept; the rest left for --resume: " + jobs_text(campaign_in(out))
    return argv, kept


# ---------------------------------------------------------------- record
@fault("record", "`--duration nan`", 2)
def _(w: Work):
    return [PY, "-m", "harness.record", "--duration", "nan", "--period", "1", "--out", w.root / "nan.csv"], \
        lambda: "nothing recorded"


@fault("record", "Ctrl-C while recording (with a workload)", 130)
def _(w: Work):
    out = w.root / "ctrlc.csv"
    argv = _interrupt([PY, "-m", "harness.record", "--duration", "60", "--period", "0.2", "--load", "1", "--out", out], 2)

    def kept():
        m = json.loads(out.with_name(out.name + ".manifest.json").read_text())
        return f"{m['rows']} rows; manifest complete={m['complete']}, error={m['error']!r}"
    return argv, kept


# ---------------------------------------------------------------- predictors
def _train_data(w: Work, edit) -> Path:
    import pandas as pd
    df = pd.read_parquet(w.base / "measurements.parquet")
    edit(df)
    p = w.root / f"edited-{time.monotonic_ns()}.parquet"
    df.to_parquet(p)
    return p


@fault("predictors", "`train` on a latency column of text", 2)
def _(w: Work):
    def edit(df):
        df["latency_ms_median"] = df["latency_ms_median"].astype(str)
    p = _train_data(w, edit)
    return [PY, "-m", "predictors.train", "--data", p, "--zoo", w.zoo, "--out", w.root / "m-text"], \
        lambda: "no artifact written" if not (w.root / "m-text").exists() else "LOST? an artifact was written"


@fault("predictors", "`train` on a negative latency", 2)
def _(w: Work):
    p = _train_data(w, lambda df: df.__setitem__("latency_ms_median", -df["latency_ms_median"]))
    return [PY, "-m", "predictors.train", "--data", p, "--zoo", w.zoo, "--out", w.root / "m-neg"], \
        lambda: "no artifact written" if not (w.root / "m-neg").exists() else "LOST? an artifact was written"


@fault("predictors", "`evaluate --artifact` of a tampered model.skops (exec through FunctionTransformer)", 2)
def _(w: Work):
    import hashlib

    import numpy as np
    import skops.io as sio
    from sklearn.dummy import DummyRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer
    marker = w.root / "pwned"
    src = f"open({str(marker)!r}, 'w').write('x')"
    import builtins
    steps = [FunctionTransformer(np.full_like, kw_args={"fill_value": src, "dtype": object, "shape": ()}),
             FunctionTransformer(builtins.str), FunctionTransformer(builtins.exec)]
    d = w.root / "tampered"
    d.mkdir()
    sio.dump(Pipeline([(f"s{i}", s) for i, s in enumerate(steps)] + [("r", DummyRegressor().fit([[0.0]], [1.0]))]),
             d / "model.skops")
    (d / "card.json").write_text(json.dumps({"target": "latency_ms_median", "features": ["m_log_macs"], "artifact": {
        "file": "model.skops", "sha256": hashlib.sha256((d / "model.skops").read_bytes()).hexdigest()}}))
    argv = [PY, "-m", "predictors.evaluate", "--artifact", d, "--data", w.base / "measurements.parquet", "--zoo", w.zoo]
    return argv, lambda: "no code ran (marker file absent)" if not marker.exists() else "LOST: the artifact's code ran"


# ---------------------------------------------------------------- zoo
@fault("zoo", "`zoo import` into a folder that has a built zoo's manifest", 0)
def _(w: Work):
    z = w.zoo_copy("zoo-reimport")
    doc = json.loads((z / "manifest.json").read_text())
    doc["candidates"][0]["accuracy"] = 0.875

    (z / "manifest.json").write_text(json.dumps(doc))

    def kept():
        new = json.loads((z / "manifest.json").read_text())
        acc = {c["id"]: c.get("accuracy") for c in new["candidates"]}
        backups = sorted(p.name for p in z.glob("manifest.json.bak-*"))
        return f"accuracy kept ({acc.get(doc['candidates'][0]['id'])}); backup {backups[0] if backups else 'NONE'}"
    return [PY, "-m", "harness.zoo", "import", z], kept


# ---------------------------------------------------------------- traces and the simulator
@fault("simulator", "a trace whose time goes backwards", 2)
def _(w: Work):
    t = w.file("back.csv", "t_s,cpu_load_pct\n0,10\n1,20\n0.5,30\n")
    return [PY, "-m", "simulator.traces", "show", t], lambda: "the file is unchanged"


@fault("simulator", "a trace with text in a number column", 2)
def _(w: Work):
    t = w.file("text.csv", "t_s,cpu_load_pct\n0,10\n1,busy\n")
    return [PY, "-m", "simulator.replay", "--campaign", w.base, "--trace", t, "--out", w.root / "replay-bad"], \
        lambda: "no replay folder written" if not (w.root / "replay-bad").exists() else "a replay folder was begun"


@fault("offload", "a trace without a bandwidth_mbps column", 2)
def _(w: Work):
    t = w.file("load-only.csv", "t_s,cpu_load_pct\n0,10\n1,20\n")
    return [PY, "-m", "simulator.offload", "--campaign", w.base, "--zoo", w.zoo, "--trace", t, "--out",
            w.root / "offload-bad"], \
        lambda: "no offload folder written" if not (w.root / "offload-bad").exists() else "an offload folder was begun"


@fault("offload", "`--server` a device profile without a server section", 2)
def _(w: Work):
    return [PY, "-m", "simulator.offload", "--campaign", w.base, "--zoo", w.zoo, "--server", "x86-linux", "--out",
            w.root / "offload-noserver"], \
        lambda: "no offload folder written" if not (w.root / "offload-noserver").exists() else "an offload folder was begun"


@fault("zoo", "`zoo split` at a cut inside a residual block", 2)
def _(w: Work):
    out = w.root / "parts-bad"
    return [PY, "-m", "harness.zoo", "split", BUNDLED / "dc-w050-d0-r32-float32.tflite", "--after", "9", "--out", out], \
        lambda: "nothing written" if not out.exists() else f"{out} was created"


# besides error lines, what a user reads to learn what happened in a run that went on
SAID = ("cannot be used", "giving up", "not measured", "job(s) failed", "interrupted", " model: ", "kept the previous",
        "warning:")


def run_all(only: str | None) -> list[Outcome]:
    root = Path(tempfile.mkdtemp(prefix="edge-faults-"))
    w = Work(root)
    results = []
    for f in FAULTS:
        if only and only not in f.what:
            continue
        got = f.setup(w)
        if got is None:
            print(f"-- [{f.area}] {f.what}: cannot be made on this machine, not run", flush=True)
            continue
        argv, kept, how = got if len(got) == 3 else (*got, {})
        how = {k: v for k, v in how.items() if k != "note"}
        p = run(argv, cwd=root, **how)
        err, out = p.stderr.strip().splitlines(), p.stdout.strip().splitlines()
        said = [ln for ln in err if "error:" in ln] + [ln.strip() for ln in err + out if any(k in ln for k in SAID)]
        lines = list(dict.fromkeys(said))[:2] or (err or out)[-1:]
        seen = " / ".join(lines) if lines else "(nothing)"
        try:
            k = kept()
        except Exception as e:   # the check itself failed: say so in the table
            k = f"LOST? the check failed: {type(e).__name__}: {e}"
        o = Outcome(f, p.returncode, seen.replace(str(root) + "/", "").replace(str(root), "."), k, "Traceback" in p.stderr)
        results.append(o)
        print(f"{'ok ' if o.ok else 'BAD'} [{f.area}] {f.what}: exit {o.rc}; {o.seen[:160]}", flush=True)
        if "Traceback" in p.stderr:
            print(p.stderr[-1500:], file=sys.stderr)
    for m in root.glob("*"):
        run(["umount", m]) if m.is_mount() else None
    shutil.rmtree(root, ignore_errors=True)
    return results


def markdown(results: list[Outcome]) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")
    out = ["# Faults and bad input: what the user sees, what is kept", "",
           "Produced by `python bench/faults.py --out docs/faults.md` (every row run for real on the local target;",
           f"{time.strftime('%Y-%m-%d')}, Python {sys.version.split()[0]}). Exit 2: refused before anything ran; 1: a fault",
           "during a run (what was measured is kept); 130: Ctrl-C. Paths are relative to the script's scratch folder.", "",
           "| area | fault or bad input | exit | what the user sees | what is kept | as expected |",
           "|---|---|---|---|---|---|"]
    for o in results:
        out.append(f"| {o.fault.area} | {cell(o.fault.what)} | {o.rc} | `{cell(o.seen)[:300]}` | {cell(o.kept)} | "
                   f"{'yes' if o.ok else 'NO (expected exit ' + str(o.fault.expect) + ')'} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the table as Markdown here")
    ap.add_argument("--only", help="run only the faults whose description contains this")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    results = run_all(args.only)
    bad = [o for o in results if not o.ok]
    print(f"{len(results) - len(bad)} of {len(results)} faults as expected ({time.monotonic() - t0:.0f} s)")
    if args.out:
        args.out.write_text(markdown(results))
        print(f"-> {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
