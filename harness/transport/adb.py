"""ADBTransport: an Android phone without sshd, through the ``adb`` client (USB or wireless adb).

``adb shell`` joins its arguments with spaces and hands the string to the phone's ``sh -c``, so
every command is quoted here (``quote_argv``) exactly as for ssh. Shell protocol v2 (Android 7+)
carries stdin to the phone and the exit status back; the agent needs both, so a phone without it
is refused at connect. The exit status of ``run`` comes from a marker the command prints itself:
adb's own failures ("device offline", "closed") also exit 1 and must not pass for the command's.

Measure energy over wireless adb (``adb tcpip 5555``; serial ``HOST:PORT``) or the USB cable
charges the phone while it is measured.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

from harness.transport.base import AgentProcess, PermanentError, TransportError, quote_argv
from harness.transport.local import popen_agent

HOME = "/data/local/tmp"          # writable by the adb shell user on every Android
_RC = re.compile(rb"\n__edge_rc=(\d+)\n$")


class ADBTransport:
    def __init__(self, serial: str | None = None, adb: str = "adb", connect_timeout_s: float = 10.0):
        self.serial, self.adb, self.connect_timeout_s = serial, adb, connect_timeout_s
        self.description = f"adb {serial or '(the one device attached)'}"
        self.home = HOME

    def _base(self) -> list[str]:
        return [self.adb] + (["-s", self.serial] if self.serial else [])

    def _client(self, args: list[str], timeout: float, device: bool = True) -> subprocess.CompletedProcess:
        try:
            return subprocess.run((self._base() if device else [self.adb]) + args, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TransportError(f"{self.description}: adb {args[0]} gave no answer within {timeout:.0f} s") from None
        except OSError as e:
            raise TransportError(f"{self.description}: cannot run {self.adb} ({e.strerror})") from None

    def _why(self, p: subprocess.CompletedProcess) -> str:
        """adb's own error line ("error: device unauthorized.", "adb: device 'X' not found"), which
        comes before its advice lines; else the last line it printed."""
        lines = (p.stderr + b"\n" + p.stdout).decode(errors="replace").strip().splitlines()
        for ln in lines:
            if ln.startswith(("error:", "adb: ", "failed to")):
                return ln.strip()
        return lines[-1].strip() if lines else f"adb exited {p.returncode}"

    def connect(self) -> None:
        if shutil.which(self.adb) is None:
            raise PermanentError(f"{self.description}: {self.adb} not found (install Android platform-tools, "
                                 f"or name it with adb: in the inventory)")
        if self.serial and ":" in self.serial:     # wireless adb: HOST:PORT
            p = self._client(["connect", self.serial], self.connect_timeout_s, device=False)
            out = p.stdout.decode(errors="replace")
            if p.returncode != 0 or "connected to" not in out:
                raise TransportError(f"{self.description}: adb connect failed ({self._why(p)})")
        p = self._client(["get-state"], self.connect_timeout_s)
        state = p.stdout.decode(errors="replace").strip()
        if p.returncode != 0 or state != "device":
            why = self._why(p)
            if "unauthorized" in why or state == "unauthorized":
                why += " (accept this computer's key on the phone: refusing until then)"
            raise TransportError(f"{self.description}: {why if p.returncode else 'device is ' + state}")
        p = self._client(["features"], self.connect_timeout_s)
        if p.returncode != 0 or b"shell_v2" not in p.stdout:
            raise PermanentError(f"{self.description}: no adb shell protocol v2 on this device (Android 7+ has "
                                 f"it): the agent's input and exit status cannot cross adb shell")

    def expand(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            return self.home + path[1:]
        return path

    def run(self, argv: Sequence[str], timeout: float = 60.0) -> tuple[int, str, str]:
        p = self._client(["shell", "-T", quote_argv(argv) + "; printf '\\n__edge_rc=%d\\n' $?"], timeout)
        m = _RC.search(p.stdout)
        if m is None:   # the command did not get to print its status: adb itself failed
            raise TransportError(f"{self.description}: {self._why(p)}")
        return int(m.group(1)), p.stdout[: m.start()].decode(errors="replace"), p.stderr.decode(errors="replace")

    def start(self, argv: Sequence[str]) -> AgentProcess:
        return popen_agent(self._base() + ["shell", "-T", quote_argv(argv)])

    def put(self, local_path: str, remote_path: str) -> None:
        remote_path = self.expand(remote_path)
        tmp = remote_path + ".part"
        p = self._client(["push", local_path, tmp], 600)
        if p.returncode != 0:
            raise TransportError(f"{self.description}: upload to {remote_path} failed ({self._why(p)})")
        rc, _, err = self.run(["mv", "-f", tmp, remote_path])
        if rc != 0:
            raise TransportError(f"{self.description}: upload to {remote_path} failed ({err.strip() or rc})")

    def exists(self, remote_path: str) -> bool:
        return self.run(["test", "-e", self.expand(remote_path)])[0] == 0

    def mkdir(self, remote_path: str) -> None:
        rc, _, err = self.run(["mkdir", "-p", self.expand(remote_path)])
        if rc != 0:
            raise TransportError(f"{self.description}: mkdir {remote_path} failed ({err.strip() or rc})")

    def close(self) -> None:
        pass   # the adb server keeps the device; nothing is held here
