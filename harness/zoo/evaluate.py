"""Reproduce a candidate's accuracy with a plain TFLite interpreter (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def digits_pixels(images8x8: np.ndarray, res: int) -> np.ndarray:
    """8x8 digit images (0..16) -> float32 NHWC at ``res`` by integer pixel repetition, in [0,1]."""
    f = res // 8
    x = np.repeat(np.repeat(images8x8.astype(np.float32), f, axis=1), f, axis=2) / 16.0
    return x[..., None]


def digits_preprocessing(res: int, inp) -> dict:
    pre = {
        "layout": "NHWC", "source": "sklearn.datasets.load_digits().images (8x8, values 0..16)",
        "resize": {"method": "repeat each pixel (nearest, integer factor)", "factor": res // 8, "size": [res, res]},
        "scale": {"divide_by": 16.0}, "channels": 1,
    }
    if inp.dtype in ("int8", "uint8"):
        pre["quantize"] = {"dtype": inp.dtype, "scale": inp.scale, "zero_point": inp.zero_point,
                           "rule": "round(x / scale) + zero_point, clipped to the dtype"}
    return pre


def apply_preprocessing(images8x8: np.ndarray, pre: dict) -> np.ndarray:
    x = digits_pixels(images8x8, pre["resize"]["size"][0])
    q = pre.get("quantize")
    if q:
        info = np.iinfo(q["dtype"])
        x = np.clip(np.round(x / q["scale"]) + q["zero_point"], info.min, info.max).astype(q["dtype"])
    return x


def accuracy(model_path: str | Path, pre: dict, indices) -> float:
    """Top-1 accuracy of ``model_path`` on ``load_digits()[indices]``, one image at a time."""
    from sklearn.datasets import load_digits

    from harness.agent import load_runtime

    rt = load_runtime()
    d = load_digits()
    idx = np.asarray(indices)
    x = apply_preprocessing(d.images[idx], pre)
    interp = rt.Interpreter(model_path=str(model_path), num_threads=1)
    interp.allocate_tensors()
    i_in = interp.get_input_details()[0]["index"]
    i_out = interp.get_output_details()[0]["index"]
    correct = 0
    for k in range(len(idx)):
        interp.set_tensor(i_in, x[k:k + 1])
        interp.invoke()
        correct += int(np.argmax(interp.get_tensor(i_out)[0]) == d.target[idx[k]])
    return correct / len(idx)
