"""SSHTransport: paramiko, one persistent connection per target, SFTP for files, keepalive.

Host keys are verified against known_hosts; an unknown key is refused unless the caller asked
for trust-on-first-use, in which case it is recorded in that known_hosts file.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

from harness.transport.base import AgentProcess, PermanentError, TransportError, quote_argv

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


@dataclass(frozen=True)
class SSHParams:
    host: str
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str = DEFAULT_KNOWN_HOSTS
    ssh_config: str = "~/.ssh/config"
    trust_new_hosts: bool = False
    connect_timeout_s: float = 10.0
    keepalive_s: int = 15


def resolve(params: SSHParams, host: str | None = None) -> dict:
    """Apply ~/.ssh/config (HostName, User, Port, IdentityFile, ProxyJump) under explicit values."""
    cfg_path = Path(os.path.expanduser(params.ssh_config))
    alias = host or params.host
    found: dict = {}
    if cfg_path.is_file():
        cfg = paramiko.SSHConfig.from_path(str(cfg_path))
        found = cfg.lookup(alias)
    explicit = host is None  # explicit inventory values only apply to the target itself
    ident = (params.identity_file if explicit and params.identity_file else None) or (found.get("identityfile") or [None])[0]
    return {
        "hostname": found.get("hostname", alias),
        "port": int((params.port if explicit and params.port else None) or found.get("port", 22)),
        "user": (params.user if explicit and params.user else None) or found.get("user") or _local_user(),
        "identity_file": os.path.expanduser(ident) if ident else None,
        "proxyjump": found.get("proxyjump"),
    }


def _local_user() -> str:
    import getpass
    return getpass.getuser()


class SSHTransport:
    def __init__(self, params: SSHParams):
        self.params = params
        self.description = f"ssh {params.host}"
        self._clients: list[paramiko.SSHClient] = []
        self._sftp: paramiko.SFTPClient | None = None
        self.home: str | None = None

    # -------------------------------------------------------------- connection
    def _client_for(self, r: dict, sock=None) -> paramiko.SSHClient:
        kh = os.path.expanduser(self.params.known_hosts)
        c = paramiko.SSHClient()
        if os.path.exists(kh):
            c.load_host_keys(kh)
        c.set_missing_host_key_policy(paramiko.AutoAddPolicy() if self.params.trust_new_hosts
                                      else paramiko.RejectPolicy())
        name = r["hostname"] if r["port"] == 22 else f"[{r['hostname']}]:{r['port']}"
        try:
            c.connect(r["hostname"], r["port"], username=r["user"], key_filename=r["identity_file"],
                      look_for_keys=r["identity_file"] is None, allow_agent=True, sock=sock,
                      timeout=self.params.connect_timeout_s, banner_timeout=self.params.connect_timeout_s,
                      auth_timeout=self.params.connect_timeout_s)
        except paramiko.BadHostKeyException:
            raise PermanentError(f"host key for {name} does not match {kh}: refusing to connect "
                                 f"(possible man-in-the-middle; fix known_hosts if the key really changed)") from None
        except paramiko.SSHException as e:
            if "not found in known_hosts" in str(e):
                raise PermanentError(f"host key for {name} is not in {kh}: refusing an unknown host; verify it "
                                     f"and add it (ssh-keyscan), or pass --trust-new-hosts") from None
            raise TransportError(f"ssh {name}: {e}") from None
        except (TimeoutError, OSError, EOFError) as e:
            raise TransportError(f"ssh {name}: cannot connect ({e})") from None
        if self.params.trust_new_hosts:
            Path(kh).parent.mkdir(parents=True, exist_ok=True)
            c.save_host_keys(kh)
        c.get_transport().set_keepalive(self.params.keepalive_s)
        return c

    def connect(self) -> None:
        self.close()
        r = resolve(self.params)
        sock = None
        hops = []    # ProxyJump A,B: to A, through A to B, through B to the target (as OpenSSH)
        if r["proxyjump"] and r["proxyjump"].lower() != "none":
            for jump in r["proxyjump"].split(","):
                user, _, hp = jump.strip().rpartition("@")
                h, _, p = hp.partition(":")
                jr = resolve(self.params, h)
                if user:
                    jr["user"] = user
                if p:
                    jr["port"] = int(p)
                hops.append((jump.strip(), jr))
        for i, (jump, jr) in enumerate(hops):
            jc = self._client_for(jr, sock)
            self._clients.append(jc)
            nxt = hops[i + 1][1] if i + 1 < len(hops) else r     # each hop forwards to the next, not to the target
            try:
                sock = jc.get_transport().open_channel("direct-tcpip", (nxt["hostname"], nxt["port"]), ("127.0.0.1", 0))
            except paramiko.SSHException as e:
                raise TransportError(f"ssh jump {jump}: cannot forward to {nxt['hostname']}:{nxt['port']} ({e})") from None
        self._clients.append(self._client_for(r, sock))
        try:
            self._sftp = self._clients[-1].open_sftp()
            self.home = self._sftp.normalize(".")
        except (paramiko.SSHException, OSError) as e:
            raise TransportError(f"ssh {self.params.host}: sftp unavailable ({e})") from None

    @property
    def _client(self) -> paramiko.SSHClient:
        if not self._clients or not self._clients[-1].get_transport() or not self._clients[-1].get_transport().is_active():
            raise TransportError(f"ssh {self.params.host}: not connected")
        return self._clients[-1]

    def expand(self, path: str) -> str:
        """``~/x`` -> absolute on the target (SFTP does not expand ``~``)."""
        if path == "~" or path.startswith("~/"):
            return (self.home or ".") + path[1:]
        return path

    # -------------------------------------------------------------- operations
    def run(self, argv: Sequence[str], timeout: float = 60.0) -> tuple[int, str, str]:
        try:
            ch = self._client.get_transport().open_session()
            ch.settimeout(timeout)
            ch.exec_command(quote_argv(argv))
            out, err = ch.makefile("rb").read(), ch.makefile_stderr("rb").read()
            return ch.recv_exit_status(), out.decode(errors="replace"), err.decode(errors="replace")
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise TransportError(f"ssh {self.params.host}: {e or type(e).__name__}") from None

    def start(self, argv: Sequence[str]) -> AgentProcess:
        try:
            ch = self._client.get_transport().open_session()
            ch.exec_command(quote_argv(argv))
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise TransportError(f"ssh {self.params.host}: cannot start agent ({e})") from None

        def send(b: bytes) -> None:
            if ch.closed or not ch.get_transport().is_active():
                raise EOFError("channel closed")
            ch.sendall(b)

        def recv(timeout: float) -> bytes | None:
            ch.settimeout(min(timeout, 1.0))
            try:
                data = ch.recv(65536)
            except TimeoutError:
                if not ch.get_transport().is_active():
                    raise EOFError("connection dropped") from None
                return None
            return data

        def close() -> None:
            try:
                ch.shutdown_write()  # the agent sees EOF on stdin and exits
                t0 = time.monotonic()
                while not ch.exit_status_ready() and time.monotonic() - t0 < 10:
                    time.sleep(0.05)
            except (paramiko.SSHException, OSError, EOFError):
                pass
            ch.close()

        def kill() -> None:
            ch.close()

        return AgentProcess(send, recv, close, kill)

    def put(self, local_path: str, remote_path: str) -> None:
        remote_path = self.expand(remote_path)
        tmp = remote_path + ".part"
        try:
            self._sftp.put(local_path, tmp)
            self._sftp.posix_rename(tmp, remote_path)
        except (OSError, paramiko.SSHException, EOFError, AttributeError) as e:
            raise TransportError(f"ssh {self.params.host}: upload to {remote_path} failed ({e})") from None

    def exists(self, remote_path: str) -> bool:
        try:
            self._sftp.stat(self.expand(remote_path))
            return True
        except FileNotFoundError:
            return False
        except (OSError, paramiko.SSHException, EOFError, AttributeError) as e:
            raise TransportError(f"ssh {self.params.host}: stat failed ({e})") from None

    def mkdir(self, remote_path: str) -> None:
        path = self.expand(remote_path)
        parts = path.split("/")
        for i in range(2 if path.startswith("/") else 1, len(parts) + 1):
            p = "/".join(parts[:i])
            if not p:
                continue
            try:
                if stat.S_ISDIR(self._sftp.stat(p).st_mode):
                    continue
                raise TransportError(f"ssh {self.params.host}: {p} exists and is not a directory")
            except FileNotFoundError:
                try:
                    self._sftp.mkdir(p)
                except (OSError, paramiko.SSHException) as e:
                    raise TransportError(f"ssh {self.params.host}: mkdir {p} failed ({e})") from None
            except (OSError, paramiko.SSHException, EOFError, AttributeError) as e:
                raise TransportError(f"ssh {self.params.host}: mkdir {p} failed ({e})") from None

    def close(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:
                pass
            self._sftp = None
        for c in reversed(self._clients):
            c.close()
        self._clients = []
