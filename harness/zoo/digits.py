"""Build the ``digits-compressed`` family (needs the ``zoo`` extra: TensorFlow).

An AdaSpring-style space of compression operators over one small MobileNetV2-like CNN trained
on scikit-learn's bundled handwritten digits (8x8, upsampled by pixel repetition so that compute
is not trivial). Knobs: width multiplier, blocks removed, input resolution, quantization.

Weight reuse: the base network (width 1.0, all blocks) is fully convolutional with global
pooling, so one set of weights serves every resolution; it is trained on all three resolutions
in turn. A narrower or shallower variant starts from the base weights (leading channels sliced,
residual blocks dropped) and is fine-tuned briefly; the manifest records how long. Quantized
variants are post-training conversions of their float variant, not retrained.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from harness import __version__
from harness.zoo import evaluate
from harness.zoo.graph import read_graph
from harness.zoo.manifest import write_manifest

FAMILY = "digits-compressed"
WIDTHS = (0.25, 0.5, 0.75, 1.0)
BLOCKS_REMOVED = (0, 1, 2)
RESOLUTIONS = (32, 48, 64)
QUANTIZATIONS = ("float32", "float16", "dynamic-int8", "int8")
# (expansion, out channels, stride); residual blocks (stride 1, same width) are removable.
BLOCKS = ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 48, 2), (6, 48, 1))
REMOVAL_ORDER = (6, 4, 2)  # which residual block goes first, second, third
STEM, HEAD = 16, 96
TEST_FRACTION = 0.25
BASE_ROUNDS = 10         # rounds over the three resolutions (one epoch each) for the base
FINE_TUNE_ROUNDS = 3     # the same for a sliced or shallower variant


def channels(c: int, width: float) -> int:
    return max(4, int(round(c * width / 4)) * 4)


def split_indices(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The held-out rule: stratified 25% test split of load_digits with ``random_state=seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    y = load_digits().target
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=TEST_FRACTION, stratify=y, random_state=seed)
    return np.sort(tr), np.sort(te)


def _keras_model(width: float, removed: int, res: int | None):
    import tensorflow as tf
    from tensorflow import keras
    L = keras.layers
    drop = set(REMOVAL_ORDER[:removed])
    x = inp = keras.Input((res, res, 1), batch_size=1 if res else None, name="image")
    x = L.Conv2D(channels(STEM, width), 3, 2, "same", use_bias=False, name="stem_conv")(x)
    x = L.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    cin = channels(STEM, width)
    for b, (t, c, s) in enumerate(BLOCKS):
        if b in drop:
            continue
        cout = channels(c, width)
        y = x
        if t != 1:
            y = L.Conv2D(cin * t, 1, use_bias=False, name=f"b{b}_expand")(y)
            y = L.BatchNormalization(momentum=0.9, name=f"b{b}_expand_bn")(y)
            y = L.ReLU(6.0, name=f"b{b}_expand_relu")(y)
        y = L.DepthwiseConv2D(3, s, "same", use_bias=False, name=f"b{b}_dw")(y)
        y = L.BatchNormalization(momentum=0.9, name=f"b{b}_dw_bn")(y)
        y = L.ReLU(6.0, name=f"b{b}_dw_relu")(y)
        y = L.Conv2D(cout, 1, use_bias=False, name=f"b{b}_project")(y)
        y = L.BatchNormalization(momentum=0.9, name=f"b{b}_project_bn")(y)
        x = L.Add(name=f"b{b}_add")([x, y]) if (s == 1 and cin == cout) else y
        cin = cout
    x = L.Conv2D(channels(HEAD, width), 1, use_bias=False, name="head_conv")(x)
    x = L.BatchNormalization(momentum=0.9, name="head_bn")(x)
    x = L.ReLU(6.0, name="head_relu")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dense(10, name="logits")(x)
    tf.random.set_seed(0)
    return keras.Model(inp, x, name=f"digits_w{width}_d{removed}")


def _images(res: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    d = load_digits()
    return evaluate.digits_pixels(d.images, res), d.target.astype(np.int64)


def _fit(model, data, tr, rounds: int, seed: int) -> None:
    from tensorflow import keras
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        for res in RESOLUTIONS:
            x, y = data[res]
            order = rng.permutation(tr)
            model.fit(x[order], y[order], batch_size=32, epochs=1, verbose=0)


def _slice_from(base, model) -> None:
    """Copy the leading channels of every same-named layer of ``base`` into ``model``."""
    by_name = {layer.name: layer for layer in base.layers}
    for layer in model.layers:
        src = by_name.get(layer.name)
        if src is None or not layer.get_weights():
            continue
        new = [w[tuple(slice(0, n) for n in t.shape)] for w, t in zip(src.get_weights(), layer.get_weights())]
        layer.set_weights(new)


def _convert(model, quant: str, rep: np.ndarray) -> bytes:
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quant == "dynamic-int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quant == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rep[i:i + 1]] for i in range(len(rep)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def variants(limit: int | None, seed: int) -> list[tuple[float, int, int]]:
    """Architectures (width, blocks removed, resolution) to build: all, or a spread of ``limit``
    quantization groups that always holds the cheapest and the most expensive architecture."""
    archs = [(w, d, r) for w in WIDTHS for d in BLOCKS_REMOVED for r in RESOLUTIONS]
    if limit is None:
        return archs
    n = max(2, -(-limit // len(QUANTIZATIONS)))
    cost = sorted(archs, key=lambda a: (a[0] ** 2) * a[2] ** 2 * (1 - 0.1 * a[1]))
    ends = [cost[0], cost[-1]]
    rest = [a for a in archs if a not in ends]
    rng = np.random.default_rng(seed)
    pick = [rest[i] for i in sorted(rng.choice(len(rest), size=min(n - 2, len(rest)), replace=False))]
    return ends + pick


def parse_id(cid: str) -> tuple[float, int, int, str]:
    """``dc-w050-d1-r48-int8`` -> (width, blocks removed, resolution, quantization); a
    configuration outside the space is refused."""
    import re
    m = re.fullmatch(r"dc-w(\d{3})-d(\d)-r(\d+)-(float32|float16|dynamic-int8|int8)", cid)
    cfg = m and (int(m[1]) / 100, int(m[2]), int(m[3]), m[4])
    if not cfg or cfg[0] not in WIDTHS or cfg[1] not in BLOCKS_REMOVED or cfg[2] not in RESOLUTIONS:
        from harness.errors import BadInput
        raise BadInput(f"--only {cid}: not a digits-compressed configuration (dc-wWWW-dD-rRR-QUANT with width "
                       f"{'/'.join(str(int(w * 100)).zfill(3) for w in WIDTHS)}, depth {BLOCKS_REMOVED}, resolution "
                       f"{RESOLUTIONS}, quantization {'/'.join(QUANTIZATIONS)})")
    return cfg


def build(out: Path, limit: int | None = None, seed: int = 0, log=print, only: list[str] | None = None) -> dict:
    import tensorflow as tf
    tf.keras.utils.set_random_seed(seed)
    # the same command and seed give the same weights, accuracies and files: training's reductions
    # are otherwise ordered by the threads that ran them
    tf.config.experimental.enable_op_determinism()
    out.mkdir(parents=True, exist_ok=True)
    tr, te = split_indices(seed)
    data = {r: _images(r) for r in RESOLUTIONS}
    want = [parse_id(c) for c in only or []]
    archs = variants(limit, seed) if not want else sorted({c[:3] for c in want}, key=lambda a: (a[0], a[1], a[2]))
    t0 = time.time()
    base = _keras_model(1.0, 0, None)
    _fit(base, data, tr, BASE_ROUNDS, seed)
    log(f"base trained in {time.time() - t0:.0f}s")
    trained: dict[tuple[float, int], object] = {(1.0, 0): base}
    candidates = []
    for width, removed, res in archs:
        key = (width, removed)
        if key not in trained:
            m = _keras_model(width, removed, None)
            _slice_from(base, m)
            _fit(m, data, tr, FINE_TUNE_ROUNDS, seed)
            trained[key] = m
        fixed = _keras_model(width, removed, res)
        fixed.set_weights(trained[key].get_weights())
        x, y = data[res]
        rep = x[tr[:200]]
        for quant in QUANTIZATIONS:
            if limit is not None and len(candidates) >= limit:
                break
            if want and (width, removed, res, quant) not in want:
                continue
            cid = f"dc-w{int(width * 100):03d}-d{removed}-r{res}-{quant}"
            path = out / f"{cid}.tflite"
            path.write_bytes(_convert(fixed, quant, rep))
            g = read_graph(path)
            pre = evaluate.digits_preprocessing(res, g.inputs[0])
            acc = evaluate.accuracy(path, pre, te)
            fine = key != (1.0, 0)
            candidates.append({
                "id": cid, "file": path.name, "sha256": g.sha256, "family": FAMILY,
                "knobs": {"width": width, "blocks_removed": removed, "resolution": res, "quantization": quant},
                "input": {"shape": list(g.inputs[0].shape), "dtype": g.inputs[0].dtype},
                "params": g.params, "macs": g.macs, "file_bytes": g.file_bytes,
                "preprocessing": pre,
                "accuracy": round(acc, 6),
                "training": {
                    "weights_from": "base (width 1.0, 0 blocks removed)" if fine else "trained from scratch",
                    "fine_tuned": fine,
                    "fine_tune_epochs": FINE_TUNE_ROUNDS * len(RESOLUTIONS) if fine else 0,
                    "operators": ([f"width slice {width}"] if width != 1.0 else [])
                    + ([f"remove blocks {list(REMOVAL_ORDER[:removed])}"] if removed else [])
                    + ([f"post-training {quant}"] if quant != "float32" else []),
                },
            })
            log(f"{cid}: macs={g.macs} acc={acc:.4f} bytes={g.file_bytes}")
    manifest = {
        "schema_version": 1,
        "family": FAMILY,
        "description": "MobileNetV2-like CNN on sklearn digits (8x8 upsampled by pixel repetition); "
                       "compression knobs: width, blocks removed, input resolution, quantization.",
        "builder": {"harness_version": __version__, "tensorflow": tf.__version__, "seed": seed,
                    "limit": limit, "only": only or None, "base_epochs": BASE_ROUNDS * len(RESOLUTIONS), "op_determinism": True},
        "task": {
            "dataset": "sklearn.datasets.load_digits",
            "metric": "top-1 accuracy of argmax(output) on the held-out split",
            "split": {"rule": f"sklearn.model_selection.train_test_split(arange(1797), test_size={TEST_FRACTION}, "
                              f"stratify=target, random_state={seed})[1], sorted",
                      "seed": seed, "indices": [int(i) for i in te]},
        },
        "candidates": candidates,
    }
    write_manifest(out, manifest)
    return manifest
