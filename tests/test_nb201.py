"""nb201 candidates have the NAS-Bench-201 structure (built with TensorFlow: the zoo extra)."""

from __future__ import annotations

import pytest

from harness.errors import BadInput
from harness.zoo.graph import read_graph
from harness.zoo.nb201 import expected_ops, live_edges, parse_cell

CELLS = [
    # every edge a 3x3 conv
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    # none edges mixed with pool, skip and 1x1
    "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|",
    # the output is cut off from the input
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|none~1|none~2|",
    # nodes 1 and 2 are dead ends: only the skip into node 3 survives
    "|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|none~1|none~2|",
]


def test_liveness_rules():
    live, ok = live_edges(parse_cell(CELLS[2]))
    assert not ok and live == {}
    live, ok = live_edges(parse_cell(CELLS[3]))
    assert ok and live == {(3, 0): "skip_connect"}
    assert expected_ops(CELLS[0]) == {"CONV_2D": 7 + 15 * 6, "AVERAGE_POOL_2D": 2, "MUL": 1}
    with pytest.raises(BadInput, match="node 2 needs 2 inputs"):
        parse_cell("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|")
    with pytest.raises(BadInput, match="bad edge"):
        parse_cell("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|")


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_built_graph_has_the_nb201_op_counts(tmp_path, cell):
    pytest.importorskip("tensorflow", reason="building needs the zoo extra (.ci/run installs it)")
    from harness.zoo.nb201 import convert, keras_model
    p = tmp_path / "m.tflite"
    p.write_bytes(convert(keras_model(cell)))
    g = read_graph(p)
    hist = g.op_histogram
    want = expected_ops(cell)
    assert {k: hist.get(k, 0) for k in ("CONV_2D", "AVERAGE_POOL_2D")} == {k: want[k] for k in ("CONV_2D", "AVERAGE_POOL_2D")}
    if want["MUL"] == 1:
        assert hist.get("MUL", 0) == 1  # the final BatchNorm only
    else:
        assert hist.get("MUL", 0) >= want["MUL"]  # zeros from the dead cells survive conversion
    assert g.inputs[0].shape == (1, 32, 32, 3) and g.outputs[0].shape == (1, 10)
    assert hist.get("FULLY_CONNECTED") == 1


def test_the_builder_never_names_a_cell_twice(tmp_path, capsys):
    """--sample 60 --seed 7 drew cell 402403 twice when it sampled with replacement; sampling the
    table is without replacement, and a cell also named in --archs is built once."""
    import argparse

    from harness.zoo.nb201 import SHIPPED_TABLE, _cell_id, _table, choose_archs
    args = argparse.Namespace(table=None, archs=None, sample=60, seed=7, limit=None)
    got = choose_archs(args)
    assert len(got) == 60 and len({_cell_id(c) for _, c in got}) == 60
    first = got[0]
    lst = tmp_path / "archs.txt"
    lst.write_text(f"{first[0]}\n{first[1]}\n")        # the same cell by index and by string
    args = argparse.Namespace(table=None, archs=lst, sample=60, seed=7, limit=None)
    got = choose_archs(args)
    assert len(got) == 60 and len({_cell_id(c) for _, c in got}) == 60
    assert "2 cell(s) named twice, built once" in capsys.readouterr().err
    with pytest.raises(Exception, match="the table has"):
        choose_archs(argparse.Namespace(table=None, archs=None, sample=len(_table(SHIPPED_TABLE)) + 1, seed=0,
                                        limit=None))
