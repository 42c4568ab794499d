"""The Transport protocol and the line-oriented process handle both transports share."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from typing import Protocol


class TransportError(Exception):
    """The target could not be reached, or the connection or the agent went away."""


class PermanentError(TransportError):
    """Retrying will not fix it (a missing binary, an unwritable workdir, a refused host key):
    reported once for the target, not retried."""


class RemoteTimeout(TransportError):
    """No answer within the job's timeout."""


def quote_argv(argv: Sequence[str]) -> str:
    """The one place a command line for a remote shell is made: every value quoted."""
    return " ".join(shlex.quote(str(a)) for a in argv)


class AgentProcess:
    """A started process spoken to in lines. ``recv(timeout)`` returns bytes ('' = EOF) or None."""

    def __init__(self, send: Callable[[bytes], None], recv: Callable[[float], bytes | None],
                 close: Callable[[], None], kill: Callable[[], None]):
        self._send, self._recv, self._close, self._kill = send, recv, close, kill
        self._buf = b""

    def write_line(self, line: str) -> None:
        try:
            self._send(line.encode() + b"\n")
        except (OSError, EOFError) as e:
            raise TransportError(f"agent input closed ({e})") from None

    def read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RemoteTimeout(f"no answer from the agent within {timeout:.0f} s")
            try:
                chunk = self._recv(left)
            except (OSError, EOFError) as e:
                raise TransportError(f"connection lost ({e})") from None
            if chunk is None:
                continue
            if chunk == b"":
                raise TransportError("agent exited (its output closed)")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def close(self) -> None:
        self._close()

    def kill(self) -> None:
        self._kill()


class Transport(Protocol):
    """How the collector reaches one target."""

    description: str

    def connect(self) -> None: ...
    def expand(self, path: str) -> str: ...  # ``~/x`` -> absolute on the target
    def run(self, argv: Sequence[str], timeout: float = 60.0) -> tuple[int, str, str]: ...
    def start(self, argv: Sequence[str]) -> AgentProcess: ...
    def put(self, local_path: str, remote_path: str) -> None: ...
    def exists(self, remote_path: str) -> bool: ...
    def mkdir(self, remote_path: str) -> None: ...
    def close(self) -> None: ...
