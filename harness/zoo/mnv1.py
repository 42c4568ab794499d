"""Build the ``mnv1`` family: MobileNetV1-style networks (random weights; latency only).

A fifth network family, the depthwise-separable network most edge benchmarks still carry
(Howard et al., 2017): depthwise convolutions like ``mbv2``'s, but without expansion, linear
bottlenecks or residual adds, so that a held-out ``mbv2`` is not the only network that shows the
predictor what a depthwise convolution costs inside a network (and the reverse). Knobs
(sampled): width multiplier, input resolution, number of stride-1 512-channel blocks (5 in
the original), depthwise kernel size; each in float32, dynamic-range int8 and full int8.

Skeleton: stem conv3x3/2 (32w) + BN + ReLU6; depthwise-separable blocks [dwconv kxk/s + BN +
ReLU6, conv1x1 + BN + ReLU6] with (channels, stride) = (64, 1), (128, 2), (128, 1), (256, 2),
(256, 1), (512, 2), ``blocks`` x (512, 1), (1024, 2), (1024, 1), channels times the width;
global average pooling, a 10-way classifier.
"""

from __future__ import annotations

from pathlib import Path

from harness.zoo.synthetic import QUANTIZATIONS, build_family, classifier, image_input, round_channels, sample_distinct

FAMILY = "mnv1"
WIDTHS = (0.25, 0.5, 0.75)
RESOLUTIONS = (32, 48, 64, 96)
BLOCKS = (1, 3, 5)
KERNELS = (3, 5)
MAX_MACS = 40e6


def stem_channels(cfg: dict) -> int:
    return round_channels(32 * cfg["width"])


def blocks(cfg: dict) -> list[tuple[int, int]]:
    """(output channels, stride) of each depthwise-separable block."""
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * cfg["blocks"] + \
        [(1024, 2), (1024, 1)]
    return [(round_channels(c * cfg["width"]), s) for c, s in plan]


def macs_of(cfg: dict) -> float:
    h = -(-cfg["resolution"] // 2)
    c = stem_channels(cfg)
    total = h * h * 27 * c
    for cout, s in blocks(cfg):
        h = -(-h // s)
        total += h * h * cfg["kernel"] ** 2 * c + h * h * c * cout
        c = cout
    return float(total + c * 10)


def config_id(cfg: dict) -> str:
    return f"w{int(cfg['width'] * 100):03d}-r{cfg['resolution']}-d{cfg['blocks']}-k{cfg['kernel']}"


def sample_configs(n: int, seed: int = 0, max_macs: float = MAX_MACS, min_macs: float = 0.0) -> list[dict]:
    """``n`` distinct configurations under :data:`MAX_MACS`, reproducible for a seed."""
    return sample_distinct(n, seed, lambda rng: {
        "width": float(rng.choice(WIDTHS)), "resolution": int(rng.choice(RESOLUTIONS)),
        "blocks": int(rng.choice(BLOCKS)), "kernel": int(rng.choice(KERNELS))}, config_id, macs_of, max_macs, min_macs)


def keras_model(cfg: dict, seed: int = 0):
    from tensorflow import keras
    L = keras.layers
    inp = image_input(cfg["resolution"], seed)
    x = L.Conv2D(stem_channels(cfg), 3, 2, "same", use_bias=False)(inp)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    for cout, s in blocks(cfg):
        x = L.DepthwiseConv2D(cfg["kernel"], s, "same", use_bias=False)(x)
        x = L.ReLU(6.0)(L.BatchNormalization()(x))
        x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(cout, 1, 1, use_bias=False)(x)))
    return classifier(inp, x, seed)


def build(out: Path, n: int = 20, seed: int = 0, quantizations=QUANTIZATIONS, log=print,
          max_macs: float = MAX_MACS, min_macs: float = 0.0) -> dict:
    return build_family(out, FAMILY, "MobileNetV1-style depthwise-separable networks, random weights",
                        sample_configs(n, seed, max_macs, min_macs), config_id, keras_model, "mn", seed, quantizations, log=log)
