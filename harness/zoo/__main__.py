"""python -m harness.zoo build|import|inspect|splits|split ..."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from harness.errors import HarnessError

# random-weight network families: one module each, build(out, n, seed, ..., max_macs, min_macs)
NETWORK_FAMILIES = ("mbv2", "resnet", "mnv1", "squeezenet")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.zoo", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build a candidate family with TensorFlow (extra: zoo)")
    b.add_argument("--family", required=True,
                   choices=["digits-compressed", "nb201", "kernels", *NETWORK_FAMILIES],
                   help="digits-compressed: trained digit classifiers over width, depth, resolution and quantization "
                        "(accuracy measured); nb201: NAS-Bench-201 cells; kernels: single operators; the rest: "
                        "random-weight networks of that family")
    b.add_argument("--out", required=True, type=Path, help="folder for the .tflite files and manifest.json")
    b.add_argument("--limit", type=int, help="build only the first N configurations (default: all)")
    b.add_argument("--seed", type=int, default=0, help="seed of sampling, weights and training (default 0)")
    b.add_argument("--archs", type=Path, help="nb201: file of NAS-Bench-201 indices or cell strings, one a line")
    b.add_argument("--sample", type=int, help="nb201: this many random architectures; kernels: this many "
                   "kernel configurations (default 80); other random-weight families: network configurations (default 20); "
                   "each in every quantization")
    b.add_argument("--max-macs", type=float, metavar="N",
                   help=f"{', '.join(NETWORK_FAMILIES)}: sample configurations of at most N multiply-accumulates "
                   "(default 40e6, a few ms a run on one core of a small CPU; raise it to span bigger networks)")
    b.add_argument("--min-macs", type=float, metavar="N", help="... and of at least N (default 0)")
    b.add_argument("--table", type=Path, help="nb201: CSV with arch_index,arch columns, to resolve indices and sample "
                                              "cells (default: the NAS-Bench-201 table shipped in harness/zoo/data)")
    b.add_argument("--like", type=Path, action="append", default=[],
                   help="kernels: instead of sampled configurations, each distinct operator of these networks "
                   "(.tflite files or zoo dirs; repeatable), alone, at its shapes and dtype")
    b.add_argument("--only", action="append", metavar="ID",
                   help="digits-compressed: build only this configuration (e.g. dc-w050-d1-r48-int8; repeatable); "
                        "the base network is still trained first (default: the --limit spread)")
    b.add_argument("--verbose", action="store_true",
                   help="show TensorFlow's own output (default: it goes to OUT/build.log)")
    b.add_argument("--pairs", action="store_true",
                   help="with --like: also every two operators that run one after the other in a network, "
                   "together (what one costs after the other, and across XNNPACK's piece boundaries)")
    i = sub.add_parser("import", help="make a family from a directory of .tflite files")
    i.add_argument("dir", type=Path, help="folder of .tflite files; manifest.json is written (merged) there")
    i.add_argument("--accuracy", type=Path, help="CSV with file,accuracy columns")
    i.add_argument("--family", help="family name (default: the manifest's there, else the directory's name)")
    i.add_argument("--force", action="store_true",
                   help="rebuild the manifest from the graphs alone instead of merging with the one there (backed up)")
    n = sub.add_parser("inspect", help="what a .tflite computes in and how much of it XNNPACK runs, from the graph "
                       "alone (no runtime needed)")
    n.add_argument("models", nargs="+", type=Path, help=".tflite files")
    sp = sub.add_parser("splits", help="a model's split points (one tensor crosses there) with the bytes sent, from the "
                        "graph alone")
    sp.add_argument("model", type=Path, help="a .tflite file")
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st = sub.add_parser("split", help="build a model's front and back parts at a split point as .tflite files, checked "
                        "against the whole, with a manifest to measure all three with harness.collect (extra: zoo)")
    st.add_argument("model", type=Path, help="a .tflite file")
    st.add_argument("--after", type=int, required=True, metavar="K",
                    help="the front runs operators 0..K (a split point's after_op, from the splits command)")
    st.add_argument("--out", type=Path, required=True, help="folder for whole, front and back .tflite and manifest.json")
    args = ap.parse_args(argv)
    if args.cmd == "inspect":
        return inspect(args.models)
    if args.cmd in ("splits", "split"):
        from harness.cli import run
        return run(lambda: _splits(args))
    try:
        if args.cmd == "build":
            if args.like and args.family != "kernels":
                raise HarnessError("--like builds the kernels family (--family kernels)")
            if args.like and (args.sample or args.limit):
                raise HarnessError("--like builds every distinct operator of the networks named: no --sample or --limit")
            bounds = {k: v for k, v in (("max_macs", args.max_macs), ("min_macs", args.min_macs)) if v is not None}
            if bounds and args.family not in NETWORK_FAMILIES:
                raise HarnessError("--max-macs and --min-macs bound the random-weight network families "
                                   f"({', '.join(NETWORK_FAMILIES)})")
            if bounds.get("min_macs", 0) > bounds.get("max_macs", float("inf")):
                raise HarnessError(f"--min-macs {args.min_macs:g} is above --max-macs {args.max_macs:g}")
            if args.only and args.family != "digits-compressed":
                raise HarnessError("--only names digits-compressed configurations (--family digits-compressed)")
            if args.only:
                from harness.zoo.digits import parse_id
                for c in args.only:
                    parse_id(c)
            if args.pairs and not args.like:
                raise HarnessError("--pairs builds the operators of the networks named by --like, two at a time")
            like = like_models(args.like)   # named files checked before TensorFlow loads
            import importlib.util
            if importlib.util.find_spec("tensorflow") is None:
                raise HarnessError("building needs TensorFlow: pip install -e '.[zoo]'")
            # oneDNN's fused kernels order float sums by thread: off, so a seed gives the same zoo
            os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
            args.out.mkdir(parents=True, exist_ok=True)
            with tensorflow_output(args.out / "build.log", args.verbose) as log:
                m = _build(args, like, bounds, log)
            print(f"{len(m['candidates'])} candidates -> {args.out / 'manifest.json'}"
                  + ("" if args.verbose else f" (TensorFlow's output: {args.out / 'build.log'})"))
        else:
            from harness.zoo.importer import import_dir
            m, skipped = import_dir(args.dir, args.accuracy, args.family, args.force)
            for line in skipped:
                print(line, file=sys.stderr)
            n_skip = sum(line.startswith("skipped") for line in skipped)
            print(f"{len(m['candidates'])} candidates imported -> {args.dir / 'manifest.json'}"
                  + (f" ({n_skip} skipped)" if n_skip else ""))
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _build(args, like, bounds: dict, log) -> dict:
    if args.family == "digits-compressed":
        from harness.zoo.digits import build
        return build(args.out, args.limit, args.seed, log=log, only=args.only)
    if like:
        from harness.zoo.kernels import build_like
        return build_like(args.out, like, args.seed, pairs=args.pairs, log=log)
    if args.family in ("kernels", *NETWORK_FAMILIES):
        from importlib import import_module

        from harness.zoo.synthetic import QUANTIZATIONS
        build = import_module(f"harness.zoo.{args.family}").build
        # configurations; --limit counts candidates (up to 3 per configuration)
        n = args.sample or (80 if args.family == "kernels" else 20)
        return build(args.out, n if not args.limit else min(n, -(-args.limit // len(QUANTIZATIONS))), args.seed,
                     log=log, **bounds)
    from harness.zoo.nb201 import build_cli
    return build_cli(args, log=log)


@contextlib.contextmanager
def tensorflow_output(path: Path, verbose: bool):
    """TensorFlow, Keras and the converter print thousands of lines (C++ logs on fd 2, Keras's
    export on stdout): both file descriptors go to ``path`` while building, and the builder's
    own lines (the ``log`` yielded) to the terminal."""
    if verbose:
        yield print
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    term = os.fdopen(os.dup(1), "w", buffering=1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield lambda msg: print(msg, file=term, flush=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in saved:
            os.close(f)
        term.close()


def like_models(paths: list[Path]) -> list[Path]:
    """The .tflite files named, and those in the directories named (sorted)."""
    out = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("*.tflite"))
            if not found:
                raise HarnessError(f"{p}: no .tflite file in this directory")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise HarnessError(f"{p}: no such file or directory")
    return out


def _splits(args) -> int:
    from harness.zoo import split
    if args.cmd == "splits":
        sp = split.split_points(args.model)
        print(split.as_json(sp) if args.json else split.table(sp))
        return 0
    if args.out.resolve() == args.model.resolve().parent:
        raise HarnessError(f"--out {args.out}: give a folder of its own (the model's folder would be re-imported)")
    split.point(args.model, args.after)
    args.out.mkdir(parents=True, exist_ok=True)
    with tensorflow_output(args.out / "build.log", False):
        front, back = split.build_parts(args.model, args.after, args.out)
    err = split.check_parts(args.model, front, back)
    import re
    import shutil

    from harness.zoo.importer import import_dir
    from harness.zoo.manifest import write_manifest
    shutil.copyfile(args.model, args.out / args.model.name)
    m, _ = import_dir(args.out, None, "split")   # merged with the folder's manifest: earlier splits kept
    for c in m["candidates"]:   # every part in the folder (several splits can share one), named by its file
        hit = re.fullmatch(r"(.+)-(front|back)(\d+)", c["id"])
        c["knobs"] = ({"part": hit[2], "after_op": int(hit[3]), "of": hit[1]} if hit else {"part": "whole", "of": c["id"]})
    m["splits"] = [x for x in m.get("splits") or [] if x.get("front") != front.name] + [
        {"model": str(args.model), "after_op": args.after, "front": front.name, "back": back.name, "max_abs_diff": err}]
    write_manifest(args.out, m)
    print(f"{front.name} + {back.name}: back(front(x)) vs the whole model, max |diff| {err:.3g}; "
          f"measure all three: python -m harness.collect --zoo {args.out}")
    return 0


CLASS_NAMES = {"float32": "float32", "int8": "int8", "hybrid": "dynamic-range int8 (int8 weights, float activations)"}


def describe(path: Path) -> str:
    """One line: size, the class the model computes in, and the XNNPACK delegate's pieces (an
    estimate from the graph, :func:`harness.zoo.graph.xnnpack_partitions`) with the operators it
    leaves to TFLite's own kernels."""
    from collections import Counter

    from harness.collect import AUTO_REFERENCES, AUTO_SMALL_BELOW_MS, AUTO_SMALL_REFERENCE
    from harness.zoo.graph import (
        model_dtype_class,
        op_dtype_class,
        read_graph,
        reference_class,
        runs_at_inference,
        xnnpack_delegates,
        xnnpack_partitions,
    )
    g = read_graph(path)
    left = Counter(f"{op.op} ({op_dtype_class(op)})" for op in g.ops
                   if runs_at_inference(op) and not xnnpack_delegates(op))
    pieces = xnnpack_partitions(g)
    delegate = ("XNNPACK runs it whole" if pieces == 1 and not left else
                f"XNNPACK runs {pieces} piece{'s' * (pieces != 1)}, leaves "
                + ", ".join(f"{k} x{v}" for k, v in sorted(left.items())) + " to TFLite's kernels")
    ops = sum(map(runs_at_inference, g.ops))
    return (f"{path}: {g.macs / 1e6:.2f} MMACs, {g.params / 1e3:.1f} k params, {ops} ops at inference, computes in "
            f"{CLASS_NAMES[model_dtype_class(g)]}; {delegate} (estimated); collect --reference auto pairs it with "
            f"{AUTO_REFERENCES[reference_class(g)]} (with {AUTO_SMALL_REFERENCE} in a job where it runs under "
            f"{AUTO_SMALL_BELOW_MS * 1e3:g} us)")


def inspect(paths: list[Path]) -> int:
    """Print :func:`describe` for each model; a file that is not a readable .tflite gets one line
    on stderr and the rest are still described."""
    bad = 0
    for p in paths:
        try:
            print(describe(p))
        except HarnessError as e:
            print(f"error: {e}", file=sys.stderr)
            bad += 1
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
