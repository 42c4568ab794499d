"""Pure functions: data -> matplotlib Figure. No I/O, no global state (the Agg backend is local)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

FLAG = "#d62728"


def _fig(w: float = 7.0, h: float = 3.6, left_in: float = 0.8) -> Figure:
    """Margins fixed in inches (constrained layout redraws every figure twice just to measure)."""
    fig = Figure(figsize=(w, h), dpi=100)
    fig.subplots_adjust(left=left_in / w, right=1 - 0.2 / w, bottom=0.55 / h, top=1 - 0.35 / h)
    return fig


def _log(axis) -> None:
    """Log scale with plain-number labels at 1-2-5 steps (no 2x10^-1 clutter)."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def latency_boxes(samples: dict[str, list[float]], throttled: set[str], title: str) -> Figure:
    """Raw latency samples per candidate (box plot, log scale); throttled candidates in red."""
    names = list(samples)
    fig = _fig(7.5, max(2.5, 0.22 * len(names) + 1.0), left_in=2.1)
    ax = fig.add_subplot()
    bp = ax.boxplot([samples[n] for n in names], orientation="horizontal", showfliers=True, widths=0.6,
                    flierprops={"markersize": 2, "alpha": 0.5}, patch_artist=True)
    for patch, n in zip(bp["boxes"], names):
        patch.set_facecolor(FLAG if n in throttled else "#9ecae1")
    ax.set_yticks(range(1, len(names) + 1), [n + (" (throttled)" if n in throttled else "") for n in names],
                  fontsize=7)
    ax.set_xscale("log")
    _log(ax.xaxis)
    ax.set_xlabel("latency per inference (ms, raw samples)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def load_and_first(names: list[str], load_ms: list[float], first_ms: list[float], title: str) -> Figure:
    fig = _fig(7.5, max(2.5, 0.22 * len(names) + 1.0), left_in=2.1)
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y - 0.2, load_ms, 0.4, label="model load (interpreter + allocate)")
    ax.barh(y + 0.2, first_ms, 0.4, label="first inference")
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xscale("log")
    _log(ax.xaxis)
    ax.set_xlabel("ms")
    ax.legend(fontsize=7, loc="best", framealpha=0.9)
    ax.set_title(title, fontsize=10)
    return fig


