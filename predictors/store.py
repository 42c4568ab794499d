"""Safe persistence: skops (never a raw pickle) + card.json with provenance and CV scores.

``DIR/model.skops`` and ``DIR/card.json``. The card records the features, target, library
versions, the sha256 of every training file and of model.skops, the grouped-CV scores, and for
the kernel level the kernel kinds and tree descriptors it was fitted on.
Loading checks the artifact's hash against the card and refuses every type that skops does not
trust by default unless it is on an exact list (full names, never a prefix: a prefix such as
``builtins.`` lets ``builtins.exec`` through, and a model file could run code on load), with one
line naming the types. The card's hash detects accidents (a truncated or mixed-up file), not an
attacker, who can rewrite the card too: pin an artifact you trust with ``expect_sha256``.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

from harness.errors import BadInput
from harness.zoo.graph import sha256_file
from predictors.features import KIND_LIST
from predictors.models import TREE_DESCRIPTORS

# What this package's estimators hold beyond skops' defaults (found by saving every level the CLIs
# train), plus the plain numpy scalar and dtype classes older skops versions list. No functions.
TRUSTED_TYPES = frozenset({
    "predictors.models.ModelLevelRegressor", "predictors.models.KernelLevelRegressor",
    "predictors.models.BoostedKernelRegressor", "predictors.models.MeasuredKernelRegressor",
    "sklearn.tree._tree.Tree",
    "numpy.dtype", "numpy.float64", "numpy.float32", "numpy.int64", "numpy.int32", "numpy.bool_",
})


def versions() -> dict[str, str]:
    import numpy
    import sklearn
    import skops

    from harness import __version__
    return {"python": platform.python_version(), "numpy": numpy.__version__, "scikit-learn": sklearn.__version__,
            "skops": skops.__version__, "harness": __version__}


def save(out: Path, estimator, card: dict) -> Path:
    import skops.io as sio
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.skops.tmp"
    sio.dump(estimator, tmp)
    tmp.replace(out / "model.skops")
    card = dict(card, versions=versions(), artifact={"file": "model.skops", "sha256": sha256_file(out / "model.skops")},
                kernel_kinds=list(KIND_LIST), kernel_descriptors=list(TREE_DESCRIPTORS),
                estimator=f"{type(estimator).__module__}.{type(estimator).__name__}",
                estimator_params={k: v for k, v in estimator.get_params().items()
                                  if isinstance(v, (bool, int, float, str, tuple, list, type(None)))})
    (out / "card.json.tmp").write_text(json.dumps(card, indent=1, default=float))
    (out / "card.json.tmp").replace(out / "card.json")
    return out / "card.json"


def load(path: Path, expect_sha256: str | None = None):
    """(estimator, card) from DIR (or DIR/card.json). ``expect_sha256``: refuse model.skops unless
    its sha256 is this one (the card's own hash is no protection against a deliberate change)."""
    import skops.io as sio
    d = Path(path)
    d = d.parent if d.name in ("card.json", "model.skops") else d
    try:
        card = json.loads((d / "card.json").read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"{d / 'card.json'}: cannot read the model card ({e})") from None
    if any(f == "kernels" or f.startswith("k_") for f in card.get("features", [])) and \
            card.get("kernel_kinds") != list(KIND_LIST):
        raise BadInput(f"{d / 'card.json'}: trained on the kernel kinds {card.get('kernel_kinds') or 'of an older version'}"
                       f", this version prices {', '.join(KIND_LIST)}: retrain it (python -m predictors.train)")
    if "kernels" in card.get("features", []) and card.get("kernel_descriptors") != list(TREE_DESCRIPTORS):
        raise BadInput(f"{d / 'card.json'}: its trees were fitted on the kernel descriptors "
                       f"{card.get('kernel_descriptors') or 'of an older version'}, this version's are "
                       f"{', '.join(TREE_DESCRIPTORS)}: retrain it (python -m predictors.train)")
    art = d / card.get("artifact", {}).get("file", "model.skops")
    if not art.exists():
        raise BadInput(f"{art}: missing")
    digest = sha256_file(art)
    if expect_sha256 is not None and digest != expect_sha256.strip().lower():
        raise BadInput(f"{art}: sha256 is {digest}, not the pinned {expect_sha256}; refusing it")
    if digest != card.get("artifact", {}).get("sha256"):
        raise BadInput(f"{art}: sha256 differs from card.json: the artifact was changed after training; refusing it")
    try:
        untrusted = sio.get_untrusted_types(file=art)
    except Exception as e:  # skops raises several types on a damaged file
        raise BadInput(f"{art}: not a readable skops file ({type(e).__name__}: {e})") from None
    bad = sorted(t for t in untrusted if t not in TRUSTED_TYPES)
    if bad:
        raise BadInput(f"{art}: refusing to load unknown types: {', '.join(bad)} (nothing in it was run)")
    return sio.load(art, trusted=untrusted), card
