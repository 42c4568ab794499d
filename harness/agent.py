"""On-device agent: what runs ON the target, deployed as one zip (harness.bundle) together with
the power meters (harness/telemetry/meters) and the tool-output parsers it uses.

Stdlib + NumPy + a TFLite runtime (tflite_runtime, ai_edge_litert or tensorflow.lite, the first
that imports). Python 3.7 compatible. Speaks JSON lines: one request per line on stdin, one
response per line on stdout (hello, measure, context, clock, setup, restore, load, bye). Exits when
stdin closes; background-load processes it started are stopped, pinned settings restored and
meters closed on every path out (busy children also stop themselves if the agent is killed).

    python3 agent-<sha>.pyz [--log FILE]   # serve requests; stderr (runtime chatter) to FILE
    python3 agent-<sha>.pyz --provision DIR  # create DIR/venv with NumPy and a TFLite runtime
"""

import glob
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time

AGENT_PROTOCOL = 1
RUNTIMES = ("tflite_runtime", "ai_edge_litert", "tensorflow")

if __name__ == "__main__" and not __package__:
    # Run as a plain script from a checkout: make the harness package importable. (Deployed, the
    # agent runs from a zip bundle that holds harness/agent.py, harness/telemetry/meters and the parsers.)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness.telemetry.meters import MeterError, PowerSampler, discover, energy_summary, open_meter, read_num, read_text  # noqa: E402
from harness.telemetry.parsers import ParseError, parse_dumpsys_battery, parse_nvpmodel, parse_thermalservice  # noqa: E402

# cpufreq drivers whose "performance" governor sets an energy preference, not a frequency (the
# hardware picks it): on them a frequency below scaling_max_freq says nothing about throttling.
HWP_DRIVERS = ("intel_pstate", "intel_cpufreq", "amd-pstate", "amd-pstate-epp", "amd_pstate", "amd_pstate_epp")

# A busy loop that exits by itself when its parent (the agent, whose pid is argv[1]) is gone,
# even if the agent died before this child got to look.
_BUSY = (
    "import os, sys\n"
    "p = int(sys.argv[1])\n"
    "while os.getppid() == p:\n"
    "    for _ in range(200000):\n"
    "        pass\n"
)


# A busy process at a duty cycle: busy for duty x 50 ms, idle for the rest; a new duty arrives as a
# line on its stdin (no restart: starting Python is itself load); it exits with its parent.
_DUTY = (
    "import os, select, sys, time\n"
    "p, duty = int(sys.argv[1]), float(sys.argv[2])\n"
    "while os.getppid() == p:\n"
    "    if select.select([sys.stdin], [], [], 0)[0]:\n"
    "        line = sys.stdin.readline()\n"
    "        if not line:\n"
    "            break\n"
    "        duty = float(line)\n"
    "    t0 = time.monotonic()\n"
    "    while time.monotonic() - t0 < duty * 0.05:\n"
    "        pass\n"
    "    if duty < 1.0:\n"
    "        time.sleep(0.05 * (1.0 - duty))\n"
)


def _first_line(e):
    """An exception as one line: its message's first line, or its type when the message is empty."""
    return str(e).splitlines()[0] if str(e).strip() else type(e).__name__


class Runtime(object):
    def __init__(self, name, version, interpreter_cls):
        self.name = name
        self.version = version
        self.Interpreter = interpreter_cls


def load_runtime(prefer=None):
    """Return the first TFLite runtime that imports (``prefer`` first if given)."""
    order = ([prefer] if prefer else []) + [r for r in RUNTIMES if r != prefer]
    errors = []
    for name in order:
        try:
            if name == "tflite_runtime":
                import tflite_runtime
                from tflite_runtime.interpreter import Interpreter
                return Runtime("tflite-runtime", getattr(tflite_runtime, "__version__", "?"), Interpreter)
            if name == "ai_edge_litert":
                import ai_edge_litert
                from ai_edge_litert.interpreter import Interpreter
                return Runtime("ai-edge-litert", getattr(ai_edge_litert, "__version__", "?"), Interpreter)
            if name == "tensorflow":
                import tensorflow as tf
                return Runtime("tensorflow.lite", tf.__version__, tf.lite.Interpreter)
        except Exception as e:  # ImportError, or a runtime that crashes on import (NumPy 2)
            errors.append("%s: %s" % (name, _first_line(e)))
    raise RuntimeError("no TFLite runtime importable (" + "; ".join(errors) + ")")


# ---------------------------------------------------------------- context snapshot

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _system_cpu_s():
    """CPU-seconds all CPUs have been busy since boot (/proc/stat), or None."""
    line = (read_text("/proc/stat") or "").split("\n", 1)[0].split()
    if not line or line[0] != "cpu":
        return None
    v = [int(x) for x in line[1:]]
    return (sum(v[:8]) - v[3] - (v[4] if len(v) > 4 else 0)) / float(_HZ)   # all but idle and iowait


def _proc_cpu_s(pid):
    st = read_text("/proc/%d/stat" % pid)
    if not st:
        return 0.0
    f = st.rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / float(_HZ)


