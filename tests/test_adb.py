"""ADBTransport against a stand-in ``adb`` client (no phone here).

The fake keeps what the tests rely on from adb and adbd: ``-s SERIAL`` picks the device; ``get-state``
and ``features`` answer as adb does (including the error lines of an unauthorized or missing
device); ``shell -T ARGS...`` joins ARGS with spaces and runs the string with ``sh -c`` (as adbd
does on the phone) with stdin carried and the exit status returned (shell protocol v2); ``push``
copies. Everything else is the real harness: quoting, the exit-status marker, the agent bundle,
a real agent measuring real models on this machine. What this cannot show: a real adbd, Android's
toybox and SELinux, and a phone's Python.
"""

from __future__ import annotations

import os
import sys

import pyarrow.parquet as pq
import pytest

from harness.collect import main
from harness.inventory import load_inventory
from harness.transport.adb import ADBTransport
from harness.transport.base import TransportError
from tests.conftest import fake_tool, make_zoo

FAKE_ADB = r'''
import os, shutil, subprocess, sys
d = sys.argv[0] + ".d"
args = sys.argv[1:]
with open(os.path.join(d, "calls"), "a") as f:
    f.write(repr(args) + "\n")
serial = None
if args[:1] == ["-s"]:
    serial, args = args[1], args[2:]
devices = dict(ln.split() for ln in open(os.path.join(d, "devices")).read().splitlines() if ln.strip())
if args[0] == "connect":
    if args[1] in devices:
        print("connected to " + args[1])
        sys.exit(0)
    print("failed to connect to '%s': Connection refused" % args[1])
    sys.exit(1)
if serial is None:
    if len(devices) != 1:
        sys.exit(sys.stderr.write("adb: more than one device/emulator\n") and 1)
    serial = next(iter(devices))
if serial not in devices:
    sys.exit(sys.stderr.write("adb: device '%s' not found\n" % serial) and 1)
state = devices[serial]
if state != "device":
    sys.stderr.write("error: device %s.\n" % state)
    if state == "unauthorized":
        sys.stderr.write("This adb server's $ADB_VENDOR_KEYS is not set\nTry 'adb kill-server' if that seems wrong.\n"
                         "Otherwise check for a confirmation dialog on your device.\n")
    sys.exit(1)
if args[0] == "get-state":
    print("device")
elif args[0] == "features":
    print(open(os.path.join(d, "features")).read().strip())
elif args[0] == "shell":
    rest = args[1:]
    if rest[:1] == ["-T"]:
        rest = rest[1:]
    sys.stdout.flush()
    sys.exit(subprocess.call(["sh", "-c", " ".join(rest)], cwd="/"))
elif args[0] == "push":
    src, dst = args[1], args[2]
    if not os.path.isdir(os.path.dirname(dst)):
        sys.exit(sys.stderr.write("adb: error: failed to copy '%s' to '%s': remote couldn't create file: "
                                  "No such file or directory\n" % (src, dst)) and 1)
    shutil.copyfile(src, dst)
    print("%s: 1 file pushed, 0 skipped." % src)
else:
    sys.exit(sys.stderr.write("adb: unknown command %s\n" % args[0]) and 1)
'''


@pytest.fixture
def adb(tmp_path, monkeypatch):
    """The fake adb on PATH; write ``adb.d/devices`` (``SERIAL STATE`` lines) to change the phones."""
    bindir = tmp_path / "bin"
    fake_tool(bindir, "adb", FAKE_ADB)
    state = bindir / "adb.d"
    state.mkdir()
    (state / "devices").write_text("R58M123ABC device\n192.168.1.40:5555 device\n")
    (state / "features").write_text("shell_v2\ncmd\nstat_v2\nls_v2\nfixed_push_mkdir\napex\nabb\n")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return state


