"""Apply what a live run measured to the world (simulator.replay --calibrate LIVE_DIR).

A live run's cells.csv gives, per (choice, busy CPUs rounded to 0.5), the live service time over
the world's draw for the same requests. Calibrating multiplies each request's draw for a choice
by the ratio of that choice's cell nearest in load; a choice the live run never served gets the
median ratio of all cells (what serving requests one by one costs over the campaign's
back-to-back runs, whichever the model). Energy per request is scaled alike: power taken as
constant, so a request that runs longer spends proportionally more (an assumption, stated)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from harness.errors import BadInput


def load_cells(live_dir: str | Path) -> list[dict]:
    p = Path(live_dir) / "cells.csv"
    try:
        with p.open() as f:
            rows = list(csv.DictReader(f))
        return [{"choice": r["choice"], "busy_cpus": float(r["busy_cpus"]), "ratio": float(r["ratio"])} for r in rows
                if np.isfinite(float(r["ratio"])) and float(r["ratio"]) > 0]
    except (OSError, KeyError, ValueError) as e:
        raise BadInput(f"{p}: not a live run's cells.csv ({type(e).__name__}: {e})") from None


def apply(real, camp, cells: list[dict]) -> None:
    """Scale ``real.latency_ms`` in place, per request and choice (module docstring)."""
    if not cells:
        raise BadInput("--calibrate: the live run's cells.csv has no cell")
    overall = float(np.median([c["ratio"] for c in cells]))
    by: dict[str, list[dict]] = {}
    for c in cells:
        by.setdefault(c["choice"], []).append(c)
    for j, label in enumerate(camp.labels):
        mine = by.get(label)
        if not mine:
            real.latency_ms[:, j] *= overall
            real.energy_mj[:, j] *= overall
            continue
        levels = np.array([c["busy_cpus"] for c in mine])
        ratios = np.array([c["ratio"] for c in mine])
        nearest = np.abs(real.busy[:, None] - levels[None, :]).argmin(axis=1)
        real.latency_ms[:, j] *= ratios[nearest]
        real.energy_mj[:, j] *= ratios[nearest]
