"""What the command lines share: argparse types that refuse a value with one line naming the
option, and the wrapper that turns a HarnessError into that line and exit status 2."""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

from harness.errors import HarnessError


def number(what: str, low: float, kind=float, strict: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number >= ``low`` (> ``low`` when ``strict``): nan and inf
    compare false or never end, so they are refused too."""
    def f(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: expected a number, got {text!r}") from None
        if not (math.isfinite(v) and (v > low if strict else v >= low)):
            raise argparse.ArgumentTypeError(f"{what}: expected a number {'>' if strict else '>='} {low:g}, got {text!r}")
        return v
    return f


def ssh_arguments(ap: argparse.ArgumentParser) -> None:
    """--known-hosts, --ssh-config, --trust-new-hosts: how every command that reaches targets
    verifies them."""
    ap.add_argument("--known-hosts", default="~/.ssh/known_hosts",
                    help="OpenSSH known_hosts file the targets' host keys are checked against (default ~/.ssh/known_hosts)")
    ap.add_argument("--ssh-config", default="~/.ssh/config",
                    help="OpenSSH client config read for HostName, User, Port, IdentityFile, ProxyJump (default ~/.ssh/config)")
    ap.add_argument("--trust-new-hosts", action="store_true",
                    help="trust-on-first-use: accept and record unknown SSH host keys")


def run(body: Callable[[], int]) -> int:
    """A command's body; a HarnessError becomes one line on stderr and exit status 2."""
    try:
        return body()
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:   # `| head`: the reader had enough; no traceback, and none at exit either
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