def context_effect(series: dict[str, dict[tuple[int, int], float]], title: str) -> Figure:
    """Median latency per (threads, background load) context, one line per candidate."""
    fig = _fig()
    ax = fig.add_subplot()
    contexts = sorted({k for s in series.values() for k in s})
    labels = [f"t{t}/bg{b}" for t, b in contexts]
    for name, s in series.items():
        ax.plot(range(len(contexts)), [s.get(k, np.nan) for k in contexts], marker="o", ms=3, lw=1, label=name)
    ax.set_xticks(range(len(contexts)), labels, fontsize=8)
    ax.set_yscale("log")
    _log(ax.yaxis)
    ax.set_xlabel("context (threads / background busy processes)")
    ax.set_ylabel("median latency (ms)")
    if len(series) <= 12:
        ax.legend(fontsize=6, ncols=2)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def pareto_front(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Indices of points not dominated by another (lower x is better, higher y is better)."""
    order = np.lexsort((-ys, xs))
    front, best = [], -np.inf
    for i in order:
        if ys[i] > best:
            front.append(i)
            best = ys[i]
    return np.asarray(front, int)


def tradeoff(points: dict[str, tuple[np.ndarray, np.ndarray, list[str]]], xlabel: str, title: str) -> Figure:
    """Accuracy against a cost per target, with each target's Pareto front."""
    fig = _fig()
    ax = fig.add_subplot()
    for target, (x, y, _names) in points.items():
        sc = ax.scatter(x, y, s=14, alpha=0.7, label=target)
        f = pareto_front(x, y)
        ax.step(x[f], y[f], where="post", color=sc.get_facecolor()[0], lw=1.5)
    ax.set_xscale("log")
    _log(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (held-out split)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def energy_vs_latency(points: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> Figure:
    fig = _fig()
    ax = fig.add_subplot()
    for label, (lat, en) in points.items():
        ax.scatter(lat, en, s=14, alpha=0.7, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log(ax.xaxis)
    _log(ax.yaxis)
    ax.set_xlabel("median latency (ms)")
    ax.set_ylabel("energy per inference (mJ)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    return fig


def short(name: str, n: int = 28) -> str:
    """A trace name short enough for a title (imported phone traces are named by a 32-digit id)."""
    return name if len(name) <= n else name[: n - 1] + "\u2026"


def replay_timeline(trace: str, runs: dict[str, dict], deadline_ms: float, title: str) -> Figure:
    """One trace's replay, per policy in ``runs`` ({name: {t_s, busy_cpus, accuracy, latency_ms,
    battery_pct}} arrays): the context, the chosen candidate's accuracy, latency against the
    deadline, and the battery when there is one. Shared time axis, one labelled line per policy."""
    has_bat = any(not np.isnan(np.asarray(r["battery_pct"], float)).all() for r in runs.values())
    n = 4 if has_bat else 3
    fig = Figure(figsize=(8.0, 1.55 * n + 0.8), dpi=100)
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.5 / (1.55 * n + 0.8), top=1 - 0.45 / (1.55 * n + 0.8), hspace=0.12)
    axes = fig.subplots(n, 1, sharex=True)
    first = next(iter(runs.values()))
    axes[0].step(first["t_s"], first["busy_cpus"], where="post", color="#555", lw=1.2)
    axes[0].set_ylabel("busy CPUs\n(other apps)", fontsize=8)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    for (name, r), col in zip(runs.items(), colors):
        axes[1].step(r["t_s"], r["accuracy"], where="post", color=col, lw=1.2, label=name)
        lat = np.asarray(r["latency_ms"], float)
        axes[2].plot(r["t_s"], lat, ".", ms=2, color=col, alpha=0.6, label=name, rasterized=True)  # thousands of dots
        if has_bat:
            axes[3].plot(r["t_s"], r["battery_pct"], color=col, lw=1.2, label=name)
    axes[1].set_ylabel("chosen model's\naccuracy", fontsize=8)
    axes[1].legend(fontsize=7, loc="lower left", ncol=len(runs))
    axes[2].axhline(deadline_ms, color=FLAG, lw=1, ls="--", label=f"deadline {deadline_ms:.3g} ms")
    axes[2].set_yscale("log")
    _log(axes[2].yaxis)
    axes[2].set_ylabel("latency (ms)", fontsize=8)
    axes[2].legend(fontsize=7, loc="upper left", ncol=len(runs) + 1, markerscale=4)
    if has_bat:
        axes[3].set_ylabel("battery (%)", fontsize=8)
    axes[-1].set_xlabel(f"time in trace {short(trace)} (s)")
    for ax in axes:
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def policy_choices(trace: str, t_s, busy, runs: dict[str, tuple], title: str) -> Figure:
    """Small multiples: the context on top, then one row per policy with the accuracy of the model
    it chose over time (each row labelled with the policy's name)."""
    n = len(runs) + 1
    fig = Figure(figsize=(8.0, 0.75 * n + 0.9), dpi=100)
    fig.subplots_adjust(left=0.2, right=0.98, bottom=0.55 / (0.75 * n + 0.9), top=1 - 0.4 / (0.75 * n + 0.9), hspace=0.15)
    axes = fig.subplots(n, 1, sharex=True)
    axes[0].step(t_s, busy, where="post", color="#555", lw=1)
    axes[0].set_ylabel("busy CPUs", fontsize=7, rotation=0, ha="right", va="center")
    lo = min(float(np.nanmin(a)) for _, a in runs.values())
    hi = max(float(np.nanmax(a)) for _, a in runs.values())
    for ax, (name, (t, acc)) in zip(axes[1:], runs.items()):
        ax.step(t, acc, where="post", lw=1.1, color="#1f77b4")
        ax.set_ylim(lo - 0.02, hi + 0.02)
        ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    for ax in axes:
        ax.tick_params(labelsize=6)
    axes[-1].set_xlabel(f"time in trace {short(trace)} (s); rows: the chosen model's accuracy")
    fig.suptitle(title, fontsize=10)
    return fig


def regret(trace: str, curves: dict[str, tuple], title: str) -> Figure:
    """Cumulative QoE lost against the best single choice in hindsight, one labelled line per
    policy: a learner's flattens as it finds what the user wants."""
    fig = _fig(7.5, 3.4)
    ax = fig.add_subplot()
    for name, (t, r) in curves.items():
        ax.plot(t, r, lw=1.2, label=name)
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_xlabel(f"time in trace {short(trace)} (s)")
    ax.set_ylabel("cumulative regret (QoE)")
    ax.legend(fontsize=7, ncol=3)
    ax.set_title(title, fontsize=10)
    return fig


def sim_vs_live(trace: str, runs: dict[str, tuple], busy: tuple, deadline_ms: float, title: str) -> Figure:
    """The simulated and the live runs of one policy overlaid: the played load on top, then each
    request's latency (log) with the deadline; one labelled colour per run."""
    fig = Figure(figsize=(8.0, 4.6), dpi=100)
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.11, top=0.91, hspace=0.12)
    ax0, ax1 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 2.2]})
    ax0.step(busy[0], busy[1], where="post", color="#555", lw=1.2)
    ax0.set_ylabel("busy CPUs\n(played)", fontsize=8)
    colors = {"simulated": "#1f77b4"}
    for i, (name, (t, lat)) in enumerate(runs.items()):
        ax1.plot(t, lat, ".", ms=3, alpha=0.7, label=name, color=colors.get(name, ["#ff7f0e", "#2ca02c", "#d62728",
                                                                                     "#9467bd"][i % 4]), rasterized=True)
    ax1.axhline(deadline_ms, color=FLAG, ls="--", lw=1, label=f"deadline {deadline_ms:.3g} ms")
    ax1.set_yscale("log")
    _log(ax1.yaxis)
    ax1.set_ylabel("latency (ms)", fontsize=8)
    ax1.set_xlabel(f"time in trace {short(trace)} (s)")
    ax1.legend(fontsize=7, ncol=len(runs) + 1, markerscale=3)
    for ax in (ax0, ax1):
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def heatmap(color, rows: list[str], cols: list[str], title: str, label: str, vmin=None, vmax=None,
            shown=None) -> Figure:
    """A labelled grid (rows x columns) coloured by ``color``, each cell written with its number
    in ``shown`` (default: the colour's own value)."""
    v = np.asarray(color, float)
    text = np.asarray(shown, float) if shown is not None else v
    left = max(1.3, 0.075 * max(len(r) for r in rows))    # room for the longest row label
    w = left + 1.7 + 1.0 * len(cols)
    fig = _fig(w, 1.0 + 0.32 * len(rows), left_in=left)
    fig.subplots_adjust(right=1 - 1.3 / w)      # room for the colour bar and its label
    ax = fig.add_subplot()
    im = ax.imshow(v, aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            if np.isfinite(v[i, j]):
                ax.text(j, i, f"{text[i, j]:.3g}" if shown is not None else f"{v[i, j]:.2f}", ha="center", va="center",
                        fontsize=7,
                        color="white" if im.norm(v[i, j]) < 0.5 else "black")
    cb = fig.colorbar(im, ax=ax, fraction=0.08, pad=0.04)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=9)
    return fig


