"""A loopback sshd for benchmarks (the same helper the tests use)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sshd import keygen, make_server  # noqa: E402


def loopback_target(name: str = "loop"):
    """Start sshd on 127.0.0.2; return (server, inventory path, known_hosts path, tmpdir)."""
    tmp = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    srv = make_server(tmp / "sshd", "127.0.0.2", keygen(tmp / "user_ed25519")).start()
    kh = tmp / "known_hosts"
    kh.write_text(srv.known_hosts_line())
    inv = tmp / "inv.yaml"
    inv.write_text(f"targets:\n  - {{name: {name}, profile: x86-linux, transport: ssh, host: {srv.addr}, "
                   f"port: {srv.port}, identity_file: '{srv.user_key}', python: '{sys.executable}', "
                   f"workdir: '{tmp / 'work'}'}}\n")
    return srv, inv, kh, tmp
