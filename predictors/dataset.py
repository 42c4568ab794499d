"""measurements.parquet (+ the zoo manifests that name the model files) -> feature tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import BadInput
from harness.zoo.graph import sha256_file, xnnpack_partitions
from harness.zoo.manifest import BUNDLED, load_manifest
from predictors import features as F

ARCH_KNOBS_EXCLUDE = ("quantization",)


def _manifests(zoos: list[Path]) -> dict[str, dict]:
    """candidate sha256 -> {path, knobs, family, id} over the given zoo dirs (and the bundled zoo)."""
    out = {}
    dirs = [Path(z) for z in zoos] + [Path(BUNDLED)]
    for d in dirs:
        for mf in ([d] if d.name == "manifest.json" else sorted(d.rglob("manifest.json"))):
            for c in load_manifest(mf)[1]:
                out.setdefault(c.sha256, {"path": str(c.path), "knobs": c.knobs, "family": c.family, "id": c.id})
    return out


def architecture_of(family: str, knobs: dict) -> str:
    """The group a candidate belongs to for grouped CV: the same architecture at every
    quantization (and every context) is one group, so no variant of a held-out network is seen."""
    k = {a: b for a, b in sorted(knobs.items()) if a not in ARCH_KNOBS_EXCLUDE}
    return f"{family}:" + ",".join(f"{a}={b}" for a, b in k.items())


def data_hashes(paths: list[Path]) -> dict[str, str]:
    return {str(p): sha256_file(p) for p in paths}


DRIFT_CORRECTED = "latency_ms_corrected"
# the reference model runs in each job's own context: its speed is one per device and context
REFERENCE_CONTEXT = ["target", "reference_id", "threads", "background_load"]


def drift_corrected_ms(df: pd.DataFrame) -> pd.Series:
    """``latency_ms_corrected``: each job's latency relative to the reference model
    (``latency_rel_median``) times the reference's median over every given job of the same
    target and context (the reference runs with the job's threads, beside its load).
    Milliseconds, without the drift of a machine whose speed wanders during a campaign and
    between campaigns (it reorders the jobs' own medians, not the paired ratios), so that
    campaigns collected at different times combine. NaN where a job has no reference pairs."""
    ref = df.groupby(REFERENCE_CONTEXT)["reference_ms_median"].transform("median")
    return df["latency_rel_median"] * ref


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _check_measured(df: pd.DataFrame, col: str, path: Path) -> None:
    """A measured column holds numbers >= 0 (a latency of 0 ms is a missing one): one line naming
    the file, column and the first bad row, instead of a traceback or a predictor fitted to it."""
    if col not in df.columns:
        return
    ok = df["status"] == "ok" if "status" in df.columns else pd.Series(True, index=df.index)
    if pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col]):
        v = df[col].astype(float)
        bad = ok & df[col].notna() & ~(np.isfinite(v) & (v > 0 if col.startswith("latency") else v >= 0))
    else:   # text, even text that reads as a number: the file was not written by the harness
        bad = ok & df[col].notna()
    if bad.any():
        i = bad.idxmax()
        who = df.at[i, "candidate_id"] if "candidate_id" in df.columns else f"row {i}"
        want = "a number > 0" if col.startswith("latency") else "a number >= 0"
        raise BadInput(f"{path}: {col}: expected {want}, got {_plain(df.at[i, col])!r} ({who}; {int(bad.sum())} such row(s))")


def load(paths: list[Path], zoos: list[Path] = (), target: str = "latency_ms_median",
         allow_estimates: bool = False) -> pd.DataFrame:
    """One row per ok measurement with: target, context, model-level features (``m_``), the
    kernels (``kernels``: per kernel a :data:`predictors.features.KERNEL_FIELDS` tuple) and their
    per-(kind, dtype) sums (``k_``), how many pieces XNNPACK runs it in (``xnnpack_pieces``, from
    the graph), ``group`` (architecture) and ``zoo_family``. Rows whose
    model file cannot be found are refused with the candidate named, never silently dropped."""
    frames = []
    numeric = ("latency_rel_median", "reference_ms_median") if target == DRIFT_CORRECTED else (target,)
    for p in paths:
        try:
            frames.append(pd.read_parquet(p))
        except (OSError, ValueError) as e:
            raise BadInput(f"{p}: not a readable measurements.parquet ({e})") from None
        for col in numeric:
            _check_measured(frames[-1], col, p)
    df = pd.concat(frames, ignore_index=True)
    why = " (it needs jobs measured in pairs with a reference model: collect without --reference none)" \
        if target == DRIFT_CORRECTED else ""
    if target == DRIFT_CORRECTED and {"latency_rel_median", "reference_ms_median", "reference_id"} <= set(df.columns):
        df[target] = drift_corrected_ms(df)
    if target not in df.columns:
        raise BadInput(f"{paths[0]}: no column {target!r}{why} (have {', '.join(df.columns)})")
    df = df[(df["status"] == "ok") & df[target].notna()].copy()
    if target.startswith("energy"):
        est = df["energy_source"].astype(str).str.startswith("estimate:")
        if est.any() and not allow_estimates:
            df = df[~est]
    if df.empty:
        raise BadInput(f"{paths[0]}: no ok rows with {target}{why}")
    zoo = _manifests(list(zoos))
    missing = sorted(set(df["candidate_sha256"]) - set(zoo))
    if missing:
        ids = df.loc[df["candidate_sha256"].isin(missing), "candidate_id"].unique()[:5]
        raise BadInput(f"model files not found for {len(missing)} candidate(s) ({', '.join(ids)}): pass --zoo DIR")
    mf, kf, kernels, groups, fams, pieces = [], [], [], [], [], []
    for sha in df["candidate_sha256"]:
        z = zoo[sha]
        g = F.graph_of(z["path"])
        pieces.append(xnnpack_partitions(g))
        mf.append(F.model_features(g))
        rows = F.kernel_rows(g)
        kf.append(F.kernel_sums(rows))
        kernels.append(tuple(tuple(r[f] for f in F.KERNEL_FIELDS) for r in rows))
        groups.append(architecture_of(z["family"], z["knobs"]))
        fams.append(z["family"])
    out = df.reset_index(drop=True)
    out["group"] = groups
    out["zoo_family"] = fams
    out["kernels"] = kernels
    out["xnnpack_pieces"] = pieces   # from the graph, as harness.zoo inspect says it
    if "cpu_freq_mhz" not in out:
        out["cpu_freq_mhz"] = np.nan
    m = pd.DataFrame(mf).add_prefix("m_")
    k = pd.DataFrame(kf).add_prefix("k_")
    return pd.concat([out, m, k], axis=1)


KERNEL_FAMILY = "kernels"   # harness.zoo.kernels: single operators, training data for the kernel level


def rows_for(level: str, df: pd.DataFrame) -> pd.DataFrame:
    """The rows a predictor of ``level`` learns from: the model level learns whole networks, so
    single-kernel models (whose features lie far outside any network's) are left to the kernel
    level, unless there is nothing else."""
    if level != "model":
        return df
    nets = df[df["zoo_family"] != KERNEL_FAMILY]
    return df if nets.empty else nets.reset_index(drop=True)


_SIGNATURE = [i for i, f in enumerate(F.KERNEL_FIELDS) if f != "bytes"]


def kernel_signature(k: tuple) -> tuple:
    """A kernel (a :data:`predictors.features.KERNEL_FIELDS` tuple) as the same operator whether
    measured alone or inside a network: every field but the bytes (a bias more or less)."""
    return tuple(k[i] for i in _SIGNATURE)


def operators(kernels) -> list[tuple]:
    """A model's kernels but those of kind ``other`` (standalone ReLUs, reshapes): the operators
    that are measured alone, in pairs, and summed."""
    return [k for k in kernels if k[0] != "other"]


def alone_costs(kernels, contexts, y, n_ops: int = 1) -> dict[tuple, float]:
    """What each operator costs measured alone: {(context, :func:`kernel_signature`): median of
    ``y``} over the rows that are one operator (one kernel not of kind ``other``). With
    ``n_ops=2``, what two operators cost run one after the other (``harness.zoo build --family
    kernels --like ZOO --pairs``): {(context, first's signature, second's): median}."""
    table: dict[tuple, list[float]] = {}
    for ks, c, t in zip(kernels, contexts, y):
        ops = operators(ks)
        if len(ops) == n_ops:
            table.setdefault((tuple(c), *map(kernel_signature, ops)), []).append(float(t))
    return {k: float(np.median(v)) for k, v in table.items()}


def measured_alone(df: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per network family: (how many of its distinct operators (:func:`kernel_signature`) are
    the operator of a row of the kernels family, how many it has).
    Operators of kind ``other`` (ReLUs, reshapes) are not counted. A family held out of
    training is still "never measured" when its operators were measured alone (``harness.zoo
    build --family kernels --like``): its networks were not; this says how much of it was."""
    def distinct(rows) -> set:
        return {kernel_signature(k) for ks in rows for k in operators(ks)}
    alone = distinct(df.loc[df["zoo_family"] == KERNEL_FAMILY, "kernels"])
    out = {}
    for fam, d in df[df["zoo_family"] != KERNEL_FAMILY].groupby("zoo_family"):
        ops = distinct(d["kernels"])
        out[str(fam)] = (len(ops & alone), len(ops))
    return out


def measured_pairs(df: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per network family: (how many of the distinct pairs of operators its networks run one
    after the other (kind ``other`` skipped, as :func:`measured_alone`) are a row of the kernels
    family that is those two operators, how many it has). Only families with a pair measured
    (``harness.zoo build --family kernels --like ZOO --pairs``)."""
    def consecutive(ks) -> set:
        sigs = [kernel_signature(k) for k in operators(ks)]
        return set(zip(sigs, sigs[1:]))
    together = set().union(*(consecutive(ks) for ks in df.loc[df["zoo_family"] == KERNEL_FAMILY, "kernels"]
                             if len(operators(ks)) == 2))
    out = {}
    for fam, d in df[df["zoo_family"] != KERNEL_FAMILY].groupby("zoo_family"):
        ps = set().union(*map(consecutive, d["kernels"]))
        if ps & together:
            out[str(fam)] = (len(ps & together), len(ps))
    return out


def family_weights(df: pd.DataFrame) -> np.ndarray:
    """Sample weights under which every zoo family weighs the same in total (mean weight 1): a
    family of 72 models does not outvote one of 32, and what the predictor learns about per-
    kernel costs is not mostly what the biggest family needs."""
    return balanced_weights(df["zoo_family"].to_numpy())


def balanced_weights(labels) -> np.ndarray:
    names, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    return len(inverse) / (len(names) * counts[inverse])


def model_level_columns(df: pd.DataFrame) -> list[str]:
    cols = [c for c in df.columns if c.startswith("m_")] + ["threads", "background_load"]
    if df["cpu_freq_mhz"].notna().all():
        cols.append("cpu_freq_mhz")
    return cols


def kernel_level_columns(df: pd.DataFrame) -> list[str]:
    """What :class:`predictors.models.BoostedKernelRegressor` reads: every kernel, the context."""
    return ["kernels", "threads", "background_load"]


def measured_kernel_columns(df: pd.DataFrame) -> list[str]:
    """What :class:`predictors.models.MeasuredKernelRegressor` reads."""
    return ["kernels", "threads", "background_load", "xnnpack_pieces"]


def kernel_sum_columns(df: pd.DataFrame) -> list[str]:
    """What :class:`predictors.models.KernelLevelRegressor` reads: the per-(kind, dtype) sums."""
    return [c for c in df.columns if c.startswith("k_")] + ["threads", "background_load"]
