"""One ranking of candidates for a device, a context and a budget, shared by the report's
recommendation and the selection tools: the most accurate candidate whose median latency in that
context meets the budget; among equally accurate ones, the faster. A candidate without accuracy
is not ranked."""
from __future__ import annotations

from collections.abc import Iterable


def rank(rows: Iterable[dict], budget_ms: float) -> list[dict]:
    """Rows (measurements.parquet's: candidate_id, accuracy, latency_ms_median) of ONE target
    and context, best first; each gets ``meets`` (its median within the budget)."""
    usable = [dict(r, meets=r["latency_ms_median"] <= budget_ms) for r in rows
              if r.get("accuracy") is not None and r.get("latency_ms_median") is not None]
    return sorted(usable, key=lambda r: (not r["meets"], -r["accuracy"], r["latency_ms_median"]))


def recommend(rows: Iterable[dict], budget_ms: float) -> list[dict]:
    """Per (target, threads, background load): the recommended candidate, the runner-up, and how
    many candidates meet the budget (none: the fastest, flagged ``meets`` False)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("status", "ok") == "ok":
            groups.setdefault((r["target"], r["threads"], r["background_load"]), []).append(r)
    out = []
    for (target, th, bg), rs in sorted(groups.items()):
        ranked = rank(rs, budget_ms)
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
