"""LocalTransport: the local machine as a target, through subprocesses (no shell)."""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from harness.transport.base import AgentProcess, PermanentError, TransportError


class LocalTransport:
    description = "local"

    def connect(self) -> None:
        pass

    def expand(self, path: str) -> str:
        return os.path.expanduser(path)

    def run(self, argv: Sequence[str], timeout: float = 60.0) -> tuple[int, str, str]:
        try:
            p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise TransportError(str(e)) from None
        return p.returncode, p.stdout, p.stderr

    def start(self, argv: Sequence[str]) -> AgentProcess:
        return popen_agent(argv)

    def put(self, local_path: str, remote_path: str) -> None:
        tmp = remote_path + ".part"
        try:
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, remote_path)
        except OSError as e:   # a full or read-only workdir: the next attempt meets the same disk
            raise PermanentError(f"local: cannot copy {local_path} to {remote_path}: {e.strerror}") from None

    def exists(self, remote_path: str) -> bool:
        return os.path.exists(remote_path)

    def mkdir(self, remote_path: str) -> None:
        try:
            Path(remote_path).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PermanentError(f"local: cannot create the workdir {remote_path}: {e.strerror}") from None

    def close(self) -> None:
        pass


def popen_agent(argv: Sequence[str]) -> AgentProcess:
    """A local process spoken to in lines over its stdin and stdout (the agent itself, or a client
    such as ``adb shell`` that carries the agent's stdin and stdout to a device)."""
    try:
        # its own session: a Ctrl-C at the terminal is the harness's to handle (it closes or kills
        # the agent), not a KeyboardInterrupt traceback from the agent in the middle of a reply
        p = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                             start_new_session=True)
    except OSError as e:
        raise TransportError(f"cannot start {argv[0]}: {e}") from None
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)

    def send(b: bytes) -> None:
        p.stdin.write(b)
        p.stdin.flush()

    def recv(timeout: float) -> bytes | None:
        if not sel.select(timeout):
            return None
        return os.read(p.stdout.fileno(), 65536)

    def close() -> None:
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()
        sel.close()

    def kill() -> None:
        p.kill()
        close()

    return AgentProcess(send, recv, close, kill)
