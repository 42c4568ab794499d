"""Offloading and partitioned inference: split points from real graphs (the bundled zoo), parts
built and checked with the TFLite runtime, the link's transfer times, and the offloading replay:
the oracle bounds every policy, and a link that drops to zero sends every request back to the
device with none lost. The campaign is synthetic (named so) over four bundled models, so the
split points and bytes are the real files'."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from harness.errors import BadInput
from harness.zoo.manifest import BUNDLED, load_manifest
from harness.zoo.split import build_parts, check_parts, split_points
from simulator import offload as off
from simulator import policies as pol
from simulator import traces as tr
from simulator.replay import Scenario
from simulator.world import Campaign

MODEL = BUNDLED / "dc-w050-d0-r32-float32.tflite"
IDS = ("dc-w025-d2-r32-int8", "dc-w050-d0-r32-float32", "dc-w075-d2-r48-float32", "dc-w050-d0-r64-float32")


def test_split_points_of_a_residual_network():
    sp = split_points(MODEL)
    assert sp.input_bytes == 32 * 32 * 4 and sp.output_bytes == 10 * 4
    at = {p.after_op: p for p in sp.points}
    # after the project conv of block 3 one 4x4x16 float tensor crosses; inside a residual block
    # (after op 9, before its ADD) two tensors do: not a split point
    assert at[13].bytes == 4 * 4 * 16 * 4 and at[13].shape == (1, 4, 4, 16)
    assert 9 not in at and 2 not in at
    shares = [p.macs_share for p in sp.points]
    assert shares == sorted(shares) and 0 < shares[0] and shares[-1] <= 1


def test_split_points_of_a_file_that_is_not_a_model(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(BadInput, match=r"x.tflite: not a TFLite flatbuffer"):
        split_points(bad)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="building parts needs TensorFlow (extra zoo)")
def test_front_and_back_compute_the_whole(tmp_path):
    for after in (6, 13, 26):
        front, back = build_parts(MODEL, after, tmp_path)
        assert check_parts(MODEL, front, back) < 1e-5
        f, b = split_points(front), split_points(back)
        assert f.output_bytes == b.input_bytes == {p.after_op: p for p in split_points(MODEL).points}[after].bytes
    with pytest.raises(BadInput, match=r"--after 9: not a split point .* \(valid: 0, 3, 4"):
        build_parts(MODEL, 9, tmp_path)


def _trace(tmp_path, name, rows, cols="t_s,bandwidth_mbps"):
    p = tmp_path / f"{name}.csv"
    p.write_text(cols + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return tr.read_trace(p)


def test_link_transfer_times(tmp_path):
    link = off.Link(_trace(tmp_path, "l", [(0, 1.0), (1, 2.0), (5, 0.0), (8, 4.0)]))
    t = link.finish(np.array([0.0, 0.5, 4.5, 6.0, 20.0]), np.array([1.0, 2.0, 2.0, 4.0, 0.0]))
    # 1 Mbit at 1 Mbit/s; 0.5 by 1 s then 1.5 at 2 Mbit/s; 1 Mbit by 5 s, nothing 5-8 s, 1 more at 4;
    # waits for the link to come back; nothing to send
    assert np.allclose(t, [1.0, 1.75, 8.25, 9.0, 20.0])
    down = off.Link(_trace(tmp_path, "d", [(0, 1.0), (2, 0.0)]))
    assert np.isinf(down.finish(np.array([1.5]), np.array([1.0]))).all()
    with pytest.raises(BadInput, match=r"load.csv: no bandwidth_mbps column"):
        off.Link(_trace(tmp_path, "load", [(0, 1)], "t_s,background_load"))


def synthetic_campaign(tmp_path) -> Campaign:
    _, cands = load_manifest(BUNDLED)
    by = {c.id: c for c in cands}
    rng = np.random.default_rng(2)
    base = (0.012, 0.02, 0.035, 0.045)                 # ms on the campaign's target, growing with the model
    samples = tuple((b * (1 + 0.1 * rng.random(60)),) for b in base)
    return Campaign(tmp_path, "synthetic", "synthetic", "x86-linux", 2, "synthetic", tuple((c, 1) for c in IDS),
                    np.array([by[c].accuracy for c in IDS]), np.array([0]), samples,
                    np.array([[b * 8.0] for b in base]), "synthetic", np.full(4, 0.5), None, None, (),
                    tuple(dict(by[c].knobs, threads=1) for c in IDS))


@pytest.fixture(scope="module")
def setup():
    return off.Setup(off.load_server("edge-server-local"), off.load_radio("x86-linux"), "x86-linux", slowdown=2000,
                     power_w=0.1, rtt_ms=10.0)


@pytest.fixture(scope="module")
def files():
    return {c: BUNDLED / f"{c}.tflite" for c in IDS}


OUTAGE = (20, 40)


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    d = tmp_path_factory.mktemp("bw")
    return _trace(d, "outage", [(t, 0.0 if OUTAGE[0] <= t < OUTAGE[1] else 3.0) for t in range(60)])


def test_bandwidth_drop_to_zero_falls_back_and_loses_nothing(tmp_path, setup, files, outage):
    camp = synthetic_campaign(tmp_path)
    sc = Scenario(deadline_ms=30.0, rate_hz=10, seed=1)   # on the device only the least accurate model meets it
    names = ["offload-threshold", "offload-mpc", "oracle", "static-belief"]
    rows, res, _ = off.replay_offload(camp, [outage], names, sc, setup, files)
    acts = res["actions"]
    by = {r["policy"]: r for r in rows}
    for name in ("offload-threshold", "offload-mpc"):
        st, real = res["steps"][(name, "outage")]
        t = real.arrivals_s - real.t0
        place = acts.place[st["choice"]]
        assert len(st["qoe"]) == real.n == 600 and st["served"].all() and np.isfinite(st["latency_ms"]).all()
        assert (place[(t < OUTAGE[0])] != "device").mean() > 0.9, name     # the link pays before the drop...
        inside = (t >= OUTAGE[0] + 1) & (t < OUTAGE[1])                      # ...from the first decision in it
        assert (place[inside] == "device").all(), name
        fell = real.fallback[np.arange(real.n), st["choice"]]
        assert (fell <= ((t >= OUTAGE[0] - 1) & (t < OUTAGE[0] + 1))).all(), name   # only requests in flight at the drop
        assert by[name]["fallbacks"] == fell.sum()
    assert by["static-belief"]["server_frac"] == 0.0


def test_oracle_bounds_every_policy(tmp_path, setup, files, outage):
    camp = synthetic_campaign(tmp_path)
    fcc = tr.read_trace(tr.SHIPPED / "trace_797172_http---www.yahoo.com.csv")
    sent = {}
    for deadline in (30.0, 80.0):
        rows, _, _ = off.replay_offload(camp, [outage, fcc], list(pol.REGISTRY), Scenario(deadline_ms=deadline, rate_hz=5),
                                        setup, files)
        for trace in ("outage", fcc.name):
            mine = {r["policy"]: r["qoe_mean"] for r in rows if r["trace"] == trace}
            best = max(v for k, v in mine.items() if k != "oracle")
            assert mine["oracle"] >= best - 1e-9, (trace, deadline, mine)
        sent[deadline] = next(r for r in rows if r["policy"] == "oracle" and r["trace"] == fcc.name)["device_frac"]
    # the oracle's actions include sending away: at the tight deadline it does
    assert sent[30.0] < 0.5


def test_profiles_name_what_is_missing(tmp_path):
    with pytest.raises(BadInput, match=r"x86-linux.yaml: no server section"):
        off.load_server("x86-linux")
    with pytest.raises(BadInput, match=r"jetson-tx2.yaml: no radio section"):
        off.load_radio("jetson-tx2")


def test_on_device_policies_only_run_on_the_device(tmp_path, setup, files, outage):
    camp = synthetic_campaign(tmp_path)
    rows, res, _ = off.replay_offload(camp, [outage], ["greedy", "mpc", "linucb"], Scenario(deadline_ms=60.0), setup,
                                      files)
    for r in rows:
        assert r["device_frac"] == 1.0 and r["kb_sent_per_request"] == 0.0


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="building parts needs TensorFlow (extra zoo)")
def test_measured_parts_replace_the_mac_share(tmp_path, files):
    """Parts built and measured here for real; their share is what the split action uses."""
    import subprocess
    import sys

    from harness.zoo.__main__ import main as zoo_main
    d = tmp_path / "parts"
    assert zoo_main(["split", str(MODEL), "--after", "13", "--out", str(d)]) == 0
    assert zoo_main(["split", str(MODEL), "--after", "6", "--out", str(d)]) == 0    # a second split, same folder
    subprocess.run([sys.executable, "-m", "harness.collect", "--zoo", str(d), "--threads", "1", "--background-load", "0",
                    "--runs", "30", "--out", str(tmp_path / "runs"), "-q"], check=True, stdout=subprocess.DEVNULL)
    shares = off.measured_shares(next((tmp_path / "runs").glob("*/")))
    assert set(shares) == {("dc-w050-d0-r32-float32", 13), ("dc-w050-d0-r32-float32", 6)}
    assert 0 < shares[("dc-w050-d0-r32-float32", 6)] < shares[("dc-w050-d0-r32-float32", 13)] < 1
    acts = off.actions(synthetic_campaign(tmp_path), files, "none", shares)
    split = acts.place == "split"
    assert sorted(acts.after_op[split].tolist()) == [6, 13]          # offered though --splits none
    assert sorted(acts.share[split].tolist()) == sorted(shares.values())
    with pytest.raises(BadInput, match="no measured front and back parts"):
        off.measured_shares(_campaign_without_parts(tmp_path))


def _campaign_without_parts(tmp_path):
    import subprocess
    import sys
    subprocess.run([sys.executable, "-m", "harness.collect", "--candidates", "dc-w025-d2-r32-int8", "--threads", "1",
                    "--background-load", "0", "--runs", "5", "--out", str(tmp_path / "plain"), "-q"], check=True,
                   stdout=subprocess.DEVNULL)
    return next((tmp_path / "plain").glob("*/"))


def test_oracle_program_with_groups_is_exact_on_small_problems():
    """One model in several places moves among them free: the program's optimum equals the best of
    every plan enumerated, and its plan scores that optimum."""
    import itertools

    from simulator.oracle import dp
    rng = np.random.default_rng(0)
    group = np.array([0, 0, 1, 1, 1, 2])
    for _ in range(20):
        K, C = 4, len(group)
        q0 = rng.normal(size=(K, C))
        q1 = q0 - rng.random((K, C))             # a switch costs something

        def value(plan, q0=q0, q1=q1, K=K):
            return q0[0, plan[0]] + sum((q1 if group[plan[k]] != group[plan[k - 1]] else q0)[k, plan[k]]
                                        for k in range(1, K))
        best = max(value(p) for p in itertools.product(range(C), repeat=K))
        plan, v = dp(q0, q1, group)
        assert v == pytest.approx(best) and value(plan) == pytest.approx(best)
        plan1, v1 = dp(q0, q1)                   # without groups: every change is a switch
        assert v1 <= v + 1e-12


def test_stalls_scaled_or_absolute(tmp_path, outage):
    """scaled: every draw x slowdown; absolute: the median x slowdown, each draw's deviation kept in ms."""
    from simulator.world import SampleTable, realize, split_half
    camp = synthetic_campaign(tmp_path)
    world = SampleTable([[split_half(s, "odd") for s in cell] for cell in camp.samples])
    base = realize(camp, world, outage, seed=0, rate_hz=5, rate_column=None, decide_every_s=1.0, load_col=None,
                   battery_wh=None)
    k = 1000.0
    sc = off.device_ms(base, camp, off.Setup(None, None, "x", slowdown=k, stalls="scaled"))
    ab = off.device_ms(base, camp, off.Setup(None, None, "x", slowdown=k, stalls="absolute"))
    med = off.medians(camp)[:, 0]
    assert np.allclose(sc, base.latency_ms * k)
    assert np.allclose(ab - med * k, base.latency_ms - med)
    assert np.ptp(ab - med * k) < np.ptp(sc - med * k) / 100