class Sources(object):
    """Where this device exposes its state: discovered once per agent, read at every snapshot."""

    def __init__(self, root=None):
        # EDGE_AGENT_SYSFS_ROOT prefixes every sysfs path: tests point it at a tree they write.
        root = os.environ.get("EDGE_AGENT_SYSFS_ROOT", "") if root is None else root
        self.cpufreq = sorted(glob.glob(root + "/sys/devices/system/cpu/cpu[0-9]*/cpufreq"))
        self.cpufreq_driver = read_text(self.cpufreq[0] + "/scaling_driver") if self.cpufreq else None
        self.zones = [(z, (read_text(z + "/type") or z.split("/")[-1]) + ":" + z.split("zone")[-1])
                      for z in sorted(glob.glob(root + "/sys/class/thermal/thermal_zone[0-9]*"))]
        self.throttle = glob.glob(root + "/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle/*_throttle_count")
        self.vcgencmd = shutil.which("vcgencmd")
        self.dumpsys = shutil.which("dumpsys")   # Android: the framework's thermal status
        bat = root + "/sys/class/power_supply/battery"
        self.battery = bat if os.path.exists(bat + "/capacity") else None
        # Jetson GPU: load (0..1000) under the GPU's platform device, frequency from its devfreq node.
        loads = []
        for pat in ("/sys/devices/gpu.0/load", "/sys/devices/platform/gpu.0/load", "/sys/devices/platform/*.ga10b/load",
                    "/sys/devices/platform/*.gv11b/load", "/sys/devices/*.gp10b/load", "/sys/devices/*.gpu/load"):
            loads += sorted(glob.glob(root + pat))
        self.gpu_load = loads[0] if loads else None
        self.gpu_freq = None
        for d in sorted(glob.glob(root + "/sys/class/devfreq/*")):
            if any(k in d.rsplit("/", 1)[1] for k in ("gpu", "gp10b", "gv11b", "ga10b", "gk20a", "gm20b")):
                if os.path.exists(d + "/cur_freq"):
                    self.gpu_freq = d + "/cur_freq"
                    break
        nvp = root + "/var/lib/nvpmodel/status"      # "pmode:0002 fmode:..." on JetPack
        self.nvpmodel = nvp if os.path.exists(nvp) else None
        self.root = root
        self.power = discover(root)
        self._meters = {}

    def meter(self, spec):
        """The power meter a request names (opened once, kept open), else the discovered one."""
        if not spec:
            return self.power
        key = json.dumps(spec, sort_keys=True)
        if key not in self._meters:
            self._meters[key] = open_meter(spec, self.root)
        return self._meters[key]

    def close(self):
        """Stop what the meters hold (a tegrastats process, a tty, an I2C handle)."""
        for m in [self.power] + list(self._meters.values()):
            if m is not None:
                try:
                    m.close()
                except Exception:
                    pass


