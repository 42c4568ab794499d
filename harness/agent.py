"""On-device agent: the one file that runs ON the target.

Stdlib + NumPy + a TFLite runtime (tflite_runtime, ai_edge_litert or tensorflow.lite, the first
that imports). Python 3.7 compatible. Speaks JSON lines: one request per line on stdin, one
response per line on stdout. Exits when stdin closes; background-load processes it started are
stopped on every path out (and stop themselves if the agent is killed).

    python3 agent.py [--log FILE]         # serve requests; stderr (runtime chatter) to FILE
    python3 agent.py --provision DIR      # create DIR/venv with NumPy and a TFLite runtime
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

# A busy loop that exits by itself when its parent (the agent, whose pid is argv[1]) is gone,
# even if the agent died before this child got to look.
_BUSY = (
    "import os, sys\n"
    "p = int(sys.argv[1])\n"
    "while os.getppid() == p:\n"
    "    for _ in range(200000):\n"
    "        pass\n"
)


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
            errors.append("%s: %s" % (name, str(e).splitlines()[0] if str(e) else type(e).__name__))
    raise RuntimeError("no TFLite runtime importable (" + "; ".join(errors) + ")")


# ---------------------------------------------------------------- context snapshot

def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, IOError):
        return None


def _num(path, scale=1.0):
    s = _read(path)
    try:
        return float(s) * scale if s is not None else None
    except ValueError:
        return None


_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _system_cpu_s():
    """CPU-seconds all CPUs have been busy since boot (/proc/stat), or None."""
    line = (_read("/proc/stat") or "").split("\n", 1)[0].split()
    if not line or line[0] != "cpu":
        return None
    v = [int(x) for x in line[1:]]
    return (sum(v[:8]) - v[3] - (v[4] if len(v) > 4 else 0)) / float(_HZ)   # all but idle and iowait


def _proc_cpu_s(pid):
    st = _read("/proc/%d/stat" % pid)
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
        self.zones = [(z, (_read(z + "/type") or z.split("/")[-1]) + ":" + z.split("zone")[-1])
                      for z in sorted(glob.glob(root + "/sys/class/thermal/thermal_zone[0-9]*"))]
        self.throttle = glob.glob(root + "/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle/*_throttle_count")
        self.vcgencmd = shutil.which("vcgencmd")
        self.power = discover_power(root)


def context_snapshot(src=None):
    """What the OS exposes about the device's state right now. Missing sources are omitted."""
    src = src or Sources()
    snap = {"t_wall": time.time(), "t_mono": time.monotonic()}
    freqs, govs, maxf = {}, {}, {}
    for d in src.cpufreq:
        cpu = d.split("/")[-2]
        f = _num(d + "/scaling_cur_freq", 1e-3)
        if f is not None:
            freqs[cpu] = f
        g = _read(d + "/scaling_governor")
        if g:
            govs[cpu] = g
        m = _num(d + "/scaling_max_freq", 1e-3)
        if m is not None:
            maxf[cpu] = m
    if freqs:
        snap["cpu_freq_mhz"] = freqs
    if govs:
        snap["governor"] = govs
    if maxf:
        snap["cpu_max_freq_mhz"] = maxf
    temps = {}
    for z, name in src.zones:
        t = _num(z + "/temp", 1e-3)
        if t is not None:
            temps[name] = t
    if temps:
        snap["temp_c"] = temps
    thr = 0
    seen = False
    for p in src.throttle:
        v = _num(p)
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
    cpu = _system_cpu_s()
    if cpu is not None:
        snap["system_cpu_busy_s"] = cpu
        t = os.times()
        snap["agent_cpu_s"] = t[0] + t[1]
    try:
        snap["loadavg"] = list(os.getloadavg())
    except OSError:
        pass
    mem = _read("/proc/meminfo")
    if mem:
        for line in mem.splitlines():
            if line.startswith("MemAvailable:"):
                snap["mem_available_mb"] = int(line.split()[1]) / 1024.0
    return snap


# ---------------------------------------------------------------- power and energy

class SysfsPower(object):
    """Instantaneous power in mW from sysfs files: either power files, or voltage/current pairs.
    ``terms`` is a list of (scale, path) or (scale, volt_path, curr_path); power = sum of terms."""
    kind = "power"

    def __init__(self, name, terms):
        self.name = name
        self.terms = terms

    def read(self):
        total = 0.0
        for t in self.terms:
            if len(t) == 2:
                v = _num(t[1])
                if v is None:
                    return None
                total += t[0] * v
            else:
                v, c = _num(t[1]), _num(t[2])
                if v is None or c is None:
                    return None
                total += t[0] * abs(v * c)   # Android vendors differ in the sign of current_now
        return total


