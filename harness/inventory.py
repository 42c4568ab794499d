"""Targets (inventory YAML) and device profiles (device_profiles/*.yaml) -> validated dataclasses.

Every error is one line: ``FILE: FIELD: expected ..., got ...``.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.errors import BadInput
from harness.telemetry.meters import TYPES as METER_TYPES

PROFILES_DIR = Path(__file__).resolve().parent.parent / "device_profiles"
TRANSPORTS = ("local", "ssh", "adb")
DEFAULT_WORKDIR = "~/.cache/edge-harness"


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    sha256: str
    description: str
    os: str
    clusters: tuple[dict, ...]
    power_model: dict
    facts: dict = field(default_factory=dict)  # the whole document, for provenance


@dataclass(frozen=True)
class Target:
    name: str
    profile: Profile
    transport: str
    host: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    python: str = "python3"
    workdir: str = DEFAULT_WORKDIR
    provision: str | None = None  # a runtime to install into workdir/venv, or None
    power_meter: dict | None = None   # {type: ..., ...}: see harness.telemetry.meters; None = what the device exposes
    # Measurement hygiene (all optional, all recorded with every job, pinned settings restored):
    governor: str | None = None       # cpufreq governor for every CPU during the session
    nvpmodel: int | None = None       # Jetson power mode during the session
    cooldown_c: float | None = None   # before each job, wait until within this many deg C of the idle baseline
    cpus: tuple[int, ...] | None = None   # pin the inference threads to these CPUs
    serial: str | None = None         # adb: the device's serial, or HOST:PORT for wireless adb
    adb: str = "adb"                  # adb: the client to run


def _is_int(v) -> bool:
    """An integer, and not a YAML true/false (bool is an int subclass in Python)."""
    return isinstance(v, int) and not isinstance(v, bool)


class _UniqueKeys(yaml.SafeLoader):
    """A key given twice in one mapping is an error, not the last one silently winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for k, _ in node.value:
            key = self.construct_object(k, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", k.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(path: Path):
    """A YAML file's content; unreadable, invalid or with a key given twice: one line naming
    file:line:column (the inventory, plans, sweep files and QoE weights all read YAML so)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read ({getattr(e, 'strerror', None) or 'not text'})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeys)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BadInput(f"{where}: invalid YAML ({problem})") from None


def _expect(cond: bool, where: str, what: str, got) -> None:
    if not cond:
        raise BadInput(f"{where}: expected {what}, got {got!r}")


# radio: mW per Mbit/s sent and received (= mJ per Mbit) and the radio's active power while a
# request is away; the linear model of Huang et al., MobiSys'12.
RADIO_KEYS = ("up_mj_per_mbit", "down_mj_per_mbit", "active_mw")


def load_profile(name: str, profiles_dir: Path = PROFILES_DIR) -> Profile:
    path = profiles_dir / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in profiles_dir.glob("*.yaml")))
        raise BadInput(f"{path}: no such device profile (known: {known})")
    doc = load_yaml(path)
    _expect(isinstance(doc, dict), str(path), "a mapping", type(doc).__name__)
    _expect(doc.get("name") == name, f"{path}: name", f"{name!r} (the file's name)", doc.get("name"))
    _expect(doc.get("os") in ("linux", "android"), f"{path}: os", "'linux' or 'android'", doc.get("os"))
    clusters = (doc.get("cpu") or {}).get("clusters")
    _expect(isinstance(clusters, list) and clusters, f"{path}: cpu.clusters", "a non-empty list", clusters)
    for i, c in enumerate(clusters):
        w = f"{path}: cpu.clusters[{i}]"
        _expect(isinstance(c, dict) and isinstance(c.get("name"), str), f"{w}.name", "a string", c)
        _expect(isinstance(c.get("cores"), list) and all(isinstance(x, int) for x in c["cores"]),
                f"{w}.cores", "a list of CPU numbers", c.get("cores"))
        apc = c.get("active_w_per_core")
        _expect(apc is None or (isinstance(apc, (int, float)) and apc >= 0), f"{w}.active_w_per_core",
                "a number of watts >= 0", apc)
    sensors = doc.get("sensors")
    _expect(isinstance(sensors, dict) and sensors, f"{path}: sensors", "a mapping of sensor name -> {path or "
            "command, unit}", sensors)
    for k, v in sensors.items():
        _expect(isinstance(v, dict) and ("path" in v or "command" in v), f"{path}: sensors.{k}",
                "a mapping with 'path' or 'command'", v)
        _expect(isinstance(v.get("unit"), str) and v["unit"], f"{path}: sensors.{k}.unit", "the unit it reports in",
                v.get("unit"))
    knobs = doc.get("knobs", {})
    _expect(isinstance(knobs, dict) and all(isinstance(v, dict) for v in knobs.values()), f"{path}: knobs",
            "a mapping of knob name -> {path or command, ...}", knobs)
    pm = doc.get("power_model")
    _expect(isinstance(pm, dict), f"{path}: power_model", "a mapping", pm)
    for k in ("idle_w", "active_w_per_core"):
        _expect(isinstance(pm.get(k), (int, float)) and pm[k] >= 0, f"{path}: power_model.{k}",
                "a number of watts >= 0", pm.get(k))
    bwh = doc.get("battery_wh")
    _expect(bwh is None or (isinstance(bwh, (int, float)) and not isinstance(bwh, bool) and bwh > 0),
            f"{path}: battery_wh", "a battery capacity in Wh > 0 (absent: no battery)", bwh)
    radio = doc.get("radio")   # a per-byte radio energy model (simulator.offload), an estimate
    _expect(radio is None or isinstance(radio, dict), f"{path}: radio", "a mapping", radio)
    for k in RADIO_KEYS if radio is not None else ():
        v = radio.get(k)
        _expect(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0, f"{path}: radio.{k}",
                "a number >= 0", v)
    server = doc.get("server")  # this device as an edge server (simulator.offload)
    _expect(server is None or isinstance(server, dict), f"{path}: server", "a mapping", server)
    if server is not None:
        for k, lo in (("speedup", 0.0), ("rtt_ms", 0.0)):
            v = server.get(k)
            _expect(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= lo and (k != "speedup" or v > 0),
                    f"{path}: server.{k}", "a number > 0" if k == "speedup" else "a number >= 0", v)
    return Profile(name, path, hashlib.sha256(path.read_bytes()).hexdigest(), str(doc.get("description", "")),
                   doc["os"], tuple(clusters), pm, doc)


def local_target(profiles_dir: Path = PROFILES_DIR) -> Target:
    return Target("local", load_profile("x86-linux", profiles_dir), "local", python=sys.executable,
                  workdir=DEFAULT_WORKDIR + "/local")


def load_inventory(path: str | Path | None, profiles_dir: Path = PROFILES_DIR) -> list[Target]:
    """Targets of ``path``; with no inventory the local machine is the only target."""
    if path is None:
        return [local_target(profiles_dir)]
    path = Path(path)
    doc = load_yaml(path)
    _expect(isinstance(doc, dict) and isinstance(doc.get("targets"), list), f"{path}: targets",
            "a list of targets", doc.get("targets") if isinstance(doc, dict) else doc)
    out: list[Target] = []
    names: set[str] = set()
    for i, t in enumerate(doc["targets"]):
        w = f"{path}: targets[{i}]"
        _expect(isinstance(t, dict), w, "a mapping", t)
        known = ("name", "profile", "transport", "host", "user", "port", "identity_file", "python", "workdir",
                 "provision", "power_meter", "governor", "nvpmodel", "cooldown_c", "cpus", "serial", "adb")
        unknown = set(t) - set(known)
        _expect(not unknown, f"{w}", "only " + ", ".join(known), sorted(unknown))
        name = t.get("name")
        _expect(isinstance(name, str) and name and all(ch.isalnum() or ch in "-_." for ch in name),
                f"{w}.name", "a name of letters, digits, '-', '_', '.'", name)
        _expect(name not in names, f"{w}.name", "a unique name", name)
        names.add(name)
        tr = t.get("transport", "ssh")
        _expect(tr in TRANSPORTS, f"{w}.transport", " or ".join(TRANSPORTS), tr)
        _expect(isinstance(t.get("profile"), str), f"{w}.profile", "a device profile name", t.get("profile"))
        try:
            prof = load_profile(t["profile"], profiles_dir)
        except BadInput as e:
            raise BadInput(f"{w}.profile: {e}") from None
        if tr == "ssh":
            _expect(isinstance(t.get("host"), str) and t["host"], f"{w}.host", "an address or ssh config alias",
                    t.get("host"))
        if tr == "adb":
            # Android has no python3 of its own: the interpreter must be named (a CPython pushed to
            # /data/local/tmp, or Termux's on a rooted phone).
            _expect(isinstance(t.get("python"), str) and t["python"], f"{w}.python",
                    "the path of a Python the adb shell user can run on the phone", t.get("python"))
        else:
            _expect(t.get("serial") is None and t.get("adb") is None, f"{w}", "serial and adb only with transport: adb",
                    sorted(k for k in ("serial", "adb") if t.get(k) is not None))
        port = t.get("port")
        _expect(port is None or (_is_int(port) and 0 < port < 65536), f"{w}.port", "an integer 1-65535", port)
        for k in ("user", "identity_file", "python", "workdir", "provision", "serial", "adb"):
            _expect(t.get(k) is None or isinstance(t[k], str), f"{w}.{k}", "a string", t.get(k))
        _expect(t.get("provision") in (None, "ai-edge-litert", "tflite-runtime"), f"{w}.provision",
                "ai-edge-litert or tflite-runtime", t.get("provision"))
        pm = t.get("power_meter")
        _expect(pm is None or (isinstance(pm, dict) and pm.get("type") in METER_TYPES), f"{w}.power_meter.type",
                "one of " + ", ".join(METER_TYPES), pm.get("type") if isinstance(pm, dict) else pm)
        _expect(pm is None or pm.get("attached") in (None, "device", "host"), f"{w}.power_meter.attached",
                "device (read by the agent, the default) or host (attached to this computer)", (pm or {}).get("attached"))
        _expect(t.get("governor") is None or isinstance(t["governor"], str), f"{w}.governor",
                "a cpufreq governor name (performance, userspace, ...)", t.get("governor"))
        _expect(t.get("nvpmodel") is None or _is_int(t["nvpmodel"]), f"{w}.nvpmodel", "a power mode id",
                t.get("nvpmodel"))
        cd = t.get("cooldown_c")
        _expect(cd is None or (isinstance(cd, (int, float)) and not isinstance(cd, bool) and cd > 0), f"{w}.cooldown_c",
                "degrees C > 0", cd)
        cpus = t.get("cpus")
        _expect(cpus is None or (isinstance(cpus, list) and cpus and all(_is_int(c) and c >= 0 for c in cpus)),
                f"{w}.cpus", "a list of CPU numbers", cpus)
        default_py = sys.executable if tr == "local" else "python3"
        out.append(Target(name, prof, tr, t.get("host"), t.get("user"), port, t.get("identity_file"),
                          t.get("python") or default_py, t.get("workdir") or DEFAULT_WORKDIR + f"/{name}",
                          t.get("provision"), pm, t.get("governor"), t.get("nvpmodel"),
                          float(cd) if cd is not None else None, tuple(cpus) if cpus else None,
                          t.get("serial"), t.get("adb") or "adb"))
    _expect(bool(out), f"{path}: targets", "at least one target", [])
    return out
