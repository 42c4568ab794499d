"""python -m simulator.select on a real local campaign of the bundled zoo."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.collect import main as collect
from simulator import select
from simulator.ranking import recommend
from simulator.world import load_campaign

IDS = [f"dc-{a}-{q}" for a in ("w025-d2-r32", "w050-d0-r32", "w025-d0-r48", "w050-d2-r48", "w050-d0-r64")
       for q in ("float32", "int8")]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    out = tmp_path_factory.mktemp("sel") / "runs"
    assert collect(["--candidates", ",".join(IDS), "--out", str(out), "--runs", "40", "--threads", "1",
                    "--background-load", "0", "--reference", "none", "--no-report", "-q"]) == 0
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return d


def _medians(run):
    camp = load_campaign(run)
    return {c: float(np.median(s[0])) for (c, _), s in zip(camp.choices, camp.samples)}


def test_the_selection_and_the_reports_recommendation_are_one_ranking(campaign, tmp_path, capsys):
    med = _medians(campaign)
    budget = float(np.median(list(med.values())))
    out = tmp_path / "sel.json"
    assert select.main(["--campaign", str(campaign), "--deadline-ms", str(budget), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    first = doc["ranking"][0]
    assert first["meets"] and first["latency_ms_median"] <= budget and 0 <= doc["confidence"] <= 1
    meeting = [r for r in doc["ranking"] if r["meets"]]
    assert [r["qoe"] for r in meeting] == sorted((r["qoe"] for r in meeting), reverse=True)
    assert all(not r["meets"] for r in doc["ranking"][len(meeting):])
    assert f"{first['candidate_id']}@1t" in doc["pareto"] or first["accuracy"] < max(r["accuracy"] for r in meeting)
    import pyarrow.parquet as pq
    rows = pq.read_table(campaign / "measurements.parquet").to_pylist()
    from harness.store import Store
    st = Store(campaign / "campaign.sqlite")
    smp = st.raw_samples(st.campaign_ids()[0])
    st.close()
    rows = [dict(r, samples=smp[(r["target"], r["candidate_id"], r["threads"], r["background_load"])]) for r in rows]
    (rec,) = recommend(rows, budget)
    assert rec["candidate_id"] == first["candidate_id"]       # what the report recommends
    printed = capsys.readouterr().out
    assert f"run {first['candidate_id']} at 1 thread(s)" in printed and "rank confidence" in printed
    assert "ESTIMATE" in printed and "belief: measured samples campaign" in printed


@pytest.mark.parametrize("args, says", [
    (["--deadline-ms", "-1"], "--deadline-ms: expected a number > 0"),
    (["--deadline-ms", "1e-6"], "--deadline-ms 1e-06: no candidate's median latency is within it (the fastest, "),
    (["--deadline-ms", "100", "--energy-mj", "1e-9"], "--energy-mj 1e-09: no candidate uses that little"),
    (["--deadline-ms", "100", "--min-accuracy", "0.9999"], "--min-accuracy 0.9999: no candidate is that accurate"),
    (["--deadline-ms", "100", "--min-accuracy", "1.5"], "--min-accuracy 1.5: accuracy is a share, 0 to 1"),
    (["--deadline-ms", "1", "--verify"], "--verify checks a --design proposal"),
])
def test_bad_and_unreachable_budgets_are_one_line(campaign, capsys, args, says):
    try:
        rc = select.main(["--campaign", str(campaign), *args])
    except SystemExit as e:   # argparse's own refusal
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert says in err[-1] and "Traceback" not in "\n".join(err)


def test_budgets_met_apart_but_not_together_say_which(campaign, capsys):
    med = _medians(campaign)
    camp = load_campaign(campaign)
    acc = dict(zip([c for c, _ in camp.choices], camp.accuracy))
    fastest = min(med, key=med.get)
    assert acc[fastest] < max(acc.values())     # the cheapest network is not the most accurate one
    assert select.main(["--campaign", str(campaign), "--deadline-ms", str(med[fastest] * 1.0001),
                        "--min-accuracy", str(max(acc.values()))]) == 2
    err = capsys.readouterr().err
    assert "with the other budgets: no candidate meets them all (the most accurate within them is" in err


def test_a_device_not_in_the_campaign_from_a_few_measurements(campaign, tmp_path, capsys):
    med = _medians(campaign)
    few = sorted(med)[:4]
    csv = tmp_path / "new.csv"
    csv.write_text("candidate_id,latency_ms\n" + "".join(f"{c},{3 * med[c]}\n" for c in few))
    out = tmp_path / "t.json"
    budget = 3 * float(np.median(list(med.values())))
    assert select.main(["--campaign", str(campaign), "--deadline-ms", str(budget), "--device-samples", str(csv),
                        "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    tr = doc["transfer"]
    assert tr["b"] == pytest.approx(1, abs=1e-6) and np.exp(tr["a"]) == pytest.approx(3, rel=1e-6)
    assert tr["loo_error_log"] == pytest.approx(0, abs=1e-6)
    got = {r["candidate_id"]: r["latency_ms_median"] for r in doc["ranking"]}
    assert all(got[c] == pytest.approx(3 * med[c], rel=1e-6) for c in med)   # every candidate moved, not only the few
    assert all(r["source"] == "transferred" for r in doc["ranking"])
    bad = tmp_path / "bad.csv"
    bad.write_text("candidate_id,latency_ms\nno-such-model,1\n")
    assert select.main(["--campaign", str(campaign), "--deadline-ms", "1", "--device-samples", str(bad)]) == 2
    assert "not candidates of the campaign" in capsys.readouterr().err


def test_design_ranks_configurations_not_built_with_stated_errors(campaign, tmp_path, capsys):
    med = _medians(campaign)
    out = tmp_path / "d.json"
    assert select.main(["--campaign", str(campaign), "--deadline-ms", str(max(med.values()) * 2), "--design",
                        "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    src = [r["source"] for r in doc["ranking"]]
    assert src.count("measured") == len(IDS) and src.count("predicted") == 4 * 3 * 3 * 4 - len(IDS)
    d = doc["design"]
    assert d["architectures"] == 5 and d["sigma_log"] > 0 and 0 < d["acc_mae"] < 0.5
    printed = capsys.readouterr().out
    assert "leave-one-architecture-out error: latency" in printed
    prop = doc["proposal"]
    assert f"best not built yet: {prop['candidate_id']}" in printed and f"--only {prop['candidate_id']}" in printed
    assert prop["candidate_id"] not in med and doc["recommendation"].split("@")[0] in med   # what runs is built


@pytest.mark.slow
def test_design_verify_builds_and_measures_the_proposal(campaign, tmp_path, capsys):
    """The proposal is built by harness.zoo (TensorFlow: the zoo extra) and measured here; what was
    predicted and what was measured are printed side by side (their gap is a figure, not a test)."""
    pytest.importorskip("tensorflow")
    med = _medians(campaign)
    out = tmp_path / "v.json"
    assert select.main(["--campaign", str(campaign), "--deadline-ms", str(max(med.values()) * 2), "--design", "--verify",
                        "--verify-runs", "50", "--json", str(out)]) == 0
    v = json.loads(out.read_text())["verify"]
    assert v["candidate_id"] not in med and v["measured"]["latency_ms_median"] > 0
    assert 0 <= v["measured"]["accuracy"] <= 1 and v["predicted"]["accuracy"] is not None
    printed = capsys.readouterr().out
    assert f"verify {v['candidate_id']}: median latency predicted" in printed


def test_a_trained_predictor_as_belief(campaign, tmp_path, capsys):
    from harness.zoo.manifest import BUNDLED
    from predictors import train
    model = tmp_path / "model"
    assert train.main(["--data", str(campaign / "measurements.parquet"), "--out", str(model)]) == 0
    out = tmp_path / "m.json"
    assert select.main(["--campaign", str(campaign), "--belief-model", str(model), "--zoo", str(BUNDLED),
                        "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    from predictors import dataset
    from predictors import store as pstore
    est, card = pstore.load(model)
    df = dataset.load([campaign / "measurements.parquet"], [BUNDLED])
    want = dict(zip(df["candidate_id"], est.predict(df[card["features"]])))
    got = {r["candidate_id"]: r["latency_ms_median"] for r in doc["ranking"]}
    assert got == pytest.approx(want, rel=1e-9)                  # the predictor's figures, not the measurements
    assert all(r["source"] == "model" for r in doc["ranking"]) and doc["belief_model"]["sigma_log"] > 0
    assert f"model-level predictor {model}" in capsys.readouterr().out
    assert select.main(["--campaign", str(campaign), "--belief-model", str(model), "--expect-sha256", "0" * 64]) == 2
    assert "not the pinned" in capsys.readouterr().err
