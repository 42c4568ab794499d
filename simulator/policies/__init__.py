"""Adaptation policies behind one small Protocol, and their registry (a plain dict).

A policy is a class: parameters in ``__init__`` (set from the CLI with ``--policy-arg
NAME.KEY=VALUE``), ``reset(env, rng)`` before a trace, ``decide(obs) -> choice index`` at every
decision. It sees only :class:`Env` (the choices, belief, deadline, QoE weights) and
:class:`Observation` (the trace up to now, the battery, and its own past requests), never the
world. ``observes = False`` tells the replay loop that the policy does not read its own requests'
outcomes, so their serving can be computed in one vectorized pass after the decisions.

Hindsight references (``hindsight = True``: oracle, static-oracle) are the one exception: they
``plan`` on the realized world, which is what makes them upper bounds.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from harness.errors import BadInput
from simulator.belief import Belief
from simulator.metrics import QoE
from simulator.traces import Trace


@dataclass(frozen=True)
class Env:
    labels: list[str]
    candidate_ids: list[str]
    threads: np.ndarray
    accuracy: np.ndarray
    belief: Belief
    deadline_ms: float
    qoe: QoE                   # the weights the policy plans with (a simulated user's are hidden: defaults)
    decide_every_s: float
    rate_hz: float
    n_periods: int
    has_battery: bool
    knobs: list[dict] = field(default_factory=list)    # per choice: the zoo's knobs and threads
    capacity_mj: float | None = None                   # the battery's capacity (the device knows it)
    offload: object | None = None    # simulator.offload.OffloadInfo: the choices are (model, place) actions

    @property
    def n_choices(self) -> int:
        return len(self.labels)


@dataclass
class Observation:
    """What a policy sees at decision ``k`` (time ``t_s``, seconds since the trace's start)."""
    k: int
    t_s: float
    busy: float                 # busy CPUs by the trace's latest row (other apps' load)
    current: int                # the choice in effect (-1 before the first decision)
    battery_pct: float          # nan without a battery
    trace: Trace
    row: int                    # the trace's latest row at t_s
    # its own requests completed since the previous decision
    done_choice: np.ndarray
    done_latency_ms: np.ndarray
    done_missed: np.ndarray
    done_qoe: np.ndarray
    done_busy: np.ndarray

    def history(self, column: str) -> np.ndarray:
        """A trace column up to now (a view; never the future)."""
        return self.trace.columns[column][: self.row + 1]


class Policy(Protocol):
    observes: bool

    def reset(self, env: Env, rng: np.random.Generator) -> None: ...

    def decide(self, obs: Observation) -> int: ...


def _registry() -> dict[str, type]:
    from simulator.oracle import Oracle, StaticOracle
    from simulator.policies.adaspring import AdaSpring
    from simulator.policies.alert import Alert
    from simulator.policies.bandit import LinUCB
    from simulator.policies.battery import BatteryAware
    from simulator.policies.hysteresis import GreedyHysteresis
    from simulator.policies.mpc import MPC
    from simulator.policies.offload import OffloadMPC, OffloadThreshold
    from simulator.policies.reference import Greedy, StaticBelief
    return {"oracle": Oracle, "static-oracle": StaticOracle, "static-belief": StaticBelief, "greedy": Greedy,
            "greedy-hysteresis": GreedyHysteresis, "alert": Alert, "mpc": MPC, "adaspring": AdaSpring,
            "linucb": LinUCB, "battery-aware": BatteryAware, "offload-threshold": OffloadThreshold,
            "offload-mpc": OffloadMPC}


REGISTRY: dict[str, type] = _registry()


def _value(s: str):
    import yaml
    try:
        return yaml.safe_load(s)
    except yaml.YAMLError:
        return s


def parse_policy_args(items: list[str] | None, names: list[str]) -> dict[str, dict]:
    """``NAME.KEY=VALUE`` items -> {name: {key: value}}, checked against each class's parameters."""
    out: dict[str, dict] = {}
    for it in items or []:
        head, eq, val = it.partition("=")
        name, dot, key = head.partition(".")
        if not eq or not dot or not key:
            raise BadInput(f"--policy-arg {it!r}: expected NAME.KEY=VALUE")
        if name not in REGISTRY:
            raise BadInput(f"--policy-arg {it!r}: no policy {name!r} (known: {', '.join(REGISTRY)})")
        params = inspect.signature(REGISTRY[name].__init__).parameters
        if key not in params or key == "self":
            known = [p for p in params if p != "self"]
            raise BadInput(f"--policy-arg {it!r}: {name} has no parameter {key!r} (it has: {', '.join(known) or 'none'})")
        out.setdefault(name, {})[key] = _value(val)
    for name in out:
        if name not in names:
            raise BadInput(f"--policy-arg: {name} is not among the policies run ({', '.join(names)})")
    return out


def load_plugins(paths) -> None:
    """Run the user's own Python files that add policies to REGISTRY (--plugin)."""
    import runpy
    from pathlib import Path
    for f in paths or []:
        if not Path(f).is_file():
            raise BadInput(f"--plugin {f}: no such file")
        runpy.run_path(str(f))


def resolve(spec: str, items: list[str] | None) -> tuple[list[str], dict[str, dict]]:
    """``--policy`` (comma-separated names, or all) and ``--policy-arg`` items -> (names, their
    parameters), every name known and every policy constructible before anything runs."""
    names = list(REGISTRY) if spec == "all" else [p.strip() for p in spec.split(",") if p.strip()]
    unknown = [n for n in names if n not in REGISTRY]
    if unknown or not names:
        raise BadInput(f"--policy: unknown {', '.join(unknown) or '(none given)'} (known: {', '.join(REGISTRY)}, all)")
    args = parse_policy_args(items, names)
    for n in names:
        make(n, args.get(n))
    return names, args


def make(name: str, params: dict | None = None):
    try:
        return REGISTRY[name](**(params or {}))
    except (TypeError, ValueError) as e:
        raise BadInput(f"--policy-arg: {name}: {e}") from None
