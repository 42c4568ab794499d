"""The stages import downward only: reports -> simulator -> predictors -> harness (DESIGN.md)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ABOVE = {"harness": {"predictors", "simulator", "reports"}, "predictors": {"simulator", "reports"},
         "simulator": {"reports"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ABOVE))
def test_no_import_points_up(package):
    bad = {f"{p.relative_to(ROOT)} imports {', '.join(sorted(_imports(p) & ABOVE[package]))}"
           for p in (ROOT / package).rglob("*.py") if _imports(p) & ABOVE[package]}
    assert not bad, bad
