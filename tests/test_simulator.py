"""simulator/: traces and importers on real files, the world and belief from a real campaign
collected here, the replay loop, the oracle's bound, and bad input."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from harness.collect import main as collect
from simulator import policies as pol
from simulator import replay as rp
from simulator import traces as tr
from simulator.metrics import QoE
from simulator.world import Campaign, load_campaign

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "device-output"
CANDS = "dc-w025-d2-r32-int8,dc-w050-d0-r32-float32,dc-w075-d2-r48-float32,dc-w100-d0-r64-float32"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    """A real local campaign: 4 bundled candidates x threads 1,2 x background load 0,1."""
    out = tmp_path_factory.mktemp("sim") / "runs"
    assert collect(["--candidates", CANDS, "--out", str(out), "--runs", "20", "--threads", "1,2",
                    "--background-load", "0,1", "--no-report", "-q"]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def _summary(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_replay_twice_identical_but_timings(campaign, tmp_path, capsys):
    """Same inputs and seed: every column but decision_us_* / wall_* identical, steps byte for byte."""
    outs = []
    for i in range(2):
        out = tmp_path / f"r{i}"
        assert rp.main(["--campaign", str(campaign), "--out", str(out), "-q"]) == 0
        outs.append(out)
    printed = capsys.readouterr().out
    assert "oracle" in printed and "greedy" in printed and "world: samples:odd-half" in printed
    a, b = (_summary(o / "summary.csv") for o in outs)
    strip = [{k: v for k, v in r.items() if not k.startswith(("decision_us_", "wall_"))} for r in a + b]
    assert strip[: len(a)] == strip[len(a):]
    assert (outs[0] / "steps.parquet").read_bytes() == (outs[1] / "steps.parquet").read_bytes()
    traces = {r["trace"] for r in a}
    assert traces == {p.stem for p in tr.shipped_traces()}
    assert {r["policy"] for r in a} == set(pol.REGISTRY)
    steps = pq.read_table(outs[0] / "steps.parquet").to_pandas()
    assert {"t_s", "candidate_id", "threads", "latency_ms", "deadline_ms", "missed", "energy_mj", "battery_pct",
            "qoe"} <= set(steps.columns)
    run = json.loads((outs[0] / "run.json").read_text())
    assert run["world"].startswith("samples:odd-half") and run["belief"].startswith("samples:even-half")
    # another seed draws other latencies
    assert rp.main(["--campaign", str(campaign), "--out", str(tmp_path / "s1"), "--seed", "1", "-q"]) == 0
    other = pq.read_table(tmp_path / "s1" / "steps.parquet").column("latency_ms").to_numpy()
    assert not np.array_equal(other, steps["latency_ms"].to_numpy())


@pytest.mark.parametrize("deadline", [None, "0.03", "0.08", "0.5"])
def test_oracle_bounds_every_policy(campaign, tmp_path, deadline, capsys):
    args = ["--campaign", str(campaign), "--out", str(tmp_path / "o"), "-q", "--rate-hz", "20"]
    if deadline:
        args += ["--deadline-ms", deadline]
    assert rp.main(args) == 0
    rows = _summary(tmp_path / "o" / "summary.csv")
    for t in {r["trace"] for r in rows}:
        mine = {r["policy"]: float(r["qoe_mean"]) for r in rows if r["trace"] == t}
        assert all(mine["oracle"] >= v - 1e-9 for v in mine.values()), (t, mine)
        assert mine["static-oracle"] >= mine["static-belief"] - 1e-9
        o = next(r for r in rows if r["trace"] == t and r["policy"] == "oracle")
        assert o["oracle_exact"] == "True"
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    for t, info in run["traces"].items():   # exact: the plan replayed scores the program's value
        o = next(r for r in rows if r["trace"] == t and r["policy"] == "oracle")
        assert info["oracle_bound_qoe_mean"] == pytest.approx(float(o["qoe_mean"]), abs=1e-9)


def _toy_campaign(tmp_path: Path, battery_wh=None) -> Campaign:
    """Two choices whose right answer is known by hand: A (accurate) meets a 2-ms deadline unloaded
    and misses it under load; B (less accurate) meets it always."""
    rng = np.random.default_rng(0)
    a0, a1 = 1.0 + 0.05 * rng.random(40), 8.0 + 0.05 * rng.random(40)
    b0, b1 = 0.5 + 0.05 * rng.random(40), 0.6 + 0.05 * rng.random(40)
    return Campaign(tmp_path, "toy", "toy", "x86-linux", 2, "synthetic", (("A", 1), ("B", 1)), np.array([0.9, 0.6]),
                    np.array([0, 1]), ((a0, a1), (b0, b1)), np.array([[1.0, 1.0], [0.5, 0.5]]), "synthetic",
                    np.array([5.0, 5.0]), battery_wh, None)


def _step_trace(tmp_path: Path, name="step", rows=None) -> tr.Trace:
    rows = rows or [(t, 1 if 10 <= t < 20 else 0) for t in range(30)]
    p = tmp_path / f"{name}.csv"
    p.write_text("t_s,background_load\n" + "".join(f"{t},{b}\n" for t, b in rows))
    return tr.read_trace(p)


def test_known_answer_one_switch_each_way(tmp_path):
    camp = _toy_campaign(tmp_path)
    sc = rp.Scenario(deadline_ms=2.0, rate_hz=10)
    rows, steps, _ = rp.replay(camp, [_step_trace(tmp_path)], list(pol.REGISTRY), sc)
    by = {r["policy"]: r for r in rows}
    st, real = steps[("oracle", "step")]
    per_period = st["choice"][np.searchsorted(real.period, np.arange(real.n_periods))]
    assert per_period.tolist() == [0] * 10 + [1] * 10 + [0] * 10     # A, B under load, A again
    assert by["oracle"]["switches"] == 2 and by["greedy"]["switches"] == 2
    assert by["oracle"]["qoe_mean"] >= max(r["qoe_mean"] for r in rows) - 1e-12
    assert by["greedy"]["qoe_mean"] > by["static-oracle"]["qoe_mean"] > by["static-belief"]["qoe_mean"]
    assert by["greedy"]["gap_closed"] > 0.9
    # a switch's load time lands on the first request after it: that one misses (5 ms > 2 ms)
    assert st["missed"].sum() == 2 and st["latency_ms"][st["switched"]].min() > 5.0


def test_battery_ends_service_and_oracle_keeps_it_alive(tmp_path):
    camp = _toy_campaign(tmp_path)
    trace = _step_trace(tmp_path, "flat", [(t, 0) for t in range(60)])
    # 600 requests x ~1 mJ of A: a battery of 0.4 J lasts ~400 requests of A, all of them of B
    sc = rp.Scenario(deadline_ms=2.0, rate_hz=10, battery_wh=0.4 / 3600)
    rows, steps, _ = rp.replay(camp, [trace], ["oracle", "static-belief", "greedy"], sc)
    by = {r["policy"]: r for r in rows}
    st, _ = steps[("greedy", "flat")]
    assert not st["served"].all() and (st["qoe"][~st["served"]] == 0).all()
    assert by["greedy"]["battery_empty_s"] == pytest.approx(40, abs=2)
    assert by["oracle"]["qoe_mean"] >= max(r["qoe_mean"] for r in rows) - 1e-12
    assert by["oracle"]["oracle_exact"] is False


def test_gaps_hold_the_last_value_and_say_so(tmp_path):
    camp = _toy_campaign(tmp_path)
    trace = _step_trace(tmp_path, "gap", [(0, 0), (1, 0), (2, 1), (10, 0), (11, 0), (12, 0)])
    assert trace.gap_after().tolist() == [False, False, True, False, False, False]
    _, steps, _ = rp.replay(camp, [trace], ["greedy"], rp.Scenario(deadline_ms=2.0))
    st, real = steps[("greedy", "gap")]
    t = real.arrivals_s
    assert real.held[(t > 3.5) & (t < 10)].all() and not real.held[t < 3].any()
    assert (real.busy[(t > 2) & (t < 10)] == 1).all()


def test_single_row_trace_and_rate_column(tmp_path):
    camp = _toy_campaign(tmp_path)
    one = _step_trace(tmp_path, "one", [(0, 0)])
    rows, _, _ = rp.replay(camp, [one], list(pol.REGISTRY), rp.Scenario(deadline_ms=2.0, rate_hz=10))
    assert all(r["requests"] == 10 for r in rows)
    p = tmp_path / "demand.csv"
    p.write_text("t_s,demand_hz,background_load\n0,5,0\n10,0,0\n20,20,0\n")   # the last row lasts one period
    rows, _, _ = rp.replay(camp, [tr.read_trace(p)], ["greedy"], rp.Scenario(deadline_ms=2.0, rate_column="demand_hz"))
    assert rows[0]["requests"] == pytest.approx(5 * 10 + 20 * 10, abs=2)


def test_import_each_format_and_replay(campaign, tmp_path, capsys):
    src = ROOT / "traces" / "sources"
    out = tmp_path / "imported"
    keep = out / "mine.txt"
    out.mkdir()
    keep.write_text("left alone")
    assert tr.main(["import", "--format", "android-battery", *map(str, (src / "android-battery").glob("*.csv")),
                    "--out", str(out)]) == 0
    assert tr.main(["import", "--format", "pensieve", *map(str, (src / "pensieve").iterdir()), "--out", str(out)]) == 0
    assert tr.main(["import", "--format", "tegrastats", str(FIX / "tegrastats-jetson-orin-nano-jp6.txt"),
                    "--out", str(out)]) == 0
    assert tr.main(["import", "--format", "tegrastats", str(FIX / "tegrastats-jetson-nano.txt"), "--out", str(out)]) == 2
    assert "give --interval-s" in capsys.readouterr().err
    assert tr.main(["import", "--format", "tegrastats", str(FIX / "tegrastats-jetson-nano.txt"), "--interval-s", "1",
                    "--out", str(out)]) == 0
    assert tr.main(["import", "--format", "record", str(ROOT / "traces" / "local-load1-step.csv"), "--out", str(out)]) == 0
    assert keep.read_text() == "left alone"
    made = sorted(out.glob("*.csv"))
    assert [p.name for p in made] == sorted(["0826c571f98a4a818945860bc9091705-2020-08-09_15-09-06.csv",
                                             "trace_797172_http---www.yahoo.com.csv", "tegrastats-jetson-orin-nano-jp6.csv",
                                             "tegrastats-jetson-nano.csv", "local-load1-step.csv",
                                             "metro.kalbakken-jernbanetorget-report.2010-09-14_1415CEST.csv"])
    phone = tr.read_trace(out / made[0].name)
    assert phone.columns["battery_pct"][0] == 83 and phone.units["cpu_load_pct"].startswith("%")
    m = json.loads((out / (made[0].name + ".manifest.json")).read_text())
    assert m["source"]["format"] == "android-battery" and len(m["source"]["sha256"]) == 64
    bw = tr.read_trace(out / "trace_797172_http---www.yahoo.com.csv")
    assert bw.columns["bandwidth_mbps"][:2].tolist() == [2.132712, 1.12984]
    assert rp.main(["--campaign", str(campaign), *sum((["--trace", str(p)] for p in made), []),
                    "--out", str(tmp_path / "r"), "-q"]) == 0
    assert {r["trace"] for r in _summary(tmp_path / "r" / "summary.csv")} == {p.stem for p in made}


def test_importer_sorts_and_drops_with_a_count(tmp_path, capsys):
    p = tmp_path / "bw"
    p.write_text("0.0 1.0\n2.0 3.0\n1.0 2.0\n2.0 9.0\n3.0 4.0\n")
    assert tr.main(["import", "--format", "pensieve", str(p), "--out", str(tmp_path / "o")]) == 0
    assert "2 row(s) out of time order sorted, 1 row(s) with a repeated time dropped" in capsys.readouterr().err
    t = tr.read_trace(tmp_path / "o" / "bw.csv")
    assert t.t_s.tolist() == [0, 1, 2, 3] and t.columns["bandwidth_mbps"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("body, expect", [
    ("t_s,cpu_load_pct\n0,1\n1,2\n1,3\n", "4: t_s 1 does not increase"),
    ("t_s,cpu_load_pct,mystery\n0,1,2\n1,2,3\n", "column 'mystery' has no unit"),
    ("t_s,cpu_load_pct\n0,1\n1,high\n", "3: column cpu_load_pct: expected a number, got 'high'"),
    ("time,cpu_load_pct\n0,1\n", "the first column must be t_s"),
])
def test_bad_trace_one_line_exit_2_nothing_written(campaign, tmp_path, capsys, body, expect):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    out = tmp_path / "out"
    assert rp.main(["--campaign", str(campaign), "--trace", str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and str(p) in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_bad_campaign_and_values(campaign, tmp_path, capsys):
    failed = tmp_path / "runs"
    assert collect(["--candidates", "dc-w025-d2-r32-int8", "--out", str(failed), "--runs", "5", "--threads", "1",
                    "--background-load", "0", "--no-report", "-q", "--retries", "0", "--backoff", "0",
                    "--reference", "none", "--job-timeout", "0.000001"]) != 0
    (run,) = [p for p in failed.iterdir() if p.is_dir()]
    cases = [(["--campaign", str(run)], "has no ok jobs"),
             (["--campaign", str(campaign), "--deadline-ms", "0"], "--deadline-ms: expected a number > 0"),
             (["--campaign", str(campaign), "--rate-hz", "-1"], "--rate-hz: expected a number > 0"),
             (["--campaign", str(tmp_path)], "no campaign.sqlite"),
             (["--campaign", str(campaign), "--policy", "nope"], "--policy: unknown nope"),
             (["--campaign", str(campaign), "--policy-arg", "greedy.q=7"], "q: expected a quantile"),
             (["--campaign", str(campaign), "--policy-arg", "greedy.zz=1"], "greedy has no parameter 'zz'")]
    zero = tmp_path / "zero"
    zero.mkdir()
    (zero / "campaign.sqlite").write_bytes(b"")
    cases.append((["--campaign", str(zero)], "not an SQLite database"))
    for args, expect in cases:
        out = tmp_path / "o"
        with pytest.raises(SystemExit) if "--deadline-ms" in args or "--rate-hz" in args else _nullctx():
            assert rp.main([*args, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert expect in err, (args, err)
        assert not out.exists()
    assert (zero / "campaign.sqlite").read_bytes() == b""   # never rewritten


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_campaign_world_and_belief_halves(campaign):
    camp = load_campaign(campaign)
    assert len(camp.choices) == 8 and camp.levels.tolist() == [0, 1] and camp.cpu_count >= 1
    from simulator import belief
    b = belief.from_samples(camp, "even")
    assert b.latency_ms(0.0, 0.5).shape == (8,) and (b.latency_ms(1.0, 0.9) >= b.latency_ms(1.0, 0.1)).all()
    # belief halfway between levels is between its two levels
    mid, lo, hi = b.latency_ms(0.5, 0.5), b.latency_ms(0.0, 0.5), b.latency_ms(1.0, 0.5)
    assert ((mid >= np.minimum(lo, hi) - 1e-12) & (mid <= np.maximum(lo, hi) + 1e-12)).all()
    assert QoE().per_request(np.array([0.9]), np.array([True]), np.array([0.0]), np.array([False]))[0] == -1.0


def test_report_replay_section(campaign, tmp_path):
    """The campaign's report gains a Replay section (table, one timeline per trace, world and
    belief named); a replay folder alone gives a report too."""
    import base64
    import re

    from reports.build import build_report
    out = campaign / "replay"
    assert rp.main(["--campaign", str(campaign), "--trace", str(ROOT / "traces" / "local-load1-step.csv"), "-q"]) == 0
    for html in (build_report(campaign).read_text(), build_report(out, tmp_path / "r.html").read_text()):
        sec = html[html.index('<section id="replay">'):]
        sec = sec[: sec.index("</section>")]
        assert "World</strong>" in sec and "samples:odd-half" in sec and "Belief</strong>" in sec
        assert sec.count("<tr>") == 2 * (1 + len(pol.REGISTRY))      # the scoreboard and the per-trace table
        imgs = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', sec)
        assert len(imgs) == 2 and all(b"<svg" in base64.b64decode(i)[:400] for i in imgs)   # timeline, choices
