"""Collection over real OpenSSH sshd instances on 127.0.0.2-4 (started here, as the current user)."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

import paramiko
import pyarrow.parquet as pq
import pytest

from harness.collect import main
from harness.transport.base import TransportError
from harness.transport.ssh import SSHParams, SSHTransport
from tests.conftest import make_zoo, ok_jobs
from tests.sshd import SSHD, keygen, make_server, processes_matching

pytestmark = pytest.mark.skipif(not Path(SSHD).exists(), reason="needs openssh-server (.ci/run installs it)")
ODD = "work dir 'q' \"dq\" $(touch PWNED) `id` ;x"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssh")
    user_key = keygen(root / "user_ed25519")
    srv = [make_server(root / f"s{i}", f"127.0.0.{i}", user_key).start() for i in (2, 3, 4)]
    kh = root / "known_hosts"
    kh.write_text("".join(s.known_hosts_line() for s in srv))
    yield srv, kh, root
    for s in srv:
        s.kill_all()


def inventory(path: Path, srv, workroot: Path, local: bool = False, names=None) -> Path:
    lines = ["targets:"]
    if local:
        lines += ["  - {name: local, profile: x86-linux, transport: local, python: '%s', workdir: '%s'}"
                  % (sys.executable, workroot / "local")]
    for i, s in enumerate(srv):
        name = (names or [f"s{j}" for j in range(len(srv))])[i]
        wd = str(workroot / name / ODD).replace("'", "''")
        lines += [f"  - name: {name}", "    profile: x86-linux", "    transport: ssh", f"    host: {s.addr}",
                  f"    port: {s.port}", f"    user: {os.environ.get('USER') or 'root'}",
                  f"    identity_file: {s.user_key}", f"    python: {sys.executable}", f"    workdir: '{wd}'"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _ssh_args(kh, root):
    return ["--known-hosts", str(kh), "--ssh-config", str(root / "no-config")]


def rows_of(out: Path) -> list[dict]:
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return pq.read_table(d / "measurements.parquet").to_pylist()


def test_three_sshd_targets_give_the_same_rows_as_local(servers, tmp_path, small_ids):
    srv, kh, root = servers
    # one model file name with spaces, quotes, $(...) and backticks: it must be measured normally
    small_zoo = make_zoo(tmp_path / "zoo", small_ids, rename={small_ids[0]: "odd 'name' \"dq\" $(touch PWNED) `id`.tflite"})
    inv = inventory(tmp_path / "inv.yaml", srv, tmp_path / "w", local=True)
    out = tmp_path / "runs"
    assert main(["-i", str(inv), "--zoo", str(small_zoo), "--out", str(out), "--runs", "5", "--threads", "1",
                 "--no-report", "-q", *_ssh_args(kh, root)]) == 0
    rows = rows_of(out)
    by_target: dict[str, dict] = {}
    for r in rows:
        by_target.setdefault(r["target"], {})[r["candidate_id"]] = r
    assert set(by_target) == {"local", "s0", "s1", "s2"}
    keys = ("candidate_sha256", "runtime", "runtime_version", "threads", "background_load", "n_runs", "status",
            "profile")
    for name in ("s0", "s1", "s2"):
        assert set(by_target[name]) == set(small_ids)
        for cid, r in by_target[name].items():
            loc = by_target["local"][cid]
            assert {k: r[k] for k in keys} == {k: loc[k] for k in keys}
            # four targets share 2 cores here, so only a loose bound on the timing itself
            assert 0.2 < r["latency_ms_median"] / loc["latency_ms_median"] < 5
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()
    # the odd workdir exists literally on the target, with models (and the references) cached by content
    # hash: those the jobs used, and auto's small one, sent before a job knows whether its candidate is tiny
    models = list((tmp_path / "w" / "s0" / ODD / "models").iterdir())
    from harness.collect import AUTO_SMALL_REFERENCE, _reference
    refs = {_reference(r, None)["sha256"] for r in [AUTO_SMALL_REFERENCE, *(r["reference_id"] for r in by_target["s0"].values())]}
    assert sorted(m.name for m in models) == sorted({r["candidate_sha256"] + ".tflite" for r in by_target["s0"].values()}
                                                    | {ref + ".tflite" for ref in refs})


def test_unknown_host_key_is_refused_unless_trusted(servers, tmp_path, small_zoo, small_ids, capsys):
    srv, _, root = servers
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inv = inventory(tmp_path / "inv.yaml", srv[:1], tmp_path / "w")
    out = tmp_path / "runs"
    args = ["-i", str(inv), "--zoo", str(small_zoo), "--out", str(out), "--runs", "3", "--threads", "1",
            "--no-report", "-q", "--candidates", small_ids[0], "--known-hosts", str(empty),
            "--ssh-config", str(root / "no-config")]
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert f"host key for [{srv[0].addr}]:{srv[0].port} is not in {empty}: refusing" in printed
    assert "--trust-new-hosts" in printed and empty.read_text() == ""
    assert main(args + ["--trust-new-hosts", "--out", str(tmp_path / "runs2")]) == 0
    assert f"[{srv[0].addr}]:{srv[0].port}" in empty.read_text()


def test_changed_host_key_is_refused(servers, tmp_path):
    srv, kh, _ = servers
    wrong = tmp_path / "known_hosts"
    other = (srv[1].host_key.parent / "host_ed25519.pub").read_text().split()
    wrong.write_text(f"[{srv[0].addr}]:{srv[0].port} {other[0]} {other[1]}\n")
    t = SSHTransport(SSHParams(srv[0].addr, srv[0].port, identity_file=str(srv[0].user_key), known_hosts=str(wrong),
                               ssh_config=str(tmp_path / "none")))
    with pytest.raises(TransportError, match="does not match"):
        t.connect()


def test_proxyjump_from_ssh_config(servers, tmp_path):
    srv, kh, _ = servers
    cfg = tmp_path / "config"
    cfg.write_text(f"Host jump\n  HostName {srv[0].addr}\n  Port {srv[0].port}\n  IdentityFile {srv[0].user_key}\n"
                   f"Host board\n  HostName {srv[1].addr}\n  Port {srv[1].port}\n  IdentityFile {srv[1].user_key}\n"
                   f"  ProxyJump jump\n")
    t = SSHTransport(SSHParams("board", known_hosts=str(kh), ssh_config=str(cfg)))
    t.connect()
    try:
        rc, out, _ = t.run(["sh", "-c", "echo $SSH_CONNECTION"])
        assert rc == 0 and out.split()[2:4] == [srv[1].addr, str(srv[1].port)]  # we reached the board...
        jump, board = t._clients
        assert jump.get_transport().getpeername()[:2] == (srv[0].addr, srv[0].port)  # ...through the jump host
        assert isinstance(board.get_transport().sock, paramiko.Channel)
        rc, out, _ = t.run(["echo", "a b", "$(id)", "'q'"])
        assert out == "a b $(id) 'q'\n"
    finally:
        t.close()


def test_proxyjump_through_two_hops(servers, tmp_path):
    """ProxyJump a,b: to a, through a to b, through b to the board (each hop its own sshd)."""
    srv, kh, _ = servers
    cfg = tmp_path / "config"
    cfg.write_text("".join(f"Host {n}\n  HostName {s.addr}\n  Port {s.port}\n  IdentityFile {s.user_key}\n"
                           for n, s in zip(("hop1", "hop2", "board"), srv)) + "  ProxyJump hop1,hop2\n")
    t = SSHTransport(SSHParams("board", known_hosts=str(kh), ssh_config=str(cfg)))
    t.connect()
    try:
        assert len(t._clients) == 3
        for c, s in zip(t._clients, srv):     # each client speaks to its own server...
            _, out, _ = c.exec_command("echo $SSH_CONNECTION")
            assert out.read().decode().split()[2:4] == [s.addr, str(s.port)]
        assert all(isinstance(c.get_transport().sock, paramiko.Channel) for c in t._clients[1:])   # ...through the one before
        rc, out, _ = t.run(["echo", "through two hops"])
        assert rc == 0 and out == "through two hops\n"
    finally:
        t.close()


@pytest.mark.slow
def test_sshd_killed_mid_campaign_then_resume(servers, tmp_path, small_zoo, small_ids):
    srv, kh, root = servers
    s = make_server(tmp_path / "srv", "127.0.0.5", srv[0].user_key).start()
    kh2 = tmp_path / "known_hosts"
    kh2.write_text(s.known_hosts_line())
    work = tmp_path / "w"
    inv = inventory(tmp_path / "inv.yaml", [s], work, names=["victim"])
    out = tmp_path / "runs"
    base = ["--out", str(out), "--no-report", "-q", "--known-hosts", str(kh2), "--ssh-config", str(tmp_path / "none"),
            "--retries", "1", "--backoff", "0.2"]
    rc = []
    th = threading.Thread(target=lambda: rc.append(main(["-i", str(inv), "--zoo", str(small_zoo), "--runs", "200",
                                                         "--threads", "1,2", "--background-load", "0,1", *base])))
    th.start()
    db_path = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        dbs = list(out.glob("*/campaign.sqlite"))
        if dbs:
            db_path = dbs[0]
            if ok_jobs(db_path) >= 2:
                break
        time.sleep(0.05)
    s.kill_all()
    th.join(180)
    assert rc == [1]  # incomplete: the target went away
    db = sqlite3.connect(db_path)
    done_before = dict(db.execute("SELECT id, result FROM jobs WHERE status='ok'").fetchall())
    total = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    assert 2 <= len(done_before) < total
    # nothing is left running on the target: the agent saw its stdin close, busy loops saw the agent go
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (processes_matching(str(work)) or processes_matching("os.getppid() == p")):
        time.sleep(0.2)
    assert processes_matching(str(work)) == [] and processes_matching("os.getppid() == p") == []
    s.start()
    try:
        assert main(["--resume", db_path.parent.name, *base]) == 0
    finally:
        s.kill_all()
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT count(*) FROM jobs WHERE status='ok'").fetchone()[0] == total
    # no lost and no duplicated row: earlier results untouched, exactly n_runs timed samples per job
    assert dict(db.execute(f"SELECT id, result FROM jobs WHERE id IN ({','.join(map(str, done_before))})")
                .fetchall()) == done_before
    assert db.execute("SELECT count(*) FROM samples WHERE phase='timed'").fetchone()[0] == total * 200
    assert len(rows_of(out)) == total