def context_snapshot(src=None):
    """What the OS exposes about the device's state right now. Missing sources are omitted."""
    src = src or Sources()
    snap = {"t_wall": time.time(), "t_mono": time.monotonic()}
    freqs, govs, maxf = {}, {}, {}
    for d in src.cpufreq:
        cpu = d.split("/")[-2]
        f = read_num(d + "/scaling_cur_freq", 1e-3)
        if f is not None:
            freqs[cpu] = f
        g = read_text(d + "/scaling_governor")
        if g:
            govs[cpu] = g
        m = read_num(d + "/scaling_max_freq", 1e-3)
        if m is not None:
            maxf[cpu] = m
    if freqs:
        snap["cpu_freq_mhz"] = freqs
    if govs:
        snap["governor"] = govs
    if maxf:
        snap["cpu_max_freq_mhz"] = maxf
    if src.cpufreq_driver not in HWP_DRIVERS:
        # The frequency the governor was set to hold: scaling_max_freq under "performance",
        # scaling_setspeed under "userspace". A CPU below it is capped by something else.
        setf = {}
        for d in src.cpufreq:
            cpu = d.split("/")[-2]
            g = govs.get(cpu)
            f = maxf.get(cpu) if g == "performance" else (
                read_num(d + "/scaling_setspeed", 1e-3) if g == "userspace" else None)
            if f:
                setf[cpu] = f
        if setf:
            snap["cpu_set_freq_mhz"] = setf
    temps = {}
    for z, name in src.zones:
        t = read_num(z + "/temp", 1e-3)
        if t is not None:
            temps[name] = t
    if temps:
        snap["temp_c"] = temps
    thr = 0
    seen = False
    for p in src.throttle:
        v = read_num(p)
        if v is not None:
            thr += int(v)
            seen = True
    if seen:
        snap["throttle_count"] = thr
    if src.vcgencmd:
        try:
            out = subprocess.run([src.vcgencmd, "get_throttled"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 timeout=2, universal_newlines=True).stdout
            if "=" in out:
                snap["vcgencmd_throttled"] = int(out.strip().split("=")[1], 16)
        except Exception:
            pass
    if src.dumpsys:
        try:
            th = parse_thermalservice(_dumpsys(src, "thermalservice"))[0]
            snap["android_thermal_status"] = th["thermal_status"]
            for k, v in th.items():
                if k.startswith("temp_") and k.endswith("_c"):
                    temps["hal:" + k[5:-2]] = v
            if temps:
                snap["temp_c"] = temps
        except (OSError, subprocess.SubprocessError, ParseError) as e:
            snap["android_thermal_error"] = _first_line(e)
    if src.dumpsys and not src.battery:
        # Newer Android keeps power_supply from the adb shell user: the framework still tells.
        try:
            bat = parse_dumpsys_battery(_dumpsys(src, "battery"))[0]
            _put_battery(snap, bat.get("level_pct"), bat.get("status"),
                         bool(bat["charging"]) if "status" in bat else None, bat.get("temperature_c"))
        except (OSError, subprocess.SubprocessError, ParseError) as e:
            snap["android_battery_error"] = _first_line(e)
    if src.battery:
        st = read_text(src.battery + "/status")
        _put_battery(snap, read_num(src.battery + "/capacity"), st or None, st.lower() == "charging" if st else None,
                     read_num(src.battery + "/temp", 0.1))
    if src.gpu_load:
        g = read_num(src.gpu_load, 0.1)
        if g is not None:
            snap["gpu_load_pct"] = g
    if src.gpu_freq:
        f = read_num(src.gpu_freq, 1e-6)
        if f is not None:
            snap["gpu_freq_mhz"] = f
    if src.nvpmodel:
        st = read_text(src.nvpmodel) or ""
        for part in st.split():
            if part.startswith("pmode:"):
                try:
                    snap["nvpmodel"] = int(part[6:])
                except ValueError:
                    pass
    cpu = _system_cpu_s()
    if cpu is not None:
        snap["system_cpu_busy_s"] = cpu
        t = os.times()
        snap["agent_cpu_s"] = t[0] + t[1]
    try:
        snap["loadavg"] = list(os.getloadavg())
    except OSError:
        pass
    mem = read_text("/proc/meminfo")
    if mem:
        for line in mem.splitlines():
            if line.startswith("MemAvailable:"):
                snap["mem_available_mb"] = int(line.split()[1]) / 1024.0
    return snap


def _put_battery(snap, level_pct, status, charging, temp_c):
    """The battery fields of a snapshot, whichever source read them (sysfs or dumpsys battery)."""
    for k, v in (("battery_pct", level_pct), ("battery_status", status), ("charging", charging),
                 ("battery_temp_c", temp_c)):
        if v is not None:
            snap[k] = v


def _dumpsys(src, service):
    return subprocess.run([src.dumpsys, service], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=5,
                          universal_newlines=True).stdout


# ---------------------------------------------------------------- power and energy

def power_reading(meter):
    """One reading of ``meter`` for a context trace: power_mw, or a cumulative energy counter
    (energy_counter_mj; the recorder turns counter deltas into power)."""
    if meter is None:
        return {}
    out = {"power_source": meter.name}
    if meter.kind == "energy":
        v = meter.read_uj()
        if v is not None:
            out["energy_counter_mj"] = sum(v) / 1e3
    else:
        v = meter.read()
        if v is not None:
            out["power_mw"] = v
    return out


def _idle_and_run(src, req, run):
    """Measure idle power for ``idle_s`` just before ``run(min_s)`` (the timed loop, which keeps
    invoking until ``min_s`` have passed and returns (its result, inferences run)), then energy over
    exactly that window. The window spans at least 10 meter periods, so a fast model on a slow
    meter is still integrated over real samples. Returns (result, energy dict or None)."""
    if req.get("host_meter") and req.get("energy", True):
        return _window_for_host(req, run)
    if src is None or not req.get("energy", True):
        return run(0.0)[0], None
    idle_s = float(req.get("idle_s", 0.5))
    if src.kind == "energy":
        t_i = time.monotonic()
        a = src.read_uj()
        time.sleep(idle_s)
        b = src.read_uj()
        t_a = time.monotonic()
        out, n_inf = run(float(req.get("energy_min_window_s", 0.1)))
        t_b = time.monotonic()
        c = src.read_uj()
        if None in (a, b, c):
            return out, None
        info = energy_summary(src.delta_mj(b, c), src.delta_mj(a, b) / (t_a - t_i), t_a, t_b)
        info.update({"source": src.name, "method": "counter", "n_power_samples": 0})
    else:
        sampler = PowerSampler(src, float(req.get("power_hz", 50.0))).start()
        try:   # a slow meter (firmware call, serial) caps the rate: sampler.hz
            out, n_inf, t_i, t_a, t_b = _windows(sampler.hz, req, run)
        finally:
            sampler.stop()
        info = sampler.window_energy(t_i, t_a, t_b)
        if info is None:
            return out, None
        info.update({"source": src.name, "method": "sampled %.0f Hz, trapezoid" % sampler.hz})
    info["n_inferences"] = n_inf
    return out, info


def _windows(hz, req, run):
    """The idle window, then the run window stretched to at least 10 periods of a meter sampled
    at ``hz``, with 2 periods of margin at both ends so the samples cover them:
    (run's result, inferences, t_idle, t_start, t_end) on this device's monotonic clock."""
    time.sleep(2.0 / hz)
    t_i = time.monotonic()
    time.sleep(float(req.get("idle_s", 0.5)))
    t_a = time.monotonic()
    out, n_inf = run(float(req.get("energy_min_window_s", 10.0 / hz)))
    t_b = time.monotonic()
    time.sleep(2.0 / hz)
    return out, n_inf, t_i, t_a, t_b


def _window_for_host(req, run):
    """A meter on the host samples; the agent only keeps the same windows on its own clock (the
    host aligns the two clocks and integrates)."""
    out, n_inf, t_i, t_a, t_b = _windows(float(req["host_meter"]["hz"]), req, run)
    return out, {"method": "host", "source": req["host_meter"].get("name", "host"), "t_idle_mono": t_i,
                 "t_start_mono": t_a, "t_end_mono": t_b, "window_s": t_b - t_a, "n_inferences": n_inf}


# ---------------------------------------------------------------- measurement hygiene

def _write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


class Knobs(object):
    """Settings pinned for a session (cpufreq governor, Jetson nvpmodel) and restored at its end,
    also when the host goes away (the agent restores them when its stdin closes)."""

    def __init__(self, src):
        self.src = src
        self.saved_governors = {}
        self.saved_nvpmodel = None
        self.applied = {}

    def setup(self, req):
        errors = []
        gov = req.get("governor")
        if gov:
            if not self.src.cpufreq:
                errors.append("governor: this device exposes no cpufreq (no /sys/devices/system/cpu/cpu*/cpufreq)")
            for d in self.src.cpufreq:
                path = d + "/scaling_governor"
                avail = (read_text(d + "/scaling_available_governors") or "").split()
                if avail and gov not in avail:
                    errors.append("%s: governor %r not available (%s)" % (path, gov, " ".join(avail)))
                    continue
                cur = read_text(path)
                try:
                    _write(path, gov)
                except (IOError, OSError) as e:
                    errors.append("%s: cannot write (%s; pinning needs root)" % (path, e.strerror))
                    continue
                self.saved_governors.setdefault(path, cur)
            if not errors:
                self.applied["governor"] = gov
        mode = req.get("nvpmodel")
        if mode is not None:
            exe = shutil.which("nvpmodel")
            if exe is None:
                errors.append("nvpmodel: not on PATH (not a Jetson?)")
            else:
                q = subprocess.run([exe, "-q"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30,
                                   universal_newlines=True)
                try:
                    prev = parse_nvpmodel(q.stdout)[0].get("power_mode_id")
                except ParseError as e:
                    prev = None
                    errors.append("nvpmodel -q: %s" % e)
                m = subprocess.run([exe, "-m", str(int(mode))], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   timeout=60, universal_newlines=True)
                if m.returncode != 0:
                    errors.append("nvpmodel -m %d failed (exit %d): %s" % (int(mode), m.returncode,
                                                                         m.stdout.strip()[-200:]))
                else:
                    if self.saved_nvpmodel is None:
                        self.saved_nvpmodel = prev
                    self.applied["nvpmodel"] = int(mode)
        if errors:
            self.restore()
            return {"ok": False, "kind": "setup", "error": "; ".join(errors)}
        return {"ok": True, "applied": dict(self.applied), "previous": {
            "governor": dict(self.saved_governors), "nvpmodel": self.saved_nvpmodel}}

    def restore(self):
        errors = []
        for path, value in self.saved_governors.items():
            try:
                if value:
                    _write(path, value)
            except (IOError, OSError) as e:
                errors.append("%s: %s" % (path, e.strerror))
        self.saved_governors = {}
        if self.saved_nvpmodel is not None:
            exe = shutil.which("nvpmodel")
            if exe:
                subprocess.run([exe, "-m", str(self.saved_nvpmodel)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=60)
            self.saved_nvpmodel = None
        self.applied = {}
        return {"ok": not errors, "error": "; ".join(errors) or None}


def cooldown(src, baseline, above_c, timeout_s=300.0, poll_s=0.5):
    """Wait until every thermal zone is within ``above_c`` of its ``baseline`` temperature (or
    ``timeout_s`` passed). Returns what happened, to be recorded with the job."""
    t0 = time.monotonic()
    while True:
        temps = context_snapshot(src).get("temp_c", {})
        read = [z for z in baseline if z in temps]
        over = max([temps[z] - baseline[z] for z in read] or [0.0])
        # A zone that could not be read this time is not evidence of being cool: wait for it.
        reached = len(read) == len(baseline) and over <= above_c
        waited = time.monotonic() - t0
        if reached or waited >= timeout_s:
            return {"waited_s": waited, "reached": reached, "above_baseline_c": over,
                    "limit_c": above_c, "zones": len(read)}
        time.sleep(poll_s)


# ---------------------------------------------------------------- background load

def start_background_load(n):
    """Start ``n`` busy processes, each pinned to one CPU (from the last CPU down) where possible."""
    procs = []
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        cpus = []
    for i in range(int(n)):
        p = subprocess.Popen([sys.executable, "-c", _BUSY, str(os.getpid())], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pinned = None
        if cpus:
            pinned = cpus[-1 - (i % len(cpus))]
            try:
                os.sched_setaffinity(p.pid, {pinned})
            except OSError:
                pinned = None
        procs.append((p, pinned))
    return procs


def stop_background_load(procs):
    for p, _ in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 2.0
    for p, _ in procs:
        try:
            p.wait(timeout=max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class LiveLoad(object):
    """Other apps' load played back: ``busy`` CPUs as one process per CPU slot, slot i at duty
    min(1, max(0, busy - i)), each pinned to one CPU from the last CPU down. Processes are started
    once and told new duties through a pipe."""

    def __init__(self):
        self.procs = []     # [(Popen, cpu)], slot order
        self.duty = []
        self.busy = 0.0

    def _slot(self, i):
        while len(self.procs) <= i:
            pr = subprocess.Popen([sys.executable, "-c", _DUTY, str(os.getpid()), "0.0"], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, universal_newlines=True)
            try:
                cpus = sorted(os.sched_getaffinity(0))
                os.sched_setaffinity(pr.pid, {cpus[-1 - (len(self.procs) % len(cpus))]})
            except (AttributeError, OSError):
                pass
            self.procs.append((pr, None))
            self.duty.append(0.0)

    def set(self, busy):
        busy = max(0.0, float(busy))
        n = int(busy + 0.999) if busy >= 0.02 else 0
        for i in range(max(n, len(self.procs))):
            d = min(1.0, max(0.0, busy - i))
            d = 0.0 if d < 0.02 else d
            if i >= len(self.procs) and d == 0.0:
                continue
            self._slot(i)
            if abs(d - self.duty[i]) >= 0.01:
                try:
                    self.procs[i][0].stdin.write("%r\n" % d)
                    self.procs[i][0].stdin.flush()
                except (OSError, ValueError):
                    pass
                self.duty[i] = d
        self.busy = busy

    def stop(self):
        for pr, _ in self.procs:
            try:
                pr.stdin.close()
            except (OSError, ValueError):
                pass
        stop_background_load(self.procs)
        self.procs, self.duty = [], []
        self.busy = 0.0

    def pids(self):
        return [pr.pid for pr, _ in self.procs]


class FreqCap(object):
    """A trace's CPU frequency played as a cap: every CPU's scaling_max_freq (needs root and
    cpufreq), clamped to what the CPU allows; the values found are restored at the end."""

    def __init__(self, src):
        self.src = src
        self.saved = {}
        self.mhz = None

    def caps(self):
        paths = [d + "/scaling_max_freq" for d in self.src.cpufreq]
        ok = bool(paths) and all(os.access(q, os.W_OK) for q in paths)
        why = None if ok else ("no cpufreq on this device" if not paths else "scaling_max_freq is not writable (root?)")
        return {"ok": True, "cpufreq_cap": ok, "why": why, "cpus": len(paths)}

    def set(self, mhz):
        if mhz is None or (self.mhz is not None and abs(float(mhz) - self.mhz) < 1.0):
            return
        for d in self.src.cpufreq:
            q = d + "/scaling_max_freq"
            lo = int(read_text(d + "/cpuinfo_min_freq") or 0)
            hi = int(read_text(d + "/cpuinfo_max_freq") or 0) or None
            khz = max(lo, int(float(mhz) * 1000))
            if hi:
                khz = min(hi, khz)
            self.saved.setdefault(q, read_text(q))
            _write(q, str(khz))
        self.mhz = float(mhz)

    def restore(self):
        for q, v in self.saved.items():
            try:
                if v:
                    _write(q, v)
            except (IOError, OSError):
                pass
        self.saved = {}
        self.mhz = None


class LiveServer(object):
    """Serves a policy's choices on the device's clock, one decision period per request: the
    period's requests at their arrival offsets, one FIFO worker, the load played meanwhile. A
    switch loads the new model (interpreter, tensors, first inference) before the first request
    of the period is served, so its time is what the request waits; up to ``max_loaded`` models
    stay loaded (1: every switch loads, as the simulator assumes)."""

    def __init__(self, rt, src=None):
        self.rt = rt
        self.loaded = []          # [(key, interpreter)], most recent last
        self.current = None
        self.load = LiveLoad()
        self.cap = FreqCap(src or Sources())

    def _play(self, entry):
        self.load.set(entry[1])
        if len(entry) > 2 and entry[2] is not None:
            self.cap.set(entry[2])

    def _activate(self, model, threads, max_loaded):
        key = (model, int(threads))
        if key == self.current:
            return None
        self.current = key
        for i, (k, _it) in enumerate(self.loaded):
            if k == key:
                self.loaded.append(self.loaded.pop(i))
                return {"cached": True, "switch_ms": 0.0}
        t = time.perf_counter()
        it = self.rt.Interpreter(model_path=model, num_threads=int(threads))
        it.allocate_tensors()
        _inputs(it, 0)
        it.invoke()
        ms = (time.perf_counter() - t) * 1e3
        self.loaded.append((key, it))
        while len(self.loaded) > max(1, int(max_loaded)):
            self.loaded.pop(0)
        return {"cached": False, "switch_ms": ms}

    def period(self, req, src=None):
        t0 = time.monotonic()
        sched = sorted([float(e[0])] + list(e[1:]) for e in req.get("load", []))   # [offset, busy(, MHz cap)]
        si = 0
        while si < len(sched) and sched[si][0] <= 0.0:
            self._play(sched[si])
            si += 1
        switch = self._activate(req["model"], req.get("threads", 1), req.get("max_loaded", 1))
        it = self.loaded[-1][1]
        out = []
        for a in req.get("arrivals", []):
            a = float(a)
            while True:   # wait for the arrival, applying the load schedule meanwhile
                now = time.monotonic() - t0
                if si < len(sched) and sched[si][0] <= min(now, a):
                    self._play(sched[si])
                    si += 1
                    continue
                if now >= a:
                    break
                nxt = min(a, sched[si][0] if si < len(sched) else a)
                if nxt - now > 0.002:   # sleep, then spin the last 2 ms: timer slack is not the model's latency
                    time.sleep(nxt - now - 0.002)
            start = time.monotonic() - t0
            it.invoke()
            fin = time.monotonic() - t0
            out.append([a, start, fin])
        while si < len(sched):   # the rest of the schedule, so the next period starts in its load
            self._play(sched[si])
            si += 1
        resp = {"ok": True, "requests": out, "switch": switch, "t0_mono": t0, "busy": self.load.busy,
                "freq_cap_mhz": self.cap.mhz,
                "load_pids": self.load.pids(), "period_s": time.monotonic() - t0}
        if src is not None and req.get("context"):
            resp["context"] = context_snapshot(src)
        return resp

    def close(self):
        self.load.stop()
        self.cap.restore()
        self.loaded = []
        self.current = None


# ---------------------------------------------------------------- measurement

def _median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except (OSError, IOError):
        return False


def _peak_rss_mb(reset_ok):
    if reset_ok:
        st = read_text("/proc/self/status") or ""
        for line in st.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0, "VmHWM since model load"
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":
        kb /= 1024.0
    return kb / 1024.0, "ru_maxrss over the agent's lifetime"


def _inputs(interp, seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    for d in interp.get_input_details():
        dt = np.dtype(d["dtype"])
        shape = [int(s) for s in d["shape"]]
        if dt.kind == "f":
            x = rng.random(shape).astype(dt)
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            x = rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dt)
        else:
            x = np.zeros(shape, dt)
        interp.set_tensor(d["index"], x)


def measure(rt, req, src=None, knobs=None):
    """Load, first inference, warm-up until stable, then ``n_runs`` timed invokes (all kept)."""
    src = src or Sources()
    clock = time.perf_counter
    threads = int(req.get("threads", 1))
    n_runs = int(req.get("n_runs", 30))
    wu = req.get("warmup", {})
    window = int(wu.get("window", 10))
    wu_max = int(wu.get("max_runs", 200))
    wu_max_s = float(wu.get("max_s", 10.0))
    tol = float(wu.get("tolerance", 0.05))
    procs = []
    interp = None
    cpus = None
    try:
        try:
            meter = src.meter(req.get("power_meter"))
        except MeterError as e:
            return {"ok": False, "kind": "meter", "error": str(e)}
        hygiene = {}
        cd = req.get("cooldown")
        if cd:
            hygiene["cooldown"] = cooldown(src, cd["baseline"], float(cd["above_c"]), float(cd.get("timeout_s", 300)))
        cpus = req.get("cpus")
        if cpus:
            # Threads the interpreter creates inherit the agent's affinity.
            old_affinity = os.sched_getaffinity(0)
            try:
                os.sched_setaffinity(0, set(int(c) for c in cpus))
            except (OSError, ValueError) as e:
                cpus = None
                return {"ok": False, "kind": "setup", "error": "cpus %s: cannot pin (%s)" % (req["cpus"], e)}
            hygiene["cpu_affinity"] = sorted(os.sched_getaffinity(0))
        if knobs is not None and knobs.applied:
            hygiene["pinned"] = dict(knobs.applied)
        before = context_snapshot(src)
        procs = start_background_load(req.get("background_load", 0))
        if procs:
            time.sleep(float(req.get("load_settle_s", 0.3)))
        reset_ok = _reset_peak_rss()
        t0 = clock()
        try:
            interp = rt.Interpreter(model_path=req["model"], num_threads=threads)
            interp.allocate_tensors()
        except Exception as e:
            return {"ok": False, "kind": "model", "error": "cannot load model: %s" % _first_line(e)}
        load_ms = (clock() - t0) * 1e3
        _inputs(interp, int(req.get("seed", 0)))
        t0 = clock()
        interp.invoke()
        first_ms = (clock() - t0) * 1e3
        warm = []
        stable = False
        t_start = clock()
        while len(warm) < wu_max and clock() - t_start < wu_max_s:
            t0 = clock()
            interp.invoke()
            warm.append((clock() - t0) * 1e3)
            if len(warm) >= window and len(warm) % 2 == 0:
                w = warm[-window:]
                a, b = _median(w[: window // 2]), _median(w[window // 2:])
                if abs(a - b) <= tol * b:
                    stable = True
                    break
        def timed(min_s, interp=interp):
            samples = []
            start = clock()
            for _ in range(n_runs):
                t0 = clock()
                interp.invoke()
                samples.append((clock() - t0) * 1e3)
            n = n_runs
            while clock() - start < min_s:   # more inferences for the energy window, not timed
                interp.invoke()
                n += 1
            return samples, n
        samples, energy = _idle_and_run(meter, req, timed)
        bg_cpu = sum(_proc_cpu_s(p.pid) for p, _ in procs)
        rss, rss_method = _peak_rss_mb(reset_ok)
        after = context_snapshot(src)
        wall = after["t_mono"] - before["t_mono"]
        if "system_cpu_busy_s" in before and "system_cpu_busy_s" in after and wall >= 0.5:
            # CPU time spent during the job by anything other than the agent and the background
            # load it started: load the measurement did not ask for. Counters tick in 1/HZ s, so
            # jobs shorter than 0.5 s are not judged.
            other = (after["system_cpu_busy_s"] - before["system_cpu_busy_s"]) - (
                after["agent_cpu_s"] - before["agent_cpu_s"]) - bg_cpu
            after["external_load_cpus"] = min(float(os.cpu_count() or 1), max(0.0, other / wall))
        ref = _paired_reference(rt, interp, req.get("reference"), threads, n_runs, clock, _median(samples) if samples else None)
        return {
            "ok": True, "runtime": rt.name, "runtime_version": rt.version, "threads": threads, "reference": ref,
            "delegate_partitions": _delegate_partitions(interp),
            "load_ms": load_ms, "first_inference_ms": first_ms, "warmup_ms": warm,
            "warmup_stable": stable, "samples_ms": samples, "peak_rss_mb": rss, "rss_method": rss_method,
            "background": [{"pid": p.pid, "cpu": c} for p, c in procs],
            "context_before": before, "context_after": after, "energy": energy, "hygiene": hygiene,
        }
    finally:
        if cpus:
            os.sched_setaffinity(0, old_affinity)
        stop_background_load(procs)
        del interp


def _delegate_partitions(interp):
    """How many pieces of the graph a delegate runs (XNNPACK, on by default for CPU): 1 when it
    takes the whole graph, more when operators it does not support (a hybrid convolution, an
    int8 RELU of its own) split the graph and run on the reference kernels in between, 0 when it
    takes nothing. None when the runtime does not say."""
    try:
        return sum(1 for op in interp._get_ops_details() if op.get("op_name") == "DELEGATE")
    except Exception:
        return None


def _paired_reference(rt, interp, spec, threads, n_runs, clock, model_median_ms=None):
    """Relative latency: after the timed loop (so neither its samples nor its energy see this),
    ``n`` pairs of one model invoke and one reference-model invoke, back to back, alternating
    which goes first. A machine whose speed drifts (a shared VM, DVFS, a busy neighbour) moves
    both alike, so their ratio repeats far better than either alone. A spec with a ``small``
    reference uses that one when the model's median in the timed loop is below its ``below_ms``
    (a tiny model moves with a tiny reference); the result names the one used and why.

    A spec with ``blocks`` ({"skip": k, "timed": m}) alternates blocks instead of single
    invokes: each model is invoked k times untimed for the timed record (kept apart as
    ``*_switch_ms``), then m times timed, the two models taking turns to go first. Right after
    a large model the reference runs up to 1.6x slower for an invoke or two (its caches, the
    core's clock), so single alternation biases the ratio of a large candidate low (a 2.5-ms
    NAS-Bench-201 network by 25-30% on this project's VM); pair ``i`` is then the ``i``-th timed
    invoke of each, from the same pair of blocks."""
    if not spec:
        return None
    small, picked, blocks = spec.get("small"), None, spec.get("blocks")
    if small and model_median_ms is not None:
        below = model_median_ms < float(small["below_ms"])
        picked = "model median %.4g ms %s %g ms" % (model_median_ms, "<" if below else ">=", float(small["below_ms"]))
        if below:
            spec = small
    try:
        ref = rt.Interpreter(model_path=spec["model"], num_threads=threads)
        ref.allocate_tensors()
    except Exception as e:
        return {"id": spec.get("id"), "error": "cannot load reference: %s" % _first_line(e)}
    _inputs(ref, 0)
    for _ in range(int(spec.get("warmup", 10))):
        ref.invoke()
    n = int(spec.get("n", n_runs))
    model_ms, ref_ms, switch = [], [], None
    if blocks:
        skip, per = max(0, int(blocks.get("skip", 2))), max(1, int(blocks.get("timed", 4)))
        switch = {"model": [], "reference": []}
        for i in range(-(-n // per)):
            timed = min(per, n - i * per)
            sides = [(interp, model_ms, switch["model"]), (ref, ref_ms, switch["reference"])]
            for it, kept, untimed in (sides if i % 2 == 0 else sides[::-1]):
                for j in range(skip + timed):
                    t0 = clock()
                    it.invoke()
                    (untimed if j < skip else kept).append((clock() - t0) * 1e3)
    else:
        for i in range(n):
            order = (interp, ref) if i % 2 == 0 else (ref, interp)
            t0 = clock()
            order[0].invoke()
            t1 = clock()
            order[1].invoke()
            t2 = clock()
            a, b = (t1 - t0) * 1e3, (t2 - t1) * 1e3
            model_ms.append(a if i % 2 == 0 else b)
            ref_ms.append(b if i % 2 == 0 else a)
    del ref
    out = {"id": spec.get("id"), "sha256": spec.get("sha256"), "model_ms": model_ms, "reference_ms": ref_ms}
    if switch is not None:
        out.update(blocks={"skip": skip, "timed": per}, model_switch_ms=switch["model"],
                   reference_switch_ms=switch["reference"])
    return {**out, "picked_by": picked} if picked else out


def hello(rt, src=None):
    import numpy
    return {
        "ok": True, "protocol": AGENT_PROTOCOL, "pid": os.getpid(), "python": platform.python_version(),
        "numpy": numpy.__version__, "runtime": rt.name, "runtime_version": rt.version,
        "hostname": socket.gethostname(), "machine": platform.machine(), "system": platform.system(),
        "release": platform.release(), "cpu_count": os.cpu_count(), "executable": sys.executable,
        "power_source": src.power.name if src is not None and src.power is not None else None,
    }


def serve(stdin, out, prefer=None):
    src = Sources()
    knobs = Knobs(src)
    try:
        return _serve(stdin, out, prefer, src, knobs)
    finally:
        knobs.restore()   # pinned settings never outlive the session, however it ends
        src.close()


def _serve(stdin, out, prefer, src, knobs):
    held = []   # background load started by a "load" request
    live = []   # the LiveServer, once a live_period request came
    try:
        return _serve_loop(stdin, out, prefer, src, knobs, held, live)
    finally:
        stop_background_load(held)
        for server in live:
            server.close()


def _serve_loop(stdin, out, prefer, src, knobs, held, live):
    try:
        rt = load_runtime(prefer)
    except RuntimeError as e:
        rt = None
        rt_error = str(e)
    while True:
        line = stdin.readline()
        if not line:
            return 0  # stdin closed: the host is gone
        try:
            req = json.loads(line)
        except ValueError as e:
            resp = {"ok": False, "kind": "protocol", "error": "bad request line: %s" % e}
        else:
            cmd = req.get("cmd")
            try:
                if cmd == "bye":
                    out.write(json.dumps({"ok": True, "id": req.get("id")}) + "\n")
                    out.flush()
                    return 0
                if cmd == "clock":   # for a meter on the host: its clock is aligned to this one
                    resp = {"ok": True, "t_mono": time.monotonic()}
                elif cmd == "context":
                    resp = {"ok": True, "context": context_snapshot(src)}
                    if req.get("power"):
                        resp["context"].update(power_reading(src.meter(req.get("power_meter"))))
                elif cmd == "load":
                    # Background load for a recording: replace what runs with ``n`` busy processes.
                    stop_background_load(held)
                    held[:] = start_background_load(int(req.get("n", 0)))
                    resp = {"ok": True, "pids": [p.pid for p, _ in held]}
                elif cmd == "setup":
                    resp = knobs.setup(req)
                elif cmd == "restore":
                    resp = knobs.restore()
                elif rt is None:
                    resp = {"ok": False, "kind": "runtime", "error": rt_error}
                elif cmd == "hello":
                    resp = hello(rt, src)
                elif cmd == "measure":
                    resp = measure(rt, req, src, knobs)
                elif cmd == "live_caps":
                    resp = FreqCap(src).caps()
                elif cmd == "live_period":
                    if not live:
                        live.append(LiveServer(rt, src))
                    resp = live[0].period(req, src)
                elif cmd == "live_stop":
                    for server in live:
                        server.close()
                    resp = {"ok": True}
                else:
                    resp = {"ok": False, "kind": "protocol", "error": "unknown command %r" % cmd}
            except Exception as e:
                resp = {"ok": False, "kind": "agent", "error": "%s: %s" % (type(e).__name__, e)}
        resp["id"] = req.get("id") if isinstance(req, dict) else None
        out.write(json.dumps(resp) + "\n")
        out.flush()


def provision(workdir, runtime="ai-edge-litert", system_site=False):
    """Create ``workdir/venv`` with NumPy and a TFLite runtime; print its python's path."""
    venv = os.path.join(workdir, "venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        cmd = [sys.executable, "-m", "venv", venv]
        if system_site:
            cmd.append("--system-site-packages")
        subprocess.check_call(cmd, stdout=sys.stderr)
    pkgs = ["numpy<2", "tflite-runtime"] if runtime == "tflite-runtime" else ["numpy", runtime]
    subprocess.check_call([py, "-m", "pip", "install", "--quiet"] + pkgs, stdout=sys.stderr)
    return py


def parser():
    import argparse
    ap = argparse.ArgumentParser(prog="python3 agent-<sha>.pyz", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Started by harness.collect, harness.record and simulator.live over ssh, adb "
                                        "or locally; it serves JSON lines on stdin/stdout until stdin closes.")
    ap.add_argument("--log", metavar="FILE",
                    help="append stderr (runtime chatter) to FILE while serving (default: stderr stays as it is)")
    ap.add_argument("--runtime", choices=RUNTIMES,
                    help="try this TFLite runtime first (default: the first of %s that imports)" % ", ".join(RUNTIMES))
    ap.add_argument("--provision", nargs="+", metavar="ARG",
                    help="DIR [PACKAGE]: create DIR/venv with NumPy and a TFLite runtime (PACKAGE: ai-edge-litert, "
                         "the default, or tflite-runtime), print its python's path and exit")
    ap.add_argument("--system-site-packages", action="store_true",
                    help="with --provision: the venv sees the system's packages (default: it does not)")
    return ap


def main(argv=None):
    ap = parser()
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    if args.provision:
        if len(args.provision) > 2:
            ap.error("--provision: expected DIR [PACKAGE], got %d values" % len(args.provision))
        print(provision(args.provision[0], args.provision[1] if len(args.provision) > 1 else "ai-edge-litert",
                        args.system_site_packages))
        return 0
    if args.log:
        # Nobody reads a remote stderr while we serve: a full pipe would block the agent.
        fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    # Keep the protocol channel clean: anything the runtime prints to fd 1 goes to stderr.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return serve(sys.stdin, proto, args.runtime)


if __name__ == "__main__":
    sys.exit(main())
