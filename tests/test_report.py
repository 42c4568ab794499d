"""Reports of real small campaigns, rendered in headless Chromium; broken run folders still report."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.collect import main as collect
from reports.build import build_report
from reports.build import main as report_main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.setAttribute("data-probe", imgs.length + " images, " + bad.length + " broken, "
                             + window.__errors.length + " errors");
});
</script>"""


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, small_ids):
    from tests.conftest import make_zoo
    tmp = tmp_path_factory.mktemp("report")
    # + a hybrid (dynamic-range int8) model that XNNPACK runs in 2 pieces
    zoo = make_zoo(tmp / "zoo", small_ids + ["dc-w050-d0-r32-dynamic-int8"])
    out = tmp / "runs"
    assert collect(["--zoo", str(zoo), "--out", str(out), "--runs", "10", "--threads", "1,2",
                    "--background-load", "0,1", "-q"]) == 0
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return d


def _chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("needs Debian's chromium")
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args], capture_output=True,
                          text=True, timeout=120)


def test_collect_writes_the_report_and_it_renders_cleanly(campaign, tmp_path):
    report = campaign / "report.html"
    assert report.is_file()  # written at the end of every collect
    html = report.read_text()
    assert "http://" not in html and "https://" not in html  # nothing to fetch: opens offline
    for section in ("Campaign", "Latency", "Energy", "Trade-off", "Predictors"):
        assert f"<h2>{section}</h2>" in html
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"))
    dom = _chromium(["--dump-dom", probed.as_uri()], tmp_path)
    assert 'data-probe="' in dom.stdout, dom.stderr[-2000:]
    probe = dom.stdout.split('data-probe="', 1)[1].split('"', 1)[0]
    n_images = html.count('<img src="data:image/svg+xml;base64,')
    assert n_images >= 4 and probe == f"{n_images} images, 0 broken, 0 errors"
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()]
    assert console_errors == []
    shot = campaign / "report.png"
    _chromium(["--window-size=1280,2200", f"--screenshot={shot}", report.as_uri()], tmp_path)
    assert shot.stat().st_size > 20_000


def test_report_content(campaign):
    html = (campaign / "report.html").read_text()
    assert "ai-edge-litert" in html or "tflite-runtime" in html
    assert "Pareto-optimal candidates" in html and "alt=\"context effect on local\"" in html
    # no power sensor here: energy is the profile's estimate, labelled as such in the table
    assert "estimate:power_model(x86-linux)" in html and '<span class="est">ESTIMATE</span>' in html
    assert "no predictors in this run folder" in html
    assert 'class="num deleg">1<' in html and 'class="num deleg">2<' in html    # delegate pieces
    assert "python -m harness.collect" in html  # provenance footer: the command line


def test_missing_or_corrupt_parts_still_give_a_report(campaign, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(campaign, broken)
    (broken / "campaign.sqlite").write_bytes(b"this is not a database" * 100)
    for extra in ("campaign.sqlite-wal", "campaign.sqlite-shm"):
        (broken / extra).unlink(missing_ok=True)
    html = build_report(broken).read_text()
    assert "campaign.sqlite: unreadable" in html and "using measurements.parquet" in html
    assert "All measurements" in html  # the latency table still comes from the parquet
    (broken / "measurements.parquet").write_bytes(b"PAR1 garbage")
    html = build_report(broken).read_text()
    assert "measurements.parquet: unreadable" in html and "no campaign data" in html
    empty = tmp_path / "empty"
    empty.mkdir()
    html = build_report(empty).read_text()
    assert "campaign.sqlite: missing" in html and "measurements.parquet: missing" in html
    assert report_main([str(tmp_path / "nowhere")]) == 2
    assert "no such run folder" in capsys.readouterr().err
