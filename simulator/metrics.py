"""QoE per request and the per-policy summary.

QoE of one request (weights in a small YAML, ``--qoe FILE``; no constant term):

    qoe = accuracy x acc(candidate) x (on_time + late_credit x late) - miss x late
          - energy_per_mj x energy_mj - switch x switched

By default a request answered after its deadline earns no accuracy (``late_credit`` 0: a hard
deadline) and costs ``miss`` (1.0: about what a correct answer earns). A request not served (the
battery is empty) scores 0.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from harness.errors import BadInput


@dataclass(frozen=True)
class QoE:
    accuracy: float = 1.0        # earned per answer in time, times the candidate's accuracy
    miss: float = 1.0            # lost per answer after the deadline
    energy_per_mj: float = 0.01  # lost per mJ the request used (its inference, and a switch's load)
    switch: float = 0.01         # lost per model switch (on top of its load time and energy)
    late_credit: float = 0.0     # share of the accuracy a late answer still earns (0: a hard deadline)

    def per_request(self, acc: np.ndarray, missed: np.ndarray, energy_mj: np.ndarray, switched: np.ndarray) -> np.ndarray:
        credit = np.where(missed, self.late_credit, 1.0) if self.late_credit else ~missed
        return self.accuracy * acc * credit - self.miss * missed - self.energy_per_mj * energy_mj - self.switch * switched

    def as_dict(self) -> dict:
        return asdict(self)


USERS = Path(__file__).resolve().parent / "users"


def users() -> list[str]:
    """The simulated users shipped with the project (simulator/users/*.yaml)."""
    return sorted(p.stem for p in USERS.glob("*.yaml"))


def load_user(name_or_path: str) -> QoE:
    """A simulated user's QoE weights: a shipped profile's name, or a YAML file of weights."""
    p = USERS / f"{name_or_path}.yaml"
    if p.is_file():
        return load_qoe(p)
    if Path(name_or_path).is_file():
        return load_qoe(name_or_path)
    raise BadInput(f"--user: {name_or_path!r} is neither a shipped profile ({', '.join(users())}) nor a file")


def load_qoe(path: str | Path | None) -> QoE:
    if path is None:
        return QoE()
    from harness.inventory import load_yaml
    p = Path(path)
    doc = load_yaml(p)
    if not isinstance(doc, dict):
        raise BadInput(f"{p}: expected a mapping of QoE weights ({', '.join(f.name for f in fields(QoE))})")
    known = {f.name for f in fields(QoE)}
    for k, v in doc.items():
        if k not in known:
            raise BadInput(f"{p}: {k}: not a QoE weight (known: {', '.join(sorted(known))})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
            raise BadInput(f"{p}: {k}: expected a number >= 0, got {v!r}")
    return QoE(**{k: float(v) for k, v in doc.items()})


SUMMARY_COLUMNS = (
    "policy", "trace", "qoe_mean", "qoe_vs_oracle", "gap_closed", "accuracy_mean", "miss_rate", "latency_ms_p50",
    "latency_ms_p95", "energy_j", "battery_end_pct", "battery_empty_s", "switches", "requests", "outside_grid_frac",
    "held_frac", "deadline_ms", "rate_hz", "seed", "user", "world", "belief", "oracle_exact",
    "decision_us_median", "decision_us_p99", "decision_us_max", "wall_plan_s", "wall_s")


def summarize(steps: dict, real, deadline_ms: float) -> dict:
    """The summary columns a run of one policy on one trace gives (ratios to the oracle are added
    once every policy has run)."""
    served = steps["served"]
    lat = steps["latency_ms"][served]
    bat = steps["battery_pct"]
    empty = np.nonzero(~served)[0]
    n = len(served)
    return {
        "qoe_mean": float(steps["qoe"].mean()) if n else float("nan"),
        "accuracy_mean": float(steps["accuracy"][served].mean()) if served.any() else float("nan"),
        "miss_rate": float(steps["missed"].mean()) if n else float("nan"),
        "latency_ms_p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "latency_ms_p95": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
        "energy_j": float(steps["energy_mj"].sum() / 1e3),
        "battery_end_pct": float(bat[-1]) if n and not np.isnan(bat).all() else float("nan"),
        "battery_empty_s": float(real.arrivals_s[empty[0]] - real.t0) if len(empty) else float("nan"),
        "switches": int(steps["switches"]),
        "requests": n,
        "outside_grid_frac": float(real.outside.mean()) if n else 0.0,
        "held_frac": float(real.held.mean()) if n else 0.0,
        "deadline_ms": deadline_ms,
    }


GAP_MIN = 1e-3


def add_ratios(rows: list[dict]) -> None:
    """qoe_vs_oracle (needs oracle in the run) and gap_closed (also static-belief; empty where the
    oracle gains less than GAP_MIN of its QoE over static-belief), per trace."""
    by = {(r["trace"], r["policy"]): r for r in rows}
    for r in rows:
        o = by.get((r["trace"], "oracle"))
        s = by.get((r["trace"], "static-belief"))
        r["qoe_vs_oracle"] = r["qoe_mean"] / o["qoe_mean"] if o and o["qoe_mean"] > 0 else float("nan")
        # below GAP_MIN of the oracle's QoE there is no gap worth closing: the ratio would be noise
        if o and s and o["qoe_mean"] - s["qoe_mean"] > GAP_MIN * max(abs(o["qoe_mean"]), 1e-9):
            r["gap_closed"] = (r["qoe_mean"] - s["qoe_mean"]) / (o["qoe_mean"] - s["qoe_mean"])
        else:
            r["gap_closed"] = float("nan")
