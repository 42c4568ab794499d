"""Re-measure every bundled candidate's accuracy with a plain TFLite interpreter.

    python bench/zoo_accuracy.py [ZOO_DIR]

Prints each candidate's stated and reproduced accuracy and the largest difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.agent import load_runtime  # noqa: E402
from harness.zoo.evaluate import accuracy  # noqa: E402
from harness.zoo.manifest import BUNDLED, load_manifest  # noqa: E402


def main() -> int:
    doc, cands = load_manifest(sys.argv[1] if len(sys.argv) > 1 else BUNDLED)
    idx = doc["task"]["split"]["indices"]
    rt = load_runtime()
    print(f"{len(cands)} candidates, {len(idx)} held-out images, {rt.name} {rt.version}")
    print(f"{'candidate':32s} {'MACs':>9s} {'stated':>7s} {'measured':>8s}")
    worst = 0.0
    for c in sorted(cands, key=lambda c: c.macs):
        acc = accuracy(c.path, c.entry["preprocessing"], idx)
        worst = max(worst, abs(acc - c.accuracy))
        print(f"{c.id:32s} {c.macs:9d} {c.accuracy:7.4f} {acc:8.4f}")
    macs = [c.macs for c in cands]
    print(f"MACs range {min(macs)}..{max(macs)} ({max(macs) / min(macs):.1f}x); "
          f"accuracy range {min(c.accuracy for c in cands):.4f}..{max(c.accuracy for c in cands):.4f}")
    print(f"largest |stated - measured| accuracy difference: {worst:.6f}")
    return 0 if worst <= 5e-7 else 1    # the manifest keeps 6 decimals: half a unit of the last one


if __name__ == "__main__":
    sys.exit(main())
