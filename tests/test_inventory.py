from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.errors import BadInput
from harness.inventory import load_inventory, load_profile
from harness.transport.ssh import SSHParams, resolve

PROFILES = Path(__file__).parent.parent / "device_profiles"


def write(tmp_path, text, name="inv.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_no_inventory_means_the_local_machine():
    (t,) = load_inventory(None)
    assert t.name == "local" and t.transport == "local" and t.profile.name == "x86-linux"


def test_valid_inventory(tmp_path):
    p = write(tmp_path, "targets:\n  - {name: pi, profile: raspberry-pi-4, host: pi4, user: pi, port: 2222}\n"
                        "  - {name: here, profile: x86-linux, transport: local}\n")
    pi, here = load_inventory(p)
    assert (pi.transport, pi.host, pi.port, pi.python) == ("ssh", "pi4", 2222, "python3")
    assert pi.workdir.endswith("/pi") and here.transport == "local"
    assert len(pi.profile.sha256) == 64


@pytest.mark.parametrize("text, message", [
    ("targets:\n  - name: a\n   profile: x\n", r"inv.yaml:3:\d+: invalid YAML"),
    ("targets: 3\n", r"inv.yaml: targets: expected a list of targets"),
    ("targets:\n  - {name: a, profile: x86-linux, host: h, port: 99999}\n", r"targets\[0\]\.port: expected an integer"),
    ("targets:\n  - {name: a, profile: nope, host: h}\n", r"targets\[0\]\.profile: .*nope.yaml: no such device profile"),
    ("targets:\n  - {name: a, profile: x86-linux}\n", r"targets\[0\]\.host: expected an address"),
    ("targets:\n  - {name: a, profile: x86-linux, transport: telnet}\n", r"targets\[0\]\.transport: expected local or ssh"),
    ("targets:\n  - {name: a, profile: x86-linux, transport: local}\n  - {name: a, profile: x86-linux, "
     "transport: local}\n", r"targets\[1\]\.name: expected a unique name"),
    ("targets:\n  - {name: 'a b', profile: x86-linux, transport: local}\n", r"targets\[0\]\.name: expected a name"),
    ("targets:\n  - {name: a, profile: x86-linux, transport: local, colour: red}\n", r"got \['colour'\]"),
    ("targets:\n  - {name: a, profile: x86-linux, transport: local, power_meter: {type: fluke}}\n",
     r"targets\[0\]\.power_meter\.type: expected one of ina3221, .*um25c.*, got 'fluke'"),
    ("targets:\n  - {name: a, profile: x86-linux, transport: local, cpus: [a]}\n", r"targets\[0\]\.cpus: expected a list"),
    ("targets:\n  - {name: a, profile: x86-linux, transport: local, cooldown_c: -1}\n", r"cooldown_c: expected degrees"),
    ("targets:\n  - {name: a, profile: x86-linux, transport: local, nvpmodel: MAXN}\n", r"nvpmodel: expected a power mode id"),
])
def test_bad_inventory_is_one_line_naming_file_and_field(tmp_path, text, message):
    with pytest.raises(BadInput, match=message) as e:
        load_inventory(write(tmp_path, text))
    assert "\n" not in str(e.value) and "inv.yaml" in str(e.value)


def test_every_shipped_profile_validates():
    names = {p.stem for p in PROFILES.glob("*.yaml")}
    assert names >= {"raspberry-pi-4", "raspberry-pi-5", "jetson-nano", "jetson-tx2", "jetson-xavier-nx",
                      "jetson-agx-orin", "jetson-orin-nano", "android-termux", "android-adb", "x86-linux"}
    for n in names:
        p = load_profile(n)
        assert p.power_model["idle_w"] >= 0 and p.power_model["source"]
        assert "power" in p.facts["sensors"] and all("unit" in v for v in p.facts["sensors"].values())
    assert load_profile("jetson-agx-orin").facts["knobs"]["nvpmodel"]["modes"][0] == "MAXN"


def test_profile_sensor_without_unit(tmp_path):
    (tmp_path / "p.yaml").write_text("name: p\nos: linux\ncpu: {clusters: [{name: a, cores: [0]}]}\n"
                                     "sensors: {power: {path: /sys/x}}\npower_model: {idle_w: 1, active_w_per_core: 1}\n")
    with pytest.raises(BadInput, match=r"p.yaml: sensors.power.unit: expected the unit it reports in, got None"):
        load_profile("p", tmp_path)


def test_bad_profile(tmp_path):
    (tmp_path / "p.yaml").write_text("name: p\nos: linux\ncpu: {clusters: []}\n")
    with pytest.raises(BadInput, match=r"p.yaml: cpu.clusters: expected a non-empty list"):
        load_profile("p", tmp_path)


def test_ssh_config_is_honoured(tmp_path):
    cfg = write(tmp_path, "Host board\n  HostName 127.0.0.9\n  User pi\n  Port 2200\n  IdentityFile ~/k\n"
                          "  ProxyJump jumper\n", "config")
    r = resolve(SSHParams("board", ssh_config=str(cfg)))
    assert (r["hostname"], r["user"], r["port"], r["proxyjump"]) == ("127.0.0.9", "pi", 2200, "jumper")
    assert r["identity_file"] == str(Path("~/k").expanduser())
    # explicit inventory values win over the config
    r = resolve(SSHParams("board", port=22, user="root", ssh_config=str(cfg)))
    assert (r["user"], r["port"]) == ("root", 22)


@pytest.mark.parametrize("body, expect", [
    ("targets:\n  - {name: a, profile: x86-linux, transport: ssh, host: h, port: true}\n", "port: expected an integer 1-65535"),
    ("targets:\n  - {name: a, profile: x86-linux, transport: local, cpus: [true]}\n", "cpus: expected a list of CPU numbers"),
    ("targets:\n  - name: a\n    profile: x86-linux\n    transport: local\n    name: b\n", "key 'name' given twice"),
])
def test_inventory_values_that_make_no_sense(tmp_path, body, expect):
    """Issue 33: `port: true`, `cpus: [true]` (YAML booleans are ints in Python) and a key given
    twice (the last one won silently) were accepted."""
    p = tmp_path / "inv.yaml"
    p.write_text(body)
    with pytest.raises(BadInput, match=re.escape(expect)):
        load_inventory(p)


@pytest.mark.parametrize("args, expect", [
    (["--runs", "0"], "--runs: expected a number >= 1"), (["--runs", "-1"], "--runs: expected a number >= 1"),
    (["--limit", "0"], "--limit: expected a number >= 1"), (["--limit", "-1"], "--limit: expected a number >= 1"),
    (["--threads", "0"], "--threads: expected integers >= 1"), (["--retries", "-1"], "--retries: expected a number >= 0"),
])
def test_collect_values_that_make_no_sense(tmp_path, capsys, args, expect):
    from harness.collect import main as collect
    with pytest.raises(SystemExit) as e:
        collect([*args, "--out", str(tmp_path / "runs")])
    assert e.value.code == 2 and expect in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_corrupt_reference_and_record_nan(tmp_path, capsys):
    from harness.collect import main as collect
    from harness.record import main as record
    bad = tmp_path / "ref.tflite"
    bad.write_bytes(b"\x10\x00\x00\x00TFL3" + bytes(range(256)))
    assert collect(["--reference", str(bad), "--out", str(tmp_path / "runs"), "--runs", "5"]) == 2
    assert "ref.tflite" in capsys.readouterr().err
    assert record(["--duration", "nan", "--period", "0.5", "--out", str(tmp_path / "t.csv")]) == 2
    assert "--duration and --period: expected seconds > 0, got nan" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()
