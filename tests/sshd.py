"""A real OpenSSH sshd on a loopback address, run as the current user, for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def descendants(pid: int) -> list[int]:
    """PIDs below ``pid`` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_sshd(pid: int) -> bool:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("sshd")
    except OSError:
        return False


def processes_matching(text: str) -> list[int]:
    me = os.getpid()
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) != me and text in cmdline(int(d))]


@dataclass
class SSHServer:
    addr: str
    port: int
    dir: Path
    host_key: Path
    user_key: Path
    proc: subprocess.Popen | None = None

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    def known_hosts_line(self) -> str:
        pub = (self.host_key.parent / (self.host_key.name + ".pub")).read_text().split()
        return f"[{self.addr}]:{self.port} {pub[0]} {pub[1]}\n"

    def start(self) -> SSHServer:
        Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "sshd.log", "ab"), start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.addr, self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd on {self.addr}:{self.port} did not start: {(self.dir / 'sshd.log').read_text()}")

    def kill_all(self) -> None:
        """Kill sshd and every live connection it serves (sshd processes only: what the agent does then
        is the agent's business)."""
        if self.proc is None:
            return
        pids = [p for p in descendants(self.proc.pid) if _is_sshd(p)] + [self.proc.pid]
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc = None


def make_server(tmp: Path, addr: str, user_key: Path) -> SSHServer:
    tmp.mkdir(parents=True, exist_ok=True)
    host_key = keygen(tmp / "host_ed25519")
    auth = tmp / "authorized_keys"
    auth.write_text((user_key.parent / (user_key.name + ".pub")).read_text())
    auth.chmod(0o600)
    port = free_port(addr)
    (tmp / "sshd_config").write_text(
        f"ListenAddress {addr}\nPort {port}\nHostKey {host_key}\nPidFile {tmp}/sshd.pid\n"
        f"AuthorizedKeysFile {auth}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "AllowTcpForwarding yes\nLogLevel ERROR\nMaxStartups 50\nClientAliveInterval 0\n"
        "Subsystem sftp internal-sftp\n")
    return SSHServer(addr, port, tmp, host_key, user_key)