def predicted_vs_measured(measured, predicted, title: str) -> Figure:
    """Each measurement against its prediction (log-log), the diagonal and a +-10% band labelled."""
    y, p = np.asarray(measured, float), np.asarray(predicted, float)
    fig = _fig(5.6, 4.4)
    ax = fig.add_subplot()
    lo, hi = float(min(y.min(), p.min())) * 0.8, float(max(y.max(), p.max())) * 1.25
    xs = np.geomspace(lo, hi, 50)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="#2ca02c", alpha=0.15, label="within 10%")
    ax.plot(xs, xs, color="#555", lw=0.8, label="predicted = measured")
    ax.plot(y, p, "o", ms=3, alpha=0.7, color="#1f77b4", label="a measurement")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log(ax.xaxis)
    _log(ax.yaxis)
    ax.set_xlabel("measured (ms)")
    ax.set_ylabel("predicted (ms)")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title, fontsize=9)
    return fig


PLACE_Y = {"device": 0, "split": 1, "server": 2}


def offload_timeline(trace: str, t_s, bandwidth, runs: dict[str, dict], deadline_ms: float, title: str) -> Figure:
    """One bandwidth trace's offloading replay: the bandwidth on top, then per policy in ``runs``
    ({name: {t_s, place, latency_ms}}) where each request ran (device, split, server), and the
    latency of every request against the deadline. Shared time axis."""
    n = len(runs)
    h = 1.4 + 0.7 * n + 1.6 + 0.8
    fig = Figure(figsize=(8.0, h), dpi=100)
    fig.subplots_adjust(left=0.2, right=0.98, bottom=0.5 / h, top=1 - 0.45 / h, hspace=0.15)
    axes = fig.subplots(n + 2, 1, sharex=True, gridspec_kw={"height_ratios": [1.4] + [0.7] * n + [1.6]})
    axes[0].step(t_s, bandwidth, where="post", color="#555", lw=1.0)
    axes[0].set_ylabel("bandwidth\n(Mbit/s)", fontsize=8)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
    for ax, ((name, r), col) in zip(axes[1:-1], zip(runs.items(), colors)):
        y = np.array([PLACE_Y.get(p, np.nan) for p in r["place"]], float)
        ax.plot(r["t_s"], y, "|", ms=6, color=col, rasterized=True)
        ax.set_yticks([0, 1, 2], ["device", "split", "server"], fontsize=6)
        ax.set_ylim(-0.6, 2.6)
        ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
        lat = np.asarray(r["latency_ms"], float)
        axes[-1].plot(r["t_s"], lat, ".", ms=2, color=col, alpha=0.6, label=name, rasterized=True)
    axes[-1].axhline(deadline_ms, color=FLAG, lw=1, ls="--", label=f"deadline {deadline_ms:.3g} ms")
    axes[-1].set_yscale("log")
    _log(axes[-1].yaxis)
    axes[-1].set_ylabel("latency (ms)", fontsize=8)
    axes[-1].legend(fontsize=6, loc="upper left", ncol=min(n + 1, 4), markerscale=4)
    axes[-1].set_xlabel(f"time in trace {short(trace)} (s)")
    for ax in axes:
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    return fig
