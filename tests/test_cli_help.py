"""Every option of every command line has help, and an option with a default says it."""
from __future__ import annotations

import argparse
import importlib

import pytest

COMMANDS = ["harness.collect", "harness.record", "harness.zoo.__main__", "harness.telemetry.__main__",
            "predictors.train", "predictors.evaluate", "predictors.transfer", "simulator.replay", "simulator.traces",
            "simulator.live", "simulator.sweep", "simulator.select", "simulator.offload", "reports.build"]


class _Captured(Exception):
    pass


def parser_of(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser a command's main() builds (some build it inside main): caught at parse_args."""
    got = []

    def catch(self, args=None, namespace=None):
        got.append(self)
        raise _Captured
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    with pytest.raises(_Captured):
        importlib.import_module(module).main(["--help"])
    return got[0]


def problems(ap: argparse.ArgumentParser, where: str) -> list[str]:
    out = []
    for a in ap._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                out += problems(sub, f"{where} {name}")
            continue
        if isinstance(a, argparse._HelpAction) or a.help == argparse.SUPPRESS:
            continue
        name = "/".join(a.option_strings) or a.dest
        if not a.help:
            out.append(f"{where} {name}: no help")
        elif a.option_strings and a.default not in (None, False, argparse.SUPPRESS, [], "") and \
                not isinstance(a, (argparse._StoreTrueAction, argparse._StoreConstAction)) and \
                "default" not in a.help.lower() and "%(default)" not in a.help:
            out.append(f"{where} {name}: default {a.default!r} not said")
    return out


@pytest.mark.parametrize("module", COMMANDS)
def test_every_option_has_help_and_says_its_default(module, monkeypatch):
    assert problems(parser_of(module, monkeypatch), module) == []


def test_the_agent_too():
    from harness import agent
    assert problems(agent.parser(), "agent") == []


def test_the_check_catches_an_option_without_help():
    ap = argparse.ArgumentParser()
    ap.add_argument("--x", default=3, help="a number")
    ap.add_argument("--y")
    assert problems(ap, "p") == ["p --x: default 3 not said", "p --y: no help"]
