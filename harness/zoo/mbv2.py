"""Build the ``mbv2`` family: MobileNetV2-style networks (random weights; latency only).

A third network family beside ``digits-compressed`` (a small trained CNN) and ``nb201`` (cell
networks of plain convolutions and pooling): inverted residual blocks (Sandler et al., CVPR 2018)
whose cost is dominated by 1x1 convolutions and depthwise convolutions, the shape most deployed
edge models have. A predictor evaluated by holding one network family out learns from the
others; with two families it learns from one, which says little about how it would do on a
third. Knobs (sampled): width multiplier, input resolution, blocks per stage, expansion factor,
depthwise kernel size; each configuration in float32, dynamic-range int8 and full int8.

Skeleton: stem conv3x3/2 (32w) + BN + ReLU6; stages (expansion, channels, blocks, stride) =
(1, 16, 1, 1), (t, 24, d, 2), (t, 32, d, 2), (t, 64, d, 2), (t, 96, d, 1); each block is
[conv1x1 expand + BN + ReLU6] + dwconv kxk + BN + ReLU6 + conv1x1 project + BN, with the
residual add when stride is 1 and channels match; head conv1x1 (max(320w, 128)) + BN + ReLU6,
global average pooling, a 10-way classifier.
"""

from __future__ import annotations

from pathlib import Path

from harness.zoo.synthetic import QUANTIZATIONS, build_family, classifier, image_input, round_channels, sample_distinct

FAMILY = "mbv2"
WIDTHS = (0.35, 0.5, 0.75, 1.0)
RESOLUTIONS = (32, 48, 64, 96)
BLOCKS = (1, 2, 3)
EXPANSIONS = (3, 6)
KERNELS = (3, 5)
MAX_MACS = 40e6   # a few ms a run on one core of a small CPU


def stem_channels(cfg: dict) -> int:
    return round_channels(32 * cfg["width"])


def head_channels(cfg: dict) -> int:
    return max(round_channels(320 * cfg["width"]), 128)


def stages(cfg: dict) -> list[tuple[int, int, int, int]]:
    t, d, w = cfg["expansion"], cfg["blocks"], cfg["width"]
    return [(e, round_channels(c * w), n, s) for e, c, n, s in
            ((1, 16, 1, 1), (t, 24, d, 2), (t, 32, d, 2), (t, 64, d, 2), (t, 96, d, 1))]


def macs_of(cfg: dict) -> float:
    """Multiply-accumulates of the network (convolutions and the classifier), for sampling."""
    h = cfg["resolution"] // 2
    c = stem_channels(cfg)
    k = cfg["kernel"]
    total = (cfg["resolution"] // 2) ** 2 * 9 * 3 * c
    for t, cout, n, s in stages(cfg):
        for b in range(n):
            stride = s if b == 0 else 1
            e = c * t
            if t != 1:
                total += h * h * c * e
            h = -(-h // stride)
            total += h * h * k * k * e + h * h * e * cout
            c = cout
    head = head_channels(cfg)
    return float(total + h * h * c * head + head * 10)


def config_id(cfg: dict) -> str:
    return (f"w{int(cfg['width'] * 100):03d}-r{cfg['resolution']}-d{cfg['blocks']}-t{cfg['expansion']}"
            f"-k{cfg['kernel']}")


def sample_configs(n: int, seed: int = 0, max_macs: float = MAX_MACS, min_macs: float = 0.0) -> list[dict]:
    """``n`` distinct configurations under :data:`MAX_MACS`, reproducible for a seed."""
    return sample_distinct(n, seed, lambda rng: {
        "width": float(rng.choice(WIDTHS)), "resolution": int(rng.choice(RESOLUTIONS)),
        "blocks": int(rng.choice(BLOCKS)), "expansion": int(rng.choice(EXPANSIONS)),
        "kernel": int(rng.choice(KERNELS))}, config_id, macs_of, max_macs, min_macs)


def keras_model(cfg: dict, seed: int = 0):
    from tensorflow import keras
    L = keras.layers

    def cbr(x, c, k, s=1, act=True):
        x = L.Conv2D(c, k, s, "same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        return L.ReLU(6.0)(x) if act else x

    inp = image_input(cfg["resolution"], seed)
    x = cbr(inp, stem_channels(cfg), 3, 2)
    for t, cout, n, s in stages(cfg):
        for b in range(n):
            stride = s if b == 0 else 1
            cin = x.shape[-1]
            h = cbr(x, cin * t, 1) if t != 1 else x
            h = L.DepthwiseConv2D(cfg["kernel"], stride, "same", use_bias=False)(h)
            h = L.ReLU(6.0)(L.BatchNormalization()(h))
            h = cbr(h, cout, 1, act=False)
            x = L.Add()([x, h]) if stride == 1 and cin == cout else h
    return classifier(inp, cbr(x, head_channels(cfg), 1), seed)


def build(out: Path, n: int = 20, seed: int = 0, quantizations=QUANTIZATIONS, log=print,
          max_macs: float = MAX_MACS, min_macs: float = 0.0) -> dict:
    return build_family(out, FAMILY, "MobileNetV2-style inverted-residual networks, random weights",
                        sample_configs(n, seed, max_macs, min_macs), config_id, keras_model, "mb", seed, quantizations, log=log)
