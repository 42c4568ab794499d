"""Build the ``squeezenet`` family: SqueezeNet-style networks (random weights; latency only).

A sixth network family, and the only one whose blocks concatenate: fire modules (Iandola et
al., 2016) squeeze with a 1x1 convolution, then expand through parallel 1x1 and 3x3
convolutions whose outputs are concatenated. Knobs (sampled): width multiplier, input
resolution, fire modules per stage, squeeze ratio; each in float32, dynamic-range int8 and full
int8.

Skeleton: stem conv3x3/2 (64w) + ReLU, max pool 3x3/2; three stages of ``fires`` fire modules
with expand channels 64w, 128w, 256w per branch (squeeze = ``squeeze`` x the two branches), max
pool 3x3/2 between stages; classifier conv1x1 to 10 channels + ReLU, global average pooling.
"""

from __future__ import annotations

from pathlib import Path

from harness.zoo.synthetic import QUANTIZATIONS, build_family, image_input, randomize_batchnorm, round_channels, sample_distinct

FAMILY = "squeezenet"
WIDTHS = (0.25, 0.5, 0.75, 1.0)
RESOLUTIONS = (32, 48, 64, 96)
FIRES = (1, 2)
SQUEEZE = (0.125, 0.25)
MAX_MACS = 40e6


def _pool(h: int) -> int:
    """Output size of max pooling 3x3, stride 2, valid padding."""
    return (h - 3) // 2 + 1


def fires(cfg: dict) -> list[tuple[int, int]]:
    """(squeeze channels, expand channels per branch) of each fire module, by stage."""
    out = []
    for e in (64, 128, 256):
        e = round_channels(e * cfg["width"])
        out += [(round_channels(2 * e * cfg["squeeze"]), e)] * cfg["fires"]
    return out


def macs_of(cfg: dict) -> float:
    h = -(-cfg["resolution"] // 2)
    c = round_channels(64 * cfg["width"])
    total = h * h * 27 * c
    h = _pool(h)
    for i, (s, e) in enumerate(fires(cfg)):
        if i and i % cfg["fires"] == 0:
            h = _pool(h)
        total += h * h * c * s + h * h * s * e + h * h * 9 * s * e
        c = 2 * e
    return float(total + h * h * c * 10)


def config_id(cfg: dict) -> str:
    return f"w{int(cfg['width'] * 100):03d}-r{cfg['resolution']}-f{cfg['fires']}-s{int(cfg['squeeze'] * 1000):03d}"


def sample_configs(n: int, seed: int = 0, max_macs: float = MAX_MACS, min_macs: float = 0.0) -> list[dict]:
    """``n`` distinct configurations under :data:`MAX_MACS`, reproducible for a seed."""
    return sample_distinct(n, seed, lambda rng: {
        "width": float(rng.choice(WIDTHS)), "resolution": int(rng.choice(RESOLUTIONS)),
        "fires": int(rng.choice(FIRES)), "squeeze": float(rng.choice(SQUEEZE))}, config_id, macs_of, max_macs, min_macs)


def keras_model(cfg: dict, seed: int = 0):
    from tensorflow import keras
    L = keras.layers
    inp = image_input(cfg["resolution"], seed)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(round_channels(64 * cfg["width"]), 3, 2, "same", use_bias=False)(inp)))
    x = L.MaxPooling2D(3, 2)(x)
    for i, (s, e) in enumerate(fires(cfg)):
        if i and i % cfg["fires"] == 0:
            x = L.MaxPooling2D(3, 2)(x)
        sq = L.ReLU()(L.BatchNormalization()(L.Conv2D(s, 1, use_bias=False)(x)))
        a = L.ReLU()(L.BatchNormalization()(L.Conv2D(e, 1, use_bias=False)(sq)))
        b = L.ReLU()(L.BatchNormalization()(L.Conv2D(e, 3, 1, "same", use_bias=False)(sq)))
        x = L.Concatenate()([a, b])
    x = L.ReLU()(L.Conv2D(10, 1)(x))
    x = L.GlobalAveragePooling2D()(x)
    return randomize_batchnorm(keras.Model(inp, x), seed)


def build(out: Path, n: int = 20, seed: int = 0, quantizations=QUANTIZATIONS, log=print,
          max_macs: float = MAX_MACS, min_macs: float = 0.0) -> dict:
    return build_family(out, FAMILY, "SqueezeNet-style networks of fire modules, random weights",
                        sample_configs(n, seed, max_macs, min_macs), config_id, keras_model, "sq", seed, quantizations, log=log)
