"""Shared by the random-weight families (``kernels``, ``mbv2``, ``resnet``, ``mnv1``, ``squeezenet``;
``nb201`` for the BatchNorm statistics): conversion in each quantization, and the build loop that writes one
.tflite per configuration and quantization plus the manifest. Needs the ``zoo`` extra."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from harness import __version__
from harness.errors import BadInput
from harness.zoo.graph import read_graph
from harness.zoo.manifest import write_manifest

QUANTIZATIONS = ("float32", "dynamic-int8", "int8")


def sample_distinct(n: int, seed: int, draw: Callable[[np.random.Generator], dict], config_id: Callable[[dict], str],
                    macs_of: Callable[[dict], float], max_macs: float, min_macs: float = 0.0) -> list[dict]:
    """Up to ``n`` configurations from ``draw(rng)``, distinct by ``config_id`` and of
    ``min_macs`` to ``max_macs`` multiply-accumulates, reproducible for a seed (fewer when 100 n
    draws do not find n)."""
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    for _ in range(100 * n):
        if len(out) == n:
            break
        cfg = draw(rng)
        if config_id(cfg) in seen or not min_macs <= macs_of(cfg) <= max_macs:
            continue
        seen.add(config_id(cfg))
        out.append(cfg)
    return out


def round_channels(c: float) -> int:
    """Channels as MobileNet-style families scale them: to the nearest multiple of 8, at least 8."""
    return max(8, int(c + 4) // 8 * 8)


def image_input(resolution: int, seed: int = 0):
    """Seeds TensorFlow for the model about to be built; its (1, resolution, resolution, 3) input."""
    import tensorflow as tf
    tf.keras.utils.set_random_seed(seed)
    return tf.keras.Input((resolution, resolution, 3), batch_size=1, name="image")


def classifier(inp, x, seed: int = 0):
    """The families' common head: global average pooling, a 10-way dense layer; the model with
    its BatchNorm statistics randomized."""
    from tensorflow import keras
    x = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))
    return randomize_batchnorm(keras.Model(inp, x), seed)


def randomize_batchnorm(model, seed: int = 0):
    """Random but non-degenerate BatchNorm statistics, so that no constant-folding shortcut
    applies (the converter folds them into the preceding convolution)."""
    from tensorflow import keras
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([1 + 0.1 * rng.standard_normal(g.shape), 0.1 * rng.standard_normal(b.shape),
                               0.1 * rng.standard_normal(m.shape), 1 + 0.1 * rng.random(v.shape)])
    return model


def convert(model, quant: str, seed: int = 0) -> bytes:
    """float32; dynamic-range int8 (int8 weights, float activations); full int8 with int8 input
    and output (calibrated on random normal inputs: the weights are random too)."""
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant == "dynamic-int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quant == "int8":
        rng = np.random.default_rng(seed)
        shapes = [tuple(t.shape) for t in model.inputs]
        names = [t.name for t in model.inputs]

        def sample():   # by input name when there are several: the .tflite may order them otherwise
            xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
            return xs if len(xs) == 1 else dict(zip(names, xs))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: (sample() for _ in range(16))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif quant != "float32":
        raise BadInput(f"unknown quantization {quant!r} (choose from {', '.join(QUANTIZATIONS)})")
    return conv.convert()


def build_family(out: Path, family: str, description: str, configs: list[dict], config_id: Callable[[dict], str],
                 keras_model: Callable, prefix: str, seed: int = 0, quantizations=QUANTIZATIONS,
                 skip: Callable[[dict, str], bool] = lambda c, q: False, log=print) -> dict:
    """One candidate per configuration and quantization (unless ``skip(config, quant)``), named
    ``{prefix}-{config_id}-{quant}``; writes the files and ``manifest.json`` into ``out``."""
    import tensorflow as tf
    out.mkdir(parents=True, exist_ok=True)
    cands = []
    for c in configs:
        model = keras_model(c, seed)
        for quant in quantizations:
            if skip(c, quant):
                continue
            cid = f"{prefix}-{config_id(c)}-{quant}"
            path = out / f"{cid}.tflite"
            path.write_bytes(convert(model, quant, seed))
            g = read_graph(path)
            cands.append({"id": cid, "file": path.name, "sha256": g.sha256, "family": family,
                          "knobs": {**c, "quantization": quant},
                          "input": {"shape": list(g.inputs[0].shape), "dtype": g.inputs[0].dtype},
                          "params": g.params, "macs": g.macs, "file_bytes": g.file_bytes,
                          "preprocessing": {"layout": "NHWC", "note": "random weights: any input of the shape"},
                          "accuracy": None, "training": {"weights": f"random (seed {seed})"}})
            log(f"{cid}: macs={g.macs} ops={g.op_histogram}")
    m = {"schema_version": 1, "family": family, "description": description,
         "builder": {"harness_version": __version__, "tensorflow": tf.__version__, "seed": seed,
                     "configs": len(configs)},
         "task": None, "candidates": cands}
    write_manifest(out, m)
    return m