def test_commands_are_quoted_and_exit_status_is_the_commands(tmp_path, adb):
    t = ADBTransport("R58M123ABC")
    t.connect()
    odd = tmp_path / "it's a $HOME; dir"
    t.mkdir(str(odd / "models"))
    assert (odd / "models").is_dir() and t.exists(str(odd)) and not t.exists(str(odd / "nope"))
    src = tmp_path / "m.tflite"
    src.write_bytes(b"\x00model")
    t.put(str(src), str(odd / "models" / "m.tflite"))
    assert (odd / "models" / "m.tflite").read_bytes() == b"\x00model" and not (odd / "models" / "m.tflite.part").exists()
    rc, out, err = t.run(["sh", "-c", 'printf "no newline"; echo oops >&2; exit 3'])
    assert (rc, out, err) == (3, "no newline", "oops\n")
    assert t.run(["echo", "a  b", "$PATH", "`id`"])[1] == "a  b $PATH `id`\n"
    assert t.expand("~/.cache/x") == "/data/local/tmp/.cache/x"
    # adb itself failing (the phone went offline) is a transport error, not the command's exit 1.
    (adb / "devices").write_text("R58M123ABC offline\n")
    with pytest.raises(TransportError, match="adb R58M123ABC: error: device offline."):
        t.exists(str(odd))
    with pytest.raises(TransportError, match="upload to .* failed"):
        ADBTransport("R58M123ABC").put(str(src), "/nonexistent-dir/m.tflite")


@pytest.mark.parametrize("devices, serial, features, message", [
    ("R58M123ABC unauthorized\n", "R58M123ABC", "shell_v2", "error: device unauthorized. \\(accept this computer"),
    ("R58M123ABC device\n", "0123456789", "shell_v2", "adb: device '0123456789' not found"),
    ("R58M123ABC device\n", "R58M123ABC", "cmd\nstat_v2", "no adb shell protocol v2"),
    ("R58M123ABC device\n", "10.0.0.9:5555", "shell_v2", "adb connect failed \\(failed to connect to '10.0.0.9:5555'"),
])
def test_connect_refuses_with_one_line(adb, devices, serial, features, message):
    (adb / "devices").write_text(devices)
    (adb / "features").write_text(features)
    with pytest.raises(TransportError, match=message) as e:
        ADBTransport(serial).connect()
    assert "\n" not in str(e.value)


def test_collect_over_adb_wireless(tmp_path, adb):
    """The whole collect path over adb: agent bundle pushed, models pushed once, real measurements."""
    inv = tmp_path / "inv.yaml"
    inv.write_text(f"targets:\n  - name: phone\n    profile: android-adb\n    transport: adb\n"
                   f"    serial: 192.168.1.40:5555\n    python: {sys.executable}\n    workdir: {tmp_path}/phone\n")
    zoo = make_zoo(tmp_path / "zoo", ["dc-w025-d2-r32-float32", "dc-w025-d2-r32-int8"])
    out = tmp_path / "runs"
    assert main(["-i", str(inv), "--zoo", str(zoo), "--out", str(out), "--runs", "5", "--threads", "1,2",
                 "--background-load", "0", "--no-report", "-q"]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    rows = pq.read_table(run / "measurements.parquet").to_pylist()
    assert len(rows) == 4 and all(r["status"] == "ok" and r["target"] == "phone" for r in rows)
    assert all(r["latency_ms_median"] > 0 for r in rows)
    calls = (adb / "calls").read_text()
    assert "'connect', '192.168.1.40:5555'" in calls
    # the agent bundle, each model and each model's reference (a float32 and an int8 one; the small
    # reference for tiny candidates is the int8 candidate itself), once by content hash
    assert calls.count("'push'") == 5
    assert len(list((tmp_path / "phone/models").glob("*.tflite"))) == 4


def test_inventory_adb_fields(tmp_path):
    p = tmp_path / "inv.yaml"
    p.write_text("targets:\n  - name: phone\n    profile: android-adb\n    transport: adb\n")
    with pytest.raises(Exception, match=r"targets\[0\]\.python: expected the path of a Python"):
        load_inventory(p)
    p.write_text("targets:\n  - name: pi\n    profile: raspberry-pi-4\n    host: pi\n    serial: X\n")
    with pytest.raises(Exception, match="serial and adb only with transport: adb"):
        load_inventory(p)
    p.write_text("targets:\n  - name: phone\n    profile: android-adb\n    transport: adb\n    serial: R58\n"
                 "    python: /data/local/tmp/python/bin/python3\n")
    (t,) = load_inventory(p)
    assert (t.transport, t.serial, t.adb, t.workdir) == ("adb", "R58", "adb", "~/.cache/edge-harness/phone")
