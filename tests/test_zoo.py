"""The bundled zoo: honest metadata, a real trade-off, reproducible accuracy; graph reading; import."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from harness.errors import BadInput
from harness.zoo.__main__ import main as zoo_main
from harness.zoo.evaluate import accuracy
from harness.zoo.graph import model_dtype_class, read_graph, reference_class, sha256_file, xnnpack_partitions
from harness.zoo.manifest import BUNDLED, load_manifest


@pytest.fixture(scope="module")
def bundled():
    return load_manifest(BUNDLED)


def test_bundled_zoo_is_honest(bundled):
    doc, cands = bundled
    assert len(cands) >= 24
    assert {c.knobs["quantization"] for c in cands} == {"float32", "float16", "dynamic-int8", "int8"}
    assert sum(c.path.stat().st_size for c in cands) < 5 * 2**20
    macs = [c.macs for c in cands]
    assert max(macs) >= 10 * min(macs)
    assert len({round(c.accuracy, 3) for c in cands}) >= 5  # accuracies differ across the family
    split = doc["task"]["split"]
    assert len(split["indices"]) == 450 and split["seed"] == 0
    for c in cands:
        assert sha256_file(c.path) == c.sha256 == read_graph(c.path).sha256
        g = read_graph(c.path)
        assert (g.macs, g.params, g.file_bytes) == (c.macs, c.params, c.file_bytes)
        assert list(g.inputs[0].shape) == c.entry["input"]["shape"]
        assert g.inputs[0].shape[1] == c.knobs["resolution"]
        t = c.entry["training"]
        assert t["fine_tuned"] == (c.knobs["width"] != 1.0 or c.knobs["blocks_removed"] != 0)
        if c.knobs["quantization"] == "int8":
            q = c.entry["preprocessing"]["quantize"]
            assert g.inputs[0].dtype == "int8" and q["scale"] == g.inputs[0].scale


def test_held_out_split_is_disjoint_from_training(bundled):
    from harness.zoo.digits import split_indices
    doc, _ = bundled
    tr, te = split_indices(doc["task"]["split"]["seed"])
    assert list(te) == doc["task"]["split"]["indices"] and not set(tr) & set(te)


def test_bundled_accuracies_reproduce(bundled):
    """A plain TFLite interpreter on the stated split gives the stated accuracy (a few; bench/ checks all)."""
    doc, cands = bundled
    idx = doc["task"]["split"]["indices"]
    by_cost = sorted(cands, key=lambda c: c.macs)
    for c in [by_cost[0], by_cost[len(by_cost) // 2], by_cost[-1]] + [x for x in cands if x.knobs["quantization"] == "int8"][:1]:
        assert accuracy(c.path, c.entry["preprocessing"], idx) == pytest.approx(c.accuracy, abs=1e-6), c.id


def test_graph_reader_ops_and_macs(bundled):
    _, cands = bundled
    c = max(cands, key=lambda c: c.macs)
    g = read_graph(c.path)
    hist = g.op_histogram
    assert hist.get("CONV_2D", 0) >= 5 and hist.get("DEPTHWISE_CONV_2D", 0) >= 5 and hist.get("FULLY_CONNECTED") == 1
    conv = next(op for op in g.ops if op.op == "CONV_2D")
    assert conv.kernel == (3, 3) and conv.stride == (2, 2)  # the stem
    # the stem's MACs by hand: out HxW x Cout x 3x3 x Cin(1)
    h = c.knobs["resolution"] // 2
    assert conv.macs == h * h * conv.outputs[0].shape[-1] * 9


def test_model_dtype_class_reads_how_a_model_computes(bundled):
    """Read from the graph, not the candidate's name: float32 and float16 models compute in
    float32 (float16 weights are dequantized at load), full int8 on int8 activations, and a
    dynamic-range int8 model in whatever carries most of its MACs: the converter leaves small
    weight tensors float, so the narrowest digits CNN has no int8 weights at all."""
    _, cands = bundled
    got = {c.id: model_dtype_class(read_graph(c.path)) for c in cands}
    want = {"float32": "float32", "float16": "float32", "int8": "int8"}
    assert all(got[c.id] == want[c.knobs["quantization"]] for c in cands if c.knobs["quantization"] in want)
    assert got["dc-w100-d0-r64-dynamic-int8"] == got["dc-w075-d0-r64-dynamic-int8"] == "hybrid"
    assert got["dc-w025-d2-r32-dynamic-int8"] == "float32"


def test_xnnpack_partitions_read_from_the_graph_match_the_runtime(bundled):
    """The delegate's pieces predicted from the graph alone equal what the installed runtime
    reports after loading each bundled model: one for float32, float16 and int8 models, several
    for the dynamic-range int8 ones whose int8-weight depthwise convolutions XNNPACK leaves out."""
    from harness import agent
    rt = agent.load_runtime()
    _, cands = bundled
    got, want = {}, {}
    for c in cands:
        it = rt.Interpreter(model_path=str(c.path), num_threads=1)
        it.allocate_tensors()
        got[c.id], want[c.id] = xnnpack_partitions(read_graph(c.path)), agent._delegate_partitions(it)
    assert got == want
    assert {got[c.id] for c in cands if c.knobs["quantization"] != "dynamic-int8"} == {1}
    assert got["dc-w100-d0-r64-dynamic-int8"] > 1


def test_reference_class_splits_dynamic_range_models_by_delegate_coverage(bundled):
    """A dynamic-range int8 model that XNNPACK runs in pieces (its int8-weight depthwise
    convolutions on TFLite's own float kernels) is ``hybrid-split``; the same model without
    those operators runs whole in the delegate and is ``hybrid``. Other classes as
    model_dtype_class."""
    import dataclasses
    _, cands = bundled
    by_id = {c.id: c for c in cands}
    g = read_graph(by_id["dc-w100-d0-r64-dynamic-int8"].path)
    assert reference_class(g) == "hybrid-split"
    whole = dataclasses.replace(g, ops=tuple(op for op in g.ops if op.op != "DEPTHWISE_CONV_2D"))
    assert xnnpack_partitions(whole) == 1 and reference_class(whole) == "hybrid"
    assert reference_class(read_graph(by_id["dc-w100-d0-r64-float16"].path)) == "float32"
    assert reference_class(read_graph(by_id["dc-w100-d0-r64-int8"].path)) == "int8"


def test_zoo_inspect_says_what_xnnpack_leaves_out_and_survives_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"GIF89a" + bytes(100))
    split, whole = (BUNDLED / f"dc-w100-d0-r64-{q}.tflite" for q in ("dynamic-int8", "int8"))
    assert zoo_main(["inspect", str(split), str(bad), str(whole)]) == 2
    out, err = capsys.readouterr()
    lines = out.strip().split("\n")
    assert len(lines) == 2
    assert lines[0].startswith(str(split)) and "computes in dynamic-range int8" in lines[0]
    assert f"XNNPACK runs {xnnpack_partitions(read_graph(split))} pieces, leaves DEPTHWISE_CONV_2D (hybrid) x" in lines[0]
    assert lines[0].endswith("pairs it with dc-w100-d0-r64-float32 (with dc-w025-d2-r32-int8 in a job where it "
                             "runs under 20 us)")
    assert "computes in int8; XNNPACK runs it whole" in lines[1] and "pairs it with dc-w100-d0-r64-int8 (" in lines[1]
    assert err.strip() == f"error: {bad}: not a TFLite flatbuffer (no TFL3 identifier)"


@pytest.mark.parametrize("data, message", [
    (b"", "not a TFLite flatbuffer"),
    (b"GIF89a" + bytes(100), "not a TFLite flatbuffer"),
    (b"\x10\x00\x00\x00TFL3" + bytes(range(256)) * 2, "corrupt TFLite flatbuffer"),
])
def test_graph_reader_rejects_bad_files(tmp_path, data, message):
    p = tmp_path / "m.tflite"
    p.write_bytes(data)
    with pytest.raises(BadInput, match=message) as e:
        read_graph(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_import_skips_corrupt_files_with_one_line_each(bundled, tmp_path, capsys):
    _, cands = bundled
    d = tmp_path / "mine"
    d.mkdir()
    for c in cands[:3]:
        shutil.copyfile(c.path, d / c.path.name)
    (d / "broken.tflite").write_bytes(b"\x10\x00\x00\x00TFL3" + bytes(range(256)))
    (d / "notes.tflite").write_text("hello")
    (d / "acc.csv").write_text("file,accuracy\n" + f"{cands[0].path.name},0.5\n")
    assert zoo_main(["import", str(d), "--accuracy", str(d / "acc.csv")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    skipped = [line for line in err if line.startswith("skipped")]
    assert len(skipped) == 2 and any("broken.tflite" in x for x in skipped) and any("notes.tflite" in x for x in skipped)
    assert any("2 candidate(s) without accuracy" in line for line in err)
    doc, imported = load_manifest(d)
    assert sorted(c.id for c in imported) == sorted(c.id for c in cands[:3])
    by_id = {c.id: c for c in imported}
    assert by_id[cands[0].id].accuracy == 0.5 and by_id[cands[1].id].accuracy is None
    assert by_id[cands[0].id].macs == cands[0].macs and doc["family"] == "mine"


def test_manifest_errors_name_the_file(tmp_path):
    (tmp_path / "manifest.json").write_text('{"schema_version": 1, "candidates": [{"id": "a"}]}')
    with pytest.raises(BadInput, match=r"manifest.json: candidates\[0\]\.file: missing"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"schema_version": 1,\n "candidates": [}')
    with pytest.raises(BadInput, match=r"manifest.json:2:\d+: invalid JSON"):
        load_manifest(tmp_path)


def test_preprocessing_matches_the_manifest_rule(bundled):
    from sklearn.datasets import load_digits

    from harness.zoo.evaluate import apply_preprocessing
    _, cands = bundled
    c = next(c for c in cands if c.knobs["quantization"] == "int8")
    img = load_digits().images[:1]
    x = apply_preprocessing(img, c.entry["preprocessing"])
    f = c.knobs["resolution"] // 8
    q = c.entry["preprocessing"]["quantize"]
    expect = np.clip(np.round(img[0, 0, 0] / 16.0 / q["scale"]) + q["zero_point"], -128, 127)
    assert x.shape == (1, c.knobs["resolution"], c.knobs["resolution"], 1) and x.dtype == np.int8
    assert (x[0, :f, :f, 0] == expect).all()
    json.dumps(c.entry)  # the entry is plain JSON


def test_kernel_configs_are_distinct_reproducible_and_bounded():
    from harness.zoo.kernels import KIND_WEIGHTS, MAX_MACS, config_id, macs_of, sample_configs
    a, b = sample_configs(120, seed=5), sample_configs(120, seed=5)
    assert a == b and a != sample_configs(120, seed=6)
    assert len({config_id(c) for c in a}) == 120
    assert {c["kind"] for c in a} == set(KIND_WEIGHTS)
    assert max(macs_of(c) for c in a) <= MAX_MACS


@pytest.mark.slow
def test_kernel_family_builds_one_kernel_per_model(tmp_path):
    """Each candidate is one operator of the sampled kind, at the sampled MACs, in the dtype its
    quantization says (read back from the .tflite, not from the builder's bookkeeping)."""
    pytest.importorskip("tensorflow", reason="building needs the zoo extra (.ci/run installs it)")
    from harness.zoo.kernels import build, macs_of
    from predictors.features import KINDS, dtype_class
    build(tmp_path, n=4, seed=11, log=lambda *_: None)
    _, cands = load_manifest(tmp_path)
    assert len({c.knobs["kind"] for c in cands}) >= 2 and len({c.sha256 for c in cands}) == len(cands)
    for c in cands:
        g = read_graph(c.path)
        assert len(g.ops) == 1, (c.id, g.op_histogram)
        op = g.ops[0]
        assert KINDS.get(op.op) == c.knobs["kind"], (c.id, op.op)
        if c.knobs["kind"] in ("conv", "dwconv", "fc"):
            assert g.macs == macs_of(c.knobs), c.id
        want = {"float32": "float32", "int8": "int8", "dynamic-int8": "hybrid"}[c.knobs["quantization"]]
        if c.knobs["kind"] != "dwconv" or want != "hybrid":   # small depthwise weights may stay float
            assert dtype_class(op) == want, (c.id, dtype_class(op))


def test_mbv2_configs_are_distinct_reproducible_and_bounded():
    from harness.zoo.mbv2 import MAX_MACS, config_id, macs_of, sample_configs
    a = sample_configs(30, seed=2)
    assert a == sample_configs(30, seed=2) and a != sample_configs(30, seed=3)
    assert len({config_id(c) for c in a}) == 30
    assert max(macs_of(c) for c in a) <= MAX_MACS
    assert {c["kernel"] for c in a} == {3, 5} and {c["blocks"] for c in a} == {1, 2, 3}


@pytest.mark.slow
def test_mbv2_family_builds_inverted_residual_networks(tmp_path):
    """Read back from the .tflite: the MACs the sampler counted, one depthwise convolution per
    block, a residual ADD wherever a block keeps its stride and width, and the quantization's
    dtypes (int8 input for full int8, int8 weights with float activations for dynamic-range)."""
    pytest.importorskip("tensorflow", reason="building needs the zoo extra (.ci/run installs it)")
    from harness.zoo.mbv2 import build, macs_of, stages, stem_channels
    from predictors.features import dtype_class
    build(tmp_path, n=1, seed=4, log=lambda *_: None)
    man, cands = load_manifest(tmp_path)
    assert man["family"] == "mbv2" and [c.knobs["quantization"] for c in cands] == ["float32", "dynamic-int8", "int8"]
    cfg = {k: v for k, v in cands[0].knobs.items() if k != "quantization"}
    blocks = [(t, c, s if b == 0 else 1) for t, c, n, s in stages(cfg) for b in range(n)]
    residual = sum(s == 1 and c == (blocks[i - 1][1] if i else stem_channels(cfg)) for i, (_, c, s) in enumerate(blocks))
    for cand in cands:
        g = read_graph(cand.path)
        assert g.macs == macs_of(cfg), cand.id
        assert g.op_histogram["DEPTHWISE_CONV_2D"] == len(blocks), (cand.id, g.op_histogram)
        assert g.op_histogram.get("ADD", 0) == residual, (cand.id, g.op_histogram)
        convs = [dtype_class(op) for op in g.ops if op.op == "CONV_2D"]
        want = {"float32": "float32", "int8": "int8", "dynamic-int8": "hybrid"}[cand.knobs["quantization"]]
        assert want in convs, (cand.id, convs)
        assert (g.inputs[0].dtype == "int8") == (want == "int8")


def test_resnet_configs_are_distinct_reproducible_and_bounded():
    from harness.zoo.resnet import MAX_MACS, config_id, macs_of, sample_configs
    a = sample_configs(30, seed=2)
    assert a == sample_configs(30, seed=2) and a != sample_configs(30, seed=3)
    assert len({config_id(c) for c in a}) == 30 and max(macs_of(c) for c in a) <= MAX_MACS
    assert {c["pool"] for c in a} == {True, False}


@pytest.mark.parametrize("family", ["mbv2", "resnet", "mnv1", "squeezenet"])
def test_network_configs_keep_to_the_macs_asked_for(family):
    """--min-macs / --max-macs: a family sampled bigger than its default bound (to span the
    networks a predictor will be asked about), every configuration within the bounds."""
    from importlib import import_module
    mod = import_module(f"harness.zoo.{family}")
    lo, hi = mod.MAX_MACS, 4 * mod.MAX_MACS
    big = mod.sample_configs(10, 1, hi, lo)
    assert big and all(lo <= mod.macs_of(c) <= hi for c in big)
    assert mod.sample_configs(10, 1) == mod.sample_configs(10, 1, mod.MAX_MACS, 0.0)   # defaults as before


def test_zoo_build_refuses_bad_macs_bounds_before_building(tmp_path, capsys):
    out = tmp_path / "z"
    assert zoo_main(["build", "--family", "nb201", "--max-macs", "1e6", "--out", str(out)]) == 2
    assert "bound the random-weight network families" in capsys.readouterr().err
    assert zoo_main(["build", "--family", "resnet", "--min-macs", "2e6", "--max-macs", "1e6", "--out", str(out)]) == 2
    assert "--min-macs 2e+06 is above --max-macs 1e+06" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_resnet_family_builds_basic_block_networks(tmp_path):
    """Read back from the .tflite: the sampler's MACs, two 3x3 convolutions and one ADD per
    block, a 1x1 shortcut convolution where a stage halves the resolution, max pooling only
    when the configuration asks for it."""
    pytest.importorskip("tensorflow", reason="building needs the zoo extra (.ci/run installs it)")
    from harness.zoo.resnet import build, keras_model, macs_of, sample_configs
    from harness.zoo.synthetic import convert
    cfgs = sample_configs(2, seed=1)
    build(tmp_path, n=1, seed=1, quantizations=("float32", "int8"), log=lambda *_: None)
    _, cands = load_manifest(tmp_path)
    other = {**cfgs[0], "pool": not cfgs[0]["pool"], "width": 8, "resolution": 32}
    (tmp_path / "other.tflite").write_bytes(convert(keras_model(other), "float32"))
    for path, cfg in [(c.path, cfgs[0]) for c in cands] + [(tmp_path / "other.tflite", other)]:
        g = read_graph(path)
        h = g.op_histogram
        assert g.macs == macs_of(cfg), path.name
        assert h["CONV_2D"] == 1 + 6 * cfg["blocks"] + 2 and h["ADD"] == 3 * cfg["blocks"], (path.name, h)
        assert h.get("MAX_POOL_2D", 0) == int(cfg["pool"]), (path.name, h)


def test_mnv1_configs_are_distinct_reproducible_and_bounded():
    from harness.zoo.mnv1 import MAX_MACS, blocks, config_id, macs_of, sample_configs
    a = sample_configs(30, seed=2)
    assert a == sample_configs(30, seed=2) and a != sample_configs(30, seed=3)
    assert len({config_id(c) for c in a}) == 30 and max(macs_of(c) for c in a) <= MAX_MACS
    assert {c["blocks"] for c in a} == {1, 3, 5} and {c["kernel"] for c in a} == {3, 5}
    # the original MobileNetV1 at width 1: 13 blocks, 1024 channels at the end
    assert len(blocks({"width": 1.0, "blocks": 5})) == 13 and blocks({"width": 1.0, "blocks": 5})[-1] == (1024, 1)


@pytest.mark.slow
def test_mnv1_family_builds_depthwise_separable_networks(tmp_path):
    """Read back from the .tflite: the sampler's MACs, one depthwise and one pointwise
    convolution per block at the kernel size asked for, no residual ADD."""
    pytest.importorskip("tensorflow", reason="building needs the zoo extra (.ci/run installs it)")
    from harness.zoo.mnv1 import blocks, build, macs_of
    build(tmp_path, n=1, seed=5, quantizations=("float32", "int8"), log=lambda *_: None)
    man, cands = load_manifest(tmp_path)
    assert man["family"] == "mnv1" and [c.knobs["quantization"] for c in cands] == ["float32", "int8"]
    cfg = {k: v for k, v in cands[0].knobs.items() if k != "quantization"}
    for cand in cands:
        g = read_graph(cand.path)
        h = g.op_histogram
        assert g.macs == macs_of(cfg), cand.id
        assert h["DEPTHWISE_CONV_2D"] == len(blocks(cfg)) and h["CONV_2D"] == 1 + len(blocks(cfg)), (cand.id, h)
        assert "ADD" not in h, (cand.id, h)
        assert {op.kernel for op in g.ops if op.op == "DEPTHWISE_CONV_2D"} == {(cfg["kernel"],) * 2}
        assert (g.inputs[0].dtype == "int8") == (cand.knobs["quantization"] == "int8")


def test_squeezenet_configs_are_distinct_reproducible_and_bounded():
    from harness.zoo.squeezenet import MAX_MACS, config_id, fires, macs_of, sample_configs
    a = sample_configs(30, seed=2)
    assert a == sample_configs(30, seed=2) and a != sample_configs(30, seed=3)
    assert len({config_id(c) for c in a}) == 30 and max(macs_of(c) for c in a) <= MAX_MACS
    # width 1, ratio 0.125: SqueezeNet 1.1's fire2-5 and fire8-9 (squeeze 16/32/64, expand 64/128/256)
    assert fires({"width": 1.0, "fires": 2, "squeeze": 0.125}) == [(16, 64)] * 2 + [(32, 128)] * 2 + [(64, 256)] * 2


@pytest.mark.slow
def test_squeezenet_family_builds_fire_modules(tmp_path):
    """Read back from the .tflite: the sampler's MACs, three convolutions and one concatenation
    per fire module, a max pool before each stage."""
    pytest.importorskip("tensorflow", reason="building needs the zoo extra (.ci/run installs it)")
    from harness.zoo.squeezenet import build, fires, macs_of
    build(tmp_path, n=1, seed=3, quantizations=("float32", "int8"), log=lambda *_: None)
    man, cands = load_manifest(tmp_path)
    assert man["family"] == "squeezenet" and len(cands) == 2
    cfg = {k: v for k, v in cands[0].knobs.items() if k != "quantization"}
    for cand in cands:
        g = read_graph(cand.path)
        h = g.op_histogram
        assert g.macs == macs_of(cfg), cand.id
        n = len(fires(cfg))
        assert h["CONCATENATION"] == n and h["CONV_2D"] == 3 * n + 2 and h["MAX_POOL_2D"] == 3, (cand.id, h)


def test_every_operator_of_a_bundled_network_has_a_kernel_config():
    from harness.zoo.kernels import config_of_op, macs_of
    g = read_graph(BUNDLED / "dc-w050-d2-r48-int8.tflite")
    cfgs = [config_of_op(op) for op in g.ops]
    assert None not in cfgs, [op.op for op, c in zip(g.ops, cfgs) if c is None]
    assert {c["kind"] for c in cfgs} == {"conv", "dwconv", "add", "pool", "fc"}
    for op, c in zip(g.ops, cfgs):
        if c["kind"] in ("conv", "dwconv", "fc"):
            assert macs_of(c) == op.macs, (op.op, c)
        if c["kind"] == "pool":
            assert c["pool"] == "global"   # the network's MEAN


def test_kernels_like_networks_are_their_distinct_operators_in_their_dtypes():
    """--like: one configuration per distinct operator the networks run, in the conversion that
    computes it as the network does; the same architecture in float16 adds nothing (its weights
    are dequantized when the interpreter is prepared), in dynamic-range int8 only the layers with
    int8 weights are new."""
    from harness.zoo.kernels import config_id, configs_like
    net = "dc-w050-d2-r48-{}.tflite"
    f32 = configs_like([BUNDLED / net.format("float32")])
    assert f32 and {q for _, q in f32} == {"float32"} and "relu" not in {c["kind"] for c, _ in f32}
    assert len({config_id(c) for c, _ in f32}) == len(f32)
    assert configs_like([BUNDLED / net.format(q) for q in ("float32", "float16")]) == f32
    hyb = configs_like([BUNDLED / net.format("dynamic-int8")])
    assert {c["kind"] for c, q in hyb if q == "dynamic-int8"} <= {"conv", "dwconv", "fc"}
    assert {c["kind"] for c, q in hyb if q == "float32"} >= {"add", "pool"}
    both = configs_like([BUNDLED / net.format(q) for q in ("float32", "dynamic-int8", "int8")])
    assert len(both) == len(f32) + sum(q == "dynamic-int8" for _, q in hyb) + len(f32)


def test_zoo_build_like_refuses_bad_arguments_before_building(tmp_path, capsys):
    assert zoo_main(["build", "--family", "nb201", "--like", str(BUNDLED), "--out", str(tmp_path / "a")]) == 2
    assert "--like builds the kernels family" in capsys.readouterr().err
    assert zoo_main(["build", "--family", "kernels", "--like", str(BUNDLED), "--sample", "5", "--out", str(tmp_path / "a")]) == 2
    assert "no --sample or --limit" in capsys.readouterr().err
    assert zoo_main(["build", "--family", "kernels", "--like", str(tmp_path / "nope"), "--out", str(tmp_path / "b")]) == 2
    assert f"{tmp_path / 'nope'}: no such file or directory" in capsys.readouterr().err
    assert zoo_main(["build", "--family", "kernels", "--like", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert "no .tflite file in this directory" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


@pytest.mark.slow
def test_kernels_built_like_a_network_are_its_operators_alone(tmp_path):
    """Every operator a dynamic-range network runs (but its standalone ReLUs) has a candidate
    that is that operator alone: same type, kernel, stride, shapes and dtype class, read back
    from the files."""
    pytest.importorskip("tensorflow", reason="building needs the zoo extra (.ci/run installs it)")
    from tensorflow import keras

    from harness.zoo.graph import op_dtype_class, runs_at_inference
    from harness.zoo.kernels import build_like
    from harness.zoo.synthetic import convert
    L = keras.layers
    # and a float32 network with the operators only the other families have: a 5x5 depthwise
    # convolution (mbv2, mnv1) and a 3x3 max pool of stride 2 (squeezenet)
    x = keras.Input((16, 16, 8), batch_size=1)
    y = L.MaxPooling2D(3, 2)(L.DepthwiseConv2D(5, 1, "same")(x))
    other = tmp_path / "other.tflite"
    other.write_bytes(convert(keras.Model(x, y), "float32"))
    for i, net in enumerate((BUNDLED / "dc-w025-d2-r32-dynamic-int8.tflite", other)):
        build_like(tmp_path / f"k{i}", [net], log=lambda *_: None)
        _, cands = load_manifest(tmp_path / f"k{i}")

        def sig(op):
            return op.op, op.kernel, op.stride, op.inputs[0].shape, op.outputs[0].shape, op_dtype_class(op)
        alone = []
        for c in cands:
            (op,) = read_graph(c.path).ops
            alone.append(sig(op))
        want = {sig(op) for op in read_graph(net).ops if runs_at_inference(op) and op.op != "RELU"}
        assert len(alone) == len(set(alone)) == len(want) and set(alone) == want, (net.name, alone, want)


@pytest.mark.slow
def test_kernels_built_like_a_network_with_pairs_are_its_consecutive_operators_together(tmp_path):
    """--pairs: besides each operator alone, every two operators that run one after the other,
    in that order, at their shapes and dtype classes, the second on the first's output where it is
    so in the network, and on either side of a boundary between XNNPACK and TFLite's kernels as
    the network has it (a dynamic-range depthwise convolution that XNNPACK leaves out)."""
    pytest.importorskip("tensorflow", reason="building needs the zoo extra (.ci/run installs it)")
    from tensorflow import keras

    from harness.zoo.graph import op_dtype_class, runs_at_inference, xnnpack_delegates
    from harness.zoo.kernels import build_like
    from harness.zoo.synthetic import convert
    L = keras.layers
    x = keras.Input((8, 8, 32), batch_size=1)
    y = L.Conv2D(32, 1)(L.DepthwiseConv2D(3, 1, "same")(L.Conv2D(128, 1)(x)))   # >= 1024 weights each: int8
    net = tmp_path / "net.tflite"
    net.write_bytes(convert(keras.Model(x, L.Add()([x, y])), "dynamic-int8"))
    ops = [op for op in read_graph(net).ops if runs_at_inference(op)]
    assert [xnnpack_delegates(op) for op in ops] == [True, False, True, True]    # two XNNPACK pieces

    def sig(op):
        return op.op, op.kernel, op.stride, op.inputs[0].shape, op.outputs[0].shape, op_dtype_class(op)
    build_like(tmp_path / "k", [net], log=lambda *_: None, pairs=True)
    _, cands = load_manifest(tmp_path / "k")
    singles, pairs = [], []
    for c in cands:
        g = [op for op in read_graph(c.path).ops if runs_at_inference(op)]
        if len(g) == 1:
            singles.append(sig(g[0]))
        else:
            pairs.append((tuple(map(sig, g)), g[0].outputs[0].name in {t.name for t in g[1].inputs},
                          tuple(map(xnnpack_delegates, g))))
    assert sorted(singles) == sorted(map(sig, ops))
    want = [((sig(a), sig(b)), True, (xnnpack_delegates(a), xnnpack_delegates(b))) for a, b in zip(ops, ops[1:])]
    assert sorted(pairs) == sorted(want)


@pytest.mark.slow
def test_int8_conversion_calibrates_each_input_of_a_model_by_name(tmp_path):
    """A pair whose second operator adds a new input to the first's output: the .tflite lists
    that input first, and int8 calibration fed the inputs in Keras's order (a 48-channel sample
    into an 8-channel input) failed; each sample now goes to its input by name."""
    pytest.importorskip("tensorflow", reason="building needs the zoo extra (.ci/run installs it)")
    from harness.zoo.kernels import keras_model
    from harness.zoo.synthetic import convert
    pair = {"kind": "pair", "chain": True, "a": {"kind": "conv", "hw": 8, "cin": 48, "cout": 8, "k": 1, "stride": 1},
            "b": {"kind": "add", "hw": 8, "cin": 8}}
    (tmp_path / "pair.tflite").write_bytes(convert(keras_model(pair), "int8"))
    g = read_graph(tmp_path / "pair.tflite")
    assert sorted(t.shape[-1] for t in g.inputs) == [8, 48] and g.inputs[0].shape[-1] == 8
    assert [op.op for op in g.ops if op.op in ("CONV_2D", "ADD")] == ["CONV_2D", "ADD"]
    assert {op.inputs[0].dtype for op in g.ops if op.op in ("CONV_2D", "ADD")} == {"int8"}


@pytest.mark.slow
def test_a_kernel_rebuilt_alone_has_the_network_operators_shapes(tmp_path):
    """bench/kernel_additivity.py measures a network's operators alone: each rebuilt kernel is one
    operator of the same type, shapes and dtype, read back from the .tflite it converts to."""
    pytest.importorskip("tensorflow", reason="building needs the zoo extra (.ci/run installs it)")
    from harness.zoo.kernels import config_of_op, keras_model
    from harness.zoo.synthetic import convert
    g = read_graph(BUNDLED / "dc-w050-d2-r48-int8.tflite")
    seen = set()
    for op in g.ops:
        c = config_of_op(op)
        if c["kind"] in seen:
            continue
        seen.add(c["kind"])
        p = tmp_path / f"{c['kind']}.tflite"
        p.write_bytes(convert(keras_model(c), "int8"))
        (k,) = read_graph(p).ops
        assert k.op == op.op and k.macs == op.macs, (op.op, k.op, c)
        assert k.inputs[0].shape == op.inputs[0].shape and k.outputs[0].shape == op.outputs[0].shape, c
        assert k.inputs[0].dtype == op.inputs[0].dtype == "int8"
    relu = tmp_path / "relu.tflite"
    relu.write_bytes(convert(keras_model({"kind": "relu", "hw": 4, "cin": 8}), "float32"))
    assert read_graph(relu).op_histogram == {"RELU": 1}


def test_import_into_a_built_zoo_merges_and_keeps_a_backup(bundled, tmp_path, capsys):
    """Issue 33: `zoo import` on a folder with a built zoo's manifest rewrote it (accuracy None,
    knobs empty, family renamed, no backup). Now it merges, backs up, and refuses accuracy rows
    for files that are not there."""
    doc, cands = bundled
    d = tmp_path / "built"
    d.mkdir()
    for c in cands[:3]:
        shutil.copyfile(c.path, d / c.path.name)
    mine = [e for e in doc["candidates"] if e["file"] in {c.path.name for c in cands[:3]}]
    (d / "manifest.json").write_text(json.dumps(dict(doc, candidates=mine)))
    before = (d / "manifest.json").read_text()
    assert zoo_main(["import", str(d)]) == 0
    _, after = load_manifest(d)
    old = {c.id: c for c in cands[:3]}
    for c in after:
        assert (c.accuracy, c.family, c.entry["knobs"]) == (old[c.id].accuracy, old[c.id].family, old[c.id].entry["knobs"])
    (bak,) = d.glob("manifest.json.bak-*")
    assert bak.read_text() == before
    shutil.copyfile(cands[3].path, d / cands[3].path.name)          # a new file joins
    assert zoo_main(["import", str(d)]) == 0
    _, after = load_manifest(d)
    assert len(after) == 4 and {c.id: c.accuracy for c in after}[cands[3].id] is None
    assert f"without accuracy (give --accuracy CSV with file,accuracy): {cands[3].id}" in capsys.readouterr().err
    (d / "acc.csv").write_text("file,accuracy\nghost.tflite,0.9\n")
    kept = (d / "manifest.json").read_text()
    assert zoo_main(["import", str(d), "--accuracy", str(d / "acc.csv")]) == 2
    assert "names files not in" in capsys.readouterr().err and (d / "manifest.json").read_text() == kept
    assert zoo_main(["import", str(d), "--force"]) == 0                # rebuilt from the graphs, backed up again
    _, forced = load_manifest(d)
    assert all(c.entry["knobs"] == {} for c in forced) and len(list(d.glob("manifest.json.bak-*"))) >= 2


@pytest.mark.parametrize("field, value, expect", [
    ("accuracy", "high", "candidates[0].accuracy: expected a number from 0 to 1 or null, got 'high'"),
    ("accuracy", 1.5, "candidates[0].accuracy: expected a number from 0 to 1"),
    ("macs", "lots", "candidates[0].macs: expected a whole number >= 0, got 'lots'"),
    ("params", -1, "candidates[0].params: expected a whole number >= 0"),
    ("knobs", [1], "candidates[0].knobs: expected a mapping"),
])
def test_manifest_values_checked_before_any_job(bundled, tmp_path, capsys, field, value, expect):
    """Issue 33: `accuracy: "high"` let a campaign run, then its export, report and resume failed;
    `macs: "lots"` was a traceback. Both are one line and exit 2 before anything runs."""
    from harness.collect import main as collect
    doc, cands = bundled
    d = tmp_path / "zoo"
    d.mkdir()
    shutil.copyfile(cands[0].path, d / cands[0].path.name)
    entry = dict(next(e for e in doc["candidates"] if e["file"] == cands[0].path.name), **{field: value})
    (d / "manifest.json").write_text(json.dumps(dict(doc, candidates=[entry])))
    out = tmp_path / "runs"
    assert collect(["--zoo", str(d), "--out", str(out), "--runs", "5", "--no-report", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_a_digits_build_is_reproducible_and_quiet(tmp_path, capsys):
    """The same configuration and seed, built twice: the same file and accuracy (op determinism,
    oneDNN off); the terminal gets the builder's lines, TensorFlow's go to OUT/build.log."""
    pytest.importorskip("tensorflow", reason="building needs the zoo extra (.ci/run installs it)")
    import subprocess
    import sys
    docs = []
    for name in ("a", "b"):
        p = subprocess.run([sys.executable, "-m", "harness.zoo", "build", "--family", "digits-compressed", "--only",
                            "dc-w025-d2-r32-int8", "--out", str(tmp_path / name)], capture_output=True, text=True,
                           timeout=1200)
        assert p.returncode == 0, p.stderr[-2000:]
        assert len((p.stdout + p.stderr).splitlines()) < 10, p.stdout + p.stderr
        assert (tmp_path / name / "build.log").stat().st_size > 0
        docs.append(json.loads((tmp_path / name / "manifest.json").read_text()))
    (a,), (b,) = docs[0]["candidates"], docs[1]["candidates"]
    assert a["id"] == "dc-w025-d2-r32-int8" and a["sha256"] == b["sha256"] and a["accuracy"] == b["accuracy"]
    assert docs[0]["builder"]["op_determinism"] is True
