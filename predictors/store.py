"""Safe persistence: skops (never a raw pickle) + card.json with provenance and CV scores.

``DIR/model.skops`` and ``DIR/card.json``. The card records the features, target, library
versions, the sha256 of every training file and of model.skops, the grouped-CV scores, and for
the kernel level the kernel kinds and tree descriptors it was fitted on.
Loading checks the artifact's hash against the card and refuses any type outside an allowlist
of this package's and scikit-learn's/numpy's estimator types, with one line naming them.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

from harness.errors import BadInput
from harness.zoo.graph import sha256_file
from predictors.features import KIND_LIST
from predictors.models import TREE_DESCRIPTORS

ALLOWED_PREFIXES = ("predictors.models.", "sklearn.", "numpy.", "builtins.", "collections.")


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


def load(path: Path):
    """(estimator, card) from DIR (or DIR/card.json)."""
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
    if sha256_file(art) != card.get("artifact", {}).get("sha256"):
        raise BadInput(f"{art}: sha256 differs from card.json: the artifact was changed after training; refusing it")
    try:
        untrusted = sio.get_untrusted_types(file=art)
    except Exception as e:  # skops raises several types on a damaged file
        raise BadInput(f"{art}: not a readable skops file ({type(e).__name__}: {e})") from None
    bad = [t for t in untrusted if not t.startswith(ALLOWED_PREFIXES)]
    if bad:
        raise BadInput(f"{art}: refusing to load unknown types: {', '.join(bad)}")
    return sio.load(art, trusted=untrusted), card
