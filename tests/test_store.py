from __future__ import annotations

import sqlite3

import pyarrow.parquet as pq
import pytest

from harness.inventory import local_target
from harness.store import EXPORT_COLUMNS, MIGRATIONS, SCHEMA_VERSION, Store, _throttled
from harness.zoo.manifest import BUNDLED, load_manifest

REQUIRED = ("campaign_id target profile candidate_id candidate_sha256 runtime runtime_version threads "
            "background_load n_runs latency_ms_median latency_ms_p90 latency_ms_mean latency_ms_std load_ms "
            "first_inference_ms peak_rss_mb energy_mj energy_source throttled status started_at").split()


def _result(samples):
    return {"ok": True, "runtime": "ai-edge-litert", "runtime_version": "2.3.0", "threads": 1, "load_ms": 3.0,
            "first_inference_ms": 2.0, "warmup_ms": [1.5, 1.4], "warmup_stable": True, "samples_ms": samples,
            "peak_rss_mb": 40.0, "rss_method": "VmHWM", "context_before": {"throttle_count": 0},
            "context_after": {"throttle_count": 0}}


def test_schema_version_wal_and_reopen(tmp_path):
    s = Store(tmp_path / "c.sqlite")
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()
    Store(tmp_path / "c.sqlite").close()  # reopening migrates nothing and keeps the version


def test_newer_store_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "c.sqlite")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    from harness.errors import HarnessError
    with pytest.raises(HarnessError, match="newer than this harness"):    # one line from every CLI, exit 2
        Store(tmp_path / "c.sqlite")


def test_results_export_from_raw_samples(tmp_path):
    s = Store(tmp_path / "c.sqlite")
    _, cands = load_manifest(BUNDLED)
    s.create_campaign("c1", {"grid": {}}, "cmd")
    t = local_target()
    s.add_target("c1", t)
    for c in cands[:2]:
        s.add_candidate("c1", c)
    s.add_jobs("c1", [("local", cands[0].id, 1, 0, 5), ("local", cands[1].id, 1, 0, 5)])
    s.add_jobs("c1", [("local", cands[0].id, 1, 0, 5)])  # duplicates are ignored
    j0, j1 = s.pending_jobs("c1", "local")
    s.record_result(j0["id"], _result([1.0, 2.0, 3.0, 4.0, 100.0]), 123.0)
    s.record_result(j0["id"], _result([1.0, 2.0, 3.0, 4.0, 5.0]), 124.0)  # a re-run replaces, never duplicates
    s.record_failure("c1", "local", j1, "model", "cannot load model: x", final=True)
    assert s.pending_jobs("c1", "local") == []
    out = s.export_parquet("c1", tmp_path / "m.parquet")
    table = pq.read_table(out)
    assert set(REQUIRED) <= set(table.column_names) and table.column_names == list(EXPORT_COLUMNS)
    rows = table.to_pylist()
    assert len(rows) == 2
    ok, bad = rows
    assert ok["latency_ms_median"] == 3.0 and ok["n_runs"] == 5 and ok["latency_ms_p90"] == pytest.approx(4.6)
    assert ok["warmup_runs"] == 2 and ok["throttled"] is False and ok["candidate_sha256"] == cands[0].sha256
    assert bad["status"] == "failed" and bad["latency_ms_median"] is None and "cannot load" in bad["error"]
    assert table.schema.metadata[b"schema_version"] == str(SCHEMA_VERSION).encode()


def test_throttle_flag():
    assert _throttled({}, {}) is None
    assert _throttled({"throttle_count": 3}, {"throttle_count": 5}) == 1
    assert _throttled({"vcgencmd_throttled": 0x50000}, {"vcgencmd_throttled": 0x50000}) == 0
    assert _throttled({"vcgencmd_throttled": 0x0}, {"vcgencmd_throttled": 0x4}) == 1


@pytest.mark.parametrize("content", [b"", b"this is not a database" * 10])
def test_a_file_that_is_not_a_store_is_never_rewritten(tmp_path, capsys, content):
    """Issue 33: a zero-byte campaign.sqlite was rewritten with an empty schema by --resume and by
    reports.build. Now it is refused in one line and left as it was."""
    from harness.collect import main as collect
    d = tmp_path / "runs" / "c1"
    d.mkdir(parents=True)
    (d / "campaign.sqlite").write_bytes(content)
    assert collect(["--resume", "c1", "--out", str(tmp_path / "runs"), "-q"]) == 2
    assert "not a campaign store" in capsys.readouterr().err
    from reports.build import build_report
    html = build_report(d).read_text()
    assert "campaign.sqlite: unreadable" in html
    assert (d / "campaign.sqlite").read_bytes() == content


def test_binary_zoo_manifest_is_one_line(tmp_path):
    from harness.errors import BadInput
    from harness.zoo.manifest import load_manifest
    (tmp_path / "manifest.json").write_bytes(bytes(range(256)))
    with pytest.raises(BadInput, match="not a text file"):
        load_manifest(tmp_path)