class RaplEnergy(object):
    """Cumulative energy counter (uJ) of intel-rapl package domains; wraps at max_energy_range_uj."""
    kind = "energy"

    def __init__(self, name, domains):
        self.name = name
        self.domains = domains   # [(energy_path, max_range_uj)]

    def read_uj(self):
        vals = [_num(p) for p, _ in self.domains]
        return None if any(v is None for v in vals) else vals

    def delta_mj(self, a, b):
        tot = 0.0
        for (_, rng), x, y in zip(self.domains, a, b):
            d = y - x
            if d < 0:
                d += rng
            tot += d
        return tot / 1e3


_BOARD_RAILS = ("VDD_IN", "POM_5V_IN")


def _rails_to_source(kind, rails):
    """rails: {label: term}. The board input rail when present, else the sum labelled module-only."""
    for r in _BOARD_RAILS:
        if r in rails:
            return SysfsPower("sensor:%s:%s" % (kind, r), [rails[r]])
    if rails:
        return SysfsPower("sensor:%s:sum(%s),module-only" % (kind, "+".join(sorted(rails))), list(rails.values()))
    return None


def discover_power(root=""):
    """The best power source this device exposes, or None. ``root`` prefixes every sysfs path
    (tests point it at a tree they write). Order: Jetson INA3221 (hwmon, then IIO), Android
    battery, x86 RAPL. Bus numbers and device indices are globbed, never hard-coded."""
    rails = {}
    for d in sorted(glob.glob(root + "/sys/class/hwmon/hwmon*")) + sorted(
            glob.glob(root + "/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")):
        if (_read(d + "/name") or "").startswith("ina3221"):
            for lab in sorted(glob.glob(d + "/in*_label")):
                k = lab[len(d) + 3:-6]
                label = _read(lab)
                if label and os.path.exists(d + "/curr%s_input" % k):
                    rails.setdefault(label, (1e-3, d + "/in%s_input" % k, d + "/curr%s_input" % k))
    src = _rails_to_source("ina3221-hwmon", rails)
    if src:
        return src
    for d in sorted(glob.glob(root + "/sys/bus/i2c/drivers/ina3221x/*/iio:device*")):
        for lab in sorted(glob.glob(d + "/rail_name_*")):
            k = lab.rsplit("_", 1)[1]
            label = _read(lab)
            if label and os.path.exists(d + "/in_power%s_input" % k):
                rails.setdefault(label, (1.0, d + "/in_power%s_input" % k))
    src = _rails_to_source("ina3221-iio", rails)
    if src:
        return src
    b = root + "/sys/class/power_supply/battery"
    if os.path.exists(b + "/current_now") and os.path.exists(b + "/voltage_now"):
        # uV x uA -> mW is 1e-9. Some vendors report mA (values < 10000 for a phone): the host
        # can override with a profile; here the magnitude decides, and the label says which.
        c = _num(b + "/current_now")
        scale, unit = (1e-9, "uA") if c is None or abs(c) >= 10000 else (1e-6, "mA")
        return SysfsPower("sensor:android-battery(%s)" % unit, [(scale, b + "/voltage_now", b + "/current_now")])
    doms = []
    for d in sorted(glob.glob(root + "/sys/class/powercap/intel-rapl:[0-9]*")):
        if ":" in d.rsplit("intel-rapl:", 1)[1]:
            continue   # sub-domains (core, dram) are inside the package counter
        e = d + "/energy_uj"
        try:
            with open(e) as f:
                f.read()
        except (IOError, OSError):
            continue   # root only on most kernels
        doms.append((e, _num(d + "/max_energy_range_uj") or 2 ** 32))
    if doms:
        return RaplEnergy("sensor:rapl:package", doms)
    return None


class PowerSampler(object):
    """Samples a power source in a background thread at ``hz`` on the device's monotonic clock."""

    def __init__(self, source, hz=50.0):
        import threading
        self.source = source
        self.period = 1.0 / float(hz)
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="power-sampler")
        self._thread.daemon = True

    def _run(self):
        nxt = time.monotonic()
        while not self._stop.is_set():
            v = self.source.read()
            t = time.monotonic()
            if v is not None:
                self.samples.append((t, v))
            nxt += self.period
            delay = nxt - time.monotonic()
            if delay < 0:
                nxt = time.monotonic()
            else:
                self._stop.wait(delay)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(2.0)

    def integrate(self, t0, t1):
        """(energy mJ over [t0, t1] by the trapezoid rule, samples inside), with the curve
        interpolated linearly at both ends. mW x s = mJ."""
        s = self.samples
        if len(s) < 2 or s[0][0] > t0 or s[-1][0] < t1:
            return None, 0

        def at(t):
            for (ta, va), (tb, vb) in zip(s, s[1:]):
                if ta <= t <= tb:
                    return va if tb == ta else va + (vb - va) * (t - ta) / (tb - ta)
            return None
        pts = [(t0, at(t0))] + [x for x in s if t0 < x[0] < t1] + [(t1, at(t1))]
        e = 0.0
        for (ta, va), (tb, vb) in zip(pts, pts[1:]):
            e += 0.5 * (va + vb) * (tb - ta)
        return e, len(pts) - 2


