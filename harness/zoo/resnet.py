"""Build the ``resnet`` family: small ResNet-style networks of basic blocks (random weights;
latency only). A fourth network family: 3x3 convolutions at widths and resolutions the other
families do not have, with max pooling, in float32, dynamic-range int8 and full int8.

Skeleton (He et al., CVPR 2016, CIFAR variant): stem conv3x3 (c) + BN + ReLU [+ maxpool 2x2
when ``pool``]; three stages of ``blocks`` basic blocks with c, 2c, 4c channels, the first block
of stages 2 and 3 with stride 2 and a conv1x1/2 shortcut; each block is conv3x3-BN-ReLU,
conv3x3-BN, add, ReLU; then global average pooling and a 10-way classifier.
"""

from __future__ import annotations

from pathlib import Path

from harness.zoo.synthetic import QUANTIZATIONS, build_family, classifier, image_input, sample_distinct

FAMILY = "resnet"
WIDTHS = (8, 12, 16, 24, 32)
RESOLUTIONS = (32, 48, 64)
BLOCKS = (1, 2, 3)
MAX_MACS = 40e6


def macs_of(cfg: dict) -> float:
    c, h = cfg["width"], cfg["resolution"]
    total = h * h * 27 * c
    if cfg["pool"]:
        h //= 2
    cin = c
    for stage in range(3):
        cout = c * 2 ** stage
        for b in range(cfg["blocks"]):
            s = 2 if stage and b == 0 else 1
            h2 = -(-h // s)
            total += h2 * h2 * 9 * cin * cout + h2 * h2 * 9 * cout * cout
            if s == 2:
                total += h2 * h2 * cin * cout
            h, cin = h2, cout
    return float(total + cin * 10)


def config_id(cfg: dict) -> str:
    return f"c{cfg['width']}-r{cfg['resolution']}-d{cfg['blocks']}" + ("-p" if cfg["pool"] else "")


def sample_configs(n: int, seed: int = 0, max_macs: float = MAX_MACS, min_macs: float = 0.0) -> list[dict]:
    return sample_distinct(n, seed, lambda rng: {
        "width": int(rng.choice(WIDTHS)), "resolution": int(rng.choice(RESOLUTIONS)),
        "blocks": int(rng.choice(BLOCKS)), "pool": bool(rng.integers(2))}, config_id, macs_of, max_macs, min_macs)


def keras_model(cfg: dict, seed: int = 0):
    from tensorflow import keras
    L = keras.layers
    inp = image_input(cfg["resolution"], seed)
    c = cfg["width"]
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(c, 3, 1, "same", use_bias=False)(inp)))
    if cfg["pool"]:
        x = L.MaxPooling2D(2, 2)(x)
    for stage in range(3):
        cout = c * 2 ** stage
        for b in range(cfg["blocks"]):
            s = 2 if stage and b == 0 else 1
            h = L.ReLU()(L.BatchNormalization()(L.Conv2D(cout, 3, s, "same", use_bias=False)(x)))
            h = L.BatchNormalization()(L.Conv2D(cout, 3, 1, "same", use_bias=False)(h))
            sc = L.BatchNormalization()(L.Conv2D(cout, 1, s, use_bias=False)(x)) if s == 2 else x
            x = L.ReLU()(L.Add()([sc, h]))
    return classifier(inp, x, seed)


def build(out: Path, n: int = 20, seed: int = 0, quantizations=QUANTIZATIONS, log=print,
          max_macs: float = MAX_MACS, min_macs: float = 0.0) -> dict:
    return build_family(out, FAMILY, "ResNet-style networks of basic blocks, random weights",
                        sample_configs(n, seed, max_macs, min_macs), config_id, keras_model, "rn", seed, quantizations, log=log)
