"""One ranking of candidates for a device, a context and a budget, shared by the report's
recommendation and ``python -m simulator.select``: candidates that meet every constraint (median
latency within the deadline, energy per inference within its budget, accuracy at least the
minimum) first, then by expected QoE per request (:class:`simulator.metrics.QoE`: accuracy earned
on time, the miss penalty for the share of its latency distribution past the deadline, energy),
then the faster. A candidate without accuracy is not ranked."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from simulator.metrics import QoE


def expected_qoe(accuracy: float, latency_ms: np.ndarray, energy_mj: float | None, deadline_ms: float,
                 qoe: QoE) -> tuple[float, float]:
    """(mean QoE of one request, the share of it that is late) over a latency distribution (the
    measured samples, or quantiles of a predicted one); one request alone, no queue, no switch."""
    lat = np.asarray(latency_ms, float)
    late = lat > deadline_ms
    q = qoe.per_request(np.full(lat.shape, accuracy), late, np.full(lat.shape, energy_mj or 0.0), np.zeros(lat.shape))
    return float(q.mean()), float(late.mean())


def rank(rows: Iterable[dict], deadline_ms: float, qoe: QoE | None = None, energy_mj: float | None = None,
         min_accuracy: float | None = None) -> list[dict]:
    """Rows of ONE target and context (candidate_id, accuracy, latency_ms_median, optional
    ``samples`` and energy_mj), best first; each gets ``meets`` (every constraint), ``qoe`` and
    ``p_late``. Without samples the median stands for the distribution."""
    qoe = qoe or QoE()
    out = []
    for r in rows:
        if r.get("accuracy") is None or r.get("latency_ms_median") is None:
            continue
        lat = r.get("samples")
        lat = np.asarray([r["latency_ms_median"]]) if lat is None or len(lat) == 0 else lat
        q, late = expected_qoe(r["accuracy"], lat, r.get("energy_mj"), deadline_ms, qoe)
        e = r.get("energy_mj")
        meets = (r["latency_ms_median"] <= deadline_ms and (energy_mj is None or (e is not None and e <= energy_mj))
                 and (min_accuracy is None or r["accuracy"] >= min_accuracy))
        out.append(dict(r, meets=meets, qoe=q, p_late=late))
    return sorted(out, key=lambda r: (not r["meets"], -r["qoe"], r["latency_ms_median"]))


def recommend(rows: Iterable[dict], budget_ms: float, qoe: QoE | None = None) -> list[dict]:
    """Per (target, threads, background load): the recommended candidate, the runner-up, and how
    many candidates meet the budget (none: the fastest, flagged ``meets`` False)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("status", "ok") == "ok":
            groups.setdefault((r["target"], r["threads"], r["background_load"]), []).append(r)
    out = []
    for (target, th, bg), rs in sorted(groups.items()):
        ranked = rank(rs, budget_ms, qoe)
        if not ranked:
            continue
        meeting = [r for r in ranked if r["meets"]]
        best = meeting[0] if meeting else min(ranked, key=lambda r: r["latency_ms_median"])
        runner = meeting[1] if len(meeting) > 1 else None
        out.append({"target": target, "threads": th, "background_load": bg, "budget_ms": budget_ms,
                    "candidate_id": best["candidate_id"], "accuracy": best["accuracy"],
                    "latency_ms_median": best["latency_ms_median"], "meets": best["meets"],
                    "n_meeting": len(meeting), "n": len(ranked),
                    "runner_up": runner["candidate_id"] if runner else None})
    return out