def _idle_and_run(src, req, run):
    """Measure idle power for ``idle_s`` just before ``run()`` (the timed loop), then energy over
    exactly the timed window. Returns the energy dict (or None when nothing measures power)."""
    if src is None or not req.get("energy", True):
        return run(), None
    idle_s = float(req.get("idle_s", 0.5))
    hz = float(req.get("power_hz", 50.0))
    if src.kind == "energy":
        t_i = time.monotonic()
        a = src.read_uj()
        time.sleep(idle_s)
        b = src.read_uj()
        t_a = time.monotonic()
        out = run()
        t_b = time.monotonic()
        c = src.read_uj()
        if None in (a, b, c):
            return out, None
        idle_mw = src.delta_mj(a, b) / (t_a - t_i)
        total = src.delta_mj(b, c)
        info = {"source": src.name, "method": "counter", "n_power_samples": 0}
    else:
        sampler = PowerSampler(src, hz).start()
        try:
            time.sleep(2.0 / hz)
            t_i = time.monotonic()
            time.sleep(idle_s)
            t_a = time.monotonic()
            out = run()
            t_b = time.monotonic()
            time.sleep(2.0 / hz)
        finally:
            sampler.stop()
        idle, _ = sampler.integrate(t_i, t_a)
        total, n = sampler.integrate(t_a, t_b)
        if idle is None or total is None:
            return out, None
        idle_mw = idle / (t_a - t_i)
        info = {"source": src.name, "method": "sampled %.0f Hz, trapezoid" % hz, "n_power_samples": n}
    dur = t_b - t_a
    info.update({"window_s": dur, "t_start_mono": t_a, "t_end_mono": t_b, "energy_total_mj": total,
                 "idle_power_mw": idle_mw, "mean_power_mw": total / dur if dur > 0 else None,
                 "energy_above_idle_mj": total - idle_mw * dur})
    return out, info


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
        st = _read("/proc/self/status") or ""
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


def measure(rt, req, src=None):
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
    try:
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
            return {"ok": False, "kind": "model", "error": "cannot load model: %s" % str(e).splitlines()[0]}
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
        def timed(interp=interp):
            samples = []
            for _ in range(n_runs):
                t0 = clock()
                interp.invoke()
                samples.append((clock() - t0) * 1e3)
            return samples
        samples, energy = _idle_and_run(src.power, req, timed)
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
        return {
            "ok": True, "runtime": rt.name, "runtime_version": rt.version, "threads": threads,
            "load_ms": load_ms, "first_inference_ms": first_ms, "warmup_ms": warm,
            "warmup_stable": stable, "samples_ms": samples, "peak_rss_mb": rss, "rss_method": rss_method,
            "background": [{"pid": p.pid, "cpu": c} for p, c in procs],
            "context_before": before, "context_after": after, "energy": energy,
        }
    finally:
        stop_background_load(procs)
        del interp


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
                if cmd == "context":
                    resp = {"ok": True, "context": context_snapshot(src)}
                elif rt is None:
                    resp = {"ok": False, "kind": "runtime", "error": rt_error}
                elif cmd == "hello":
                    resp = hello(rt, src)
                elif cmd == "measure":
                    resp = measure(rt, req, src)
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


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    prefer = None
    if "--runtime" in argv:
        prefer = argv[argv.index("--runtime") + 1]
    if argv and argv[0] == "--provision":
        print(provision(argv[1], argv[2] if len(argv) > 2 else "ai-edge-litert",
                        "--system-site-packages" in argv))
        return 0
    if "--log" in argv:
        # Nobody reads a remote stderr while we serve: a full pipe would block the agent.
        fd = os.open(argv[argv.index("--log") + 1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    # Keep the protocol channel clean: anything the runtime prints to fd 1 goes to stderr.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return serve(sys.stdin, proto, prefer)


if __name__ == "__main__":
    sys.exit(main())
