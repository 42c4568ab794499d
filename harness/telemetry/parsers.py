"""Parsers for the text that device tools print: tegrastats, vcgencmd, pmic_read_adc,
``dumpsys battery``, ``dumpsys thermalservice``, TensorFlow Lite ``benchmark_model`` and
``nvpmodel -q``.

Stdlib only and Python 3.7 compatible: the agent ships this file to devices and parses tool
output there. Every parser returns rows (dicts) whose keys carry their unit (``_mw``, ``_c``,
``_mhz``, ``_us`` ...). A value the tool did not print is absent from the row, never 0. Text that
is not what the parser expects raises ``ParseError`` naming the line.
"""

import re


class ParseError(ValueError):
    """``line N: what was wrong`` (N is 1-based; 0 when the problem is the whole text)."""

    def __init__(self, line, message):
        ValueError.__init__(self, "line %d: %s" % (line, message))
        self.line = line


def _lines(text):
    return [(i + 1, ln.rstrip("\r\n")) for i, ln in enumerate(text.splitlines())]


def _snake(name):
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def _float(s, lineno, what):
    try:
        return float(s)
    except ValueError:
        raise ParseError(lineno, "%s: expected a number, got %r" % (what, s)) from None


# ---------------------------------------------------------------- tegrastats

BOARD_RAILS = ("VDD_IN", "POM_5V_IN")     # the whole board's input, when the module has it

_TS = re.compile(r"^(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d)\s+")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_FREQ = re.compile(r"\b(EMC_FREQ|GR3D_FREQ|GR3D2_FREQ)\s+(\d+)%(?:@(\[[0-9,]+\]|\d+))?")
_TEMP = re.compile(r"(?<![\w@])([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C(?:/(-?\d+(?:\.\d+)?)C)?")
# A power rail: NAME cur/avg or cur/avg/max, each with an optional mW unit (older JetPacks print
# none; their values are mW as well).
# Rails are named VDD_IN, POM_5V_GPU, or plainly GPU, SOC, SYS5V (AGX Xavier on JetPack 4).
_RAIL = re.compile(r"(?<![\w@])([A-Z][A-Z0-9_]*)"
                   r"\s+(\d+(?:\.\d+)?)([A-Za-z]+)?/(\d+(?:\.\d+)?)([A-Za-z]+)?(?:/(\d+(?:\.\d+)?)([A-Za-z]+)?)?"
                   r"(?=\s|$)")
_MEMORY_UNITS = ("kB", "KB", "MB", "GB")   # RAM 534/3964MB, IRAM 0/252kB: not rails


def _mw(value, unit, lineno, rail):
    if unit in (None, "", "mW"):
        return value
    if unit == "W":
        return value * 1e3
    raise ParseError(lineno, "%s: unknown power unit %r" % (rail, unit))


def parse_tegrastats_line(line, lineno=1):
    """One tegrastats line -> row. Power per rail as ``<rail>_power_mw`` (current),
    ``_avg_mw`` and, when printed, ``_max_mw``; ``board_power_mw`` is VDD_IN or POM_5V_IN. A module
    without a board rail gets ``rails_power_sum_mw`` instead, and ``power_scope`` says
    ``module-only``."""
    row = {}
    m = _TS.match(line)
    if m:
        mo, d, rest = m.group(1).split("-", 2)
        y, hms = rest.split(" ")
        row["timestamp"] = "%s-%s-%sT%s" % (y, mo, d, hms)
        line = line[m.end():]
    m = _RAM.search(line)
    if m:
        row["ram_used_mb"], row["ram_total_mb"] = int(m.group(1)), int(m.group(2))
    m = _SWAP.search(line)
    if m:
        row["swap_used_mb"], row["swap_total_mb"] = int(m.group(1)), int(m.group(2))
    m = _CPU.search(line)
    if m:
        for i, c in enumerate(x.strip() for x in m.group(1).split(",")):
            if c == "off":
                row["cpu%d_online" % i] = 0
                continue
            cm = re.match(r"^(\d+)%(?:@(\d+))?$", c)
            if not cm:
                raise ParseError(lineno, "CPU [...] entry %d: expected LOAD%%@MHZ or off, got %r" % (i, c))
            row["cpu%d_online" % i] = 1
            row["cpu%d_load_pct" % i] = int(cm.group(1))
            if cm.group(2):
                row["cpu%d_freq_mhz" % i] = int(cm.group(2))
    for m in _FREQ.finditer(line):
        key = {"EMC_FREQ": "emc", "GR3D_FREQ": "gpu", "GR3D2_FREQ": "gpu2"}[m.group(1)]
        row[key + "_load_pct"] = int(m.group(2))
        f = m.group(3)
        if f:   # without root, newer tegrastats omit the frequency: leave it absent
            if f.startswith("["):   # JetPack 6: one frequency per GPC
                fs = [int(x) for x in f[1:-1].split(",") if x]
                row[key + "_freq_mhz"] = max(fs)
            else:
                row[key + "_freq_mhz"] = int(f)
    for m in _TEMP.finditer(line):
        name = _snake(m.group(1))
        row[name + "_temp_c"] = float(m.group(2))
        if m.group(3):
            row[name + "_temp_max_c"] = float(m.group(3))
    rails = {}
    for m in _RAIL.finditer(line):
        name = m.group(1)
        if m.group(3) in _MEMORY_UNITS or m.group(5) in _MEMORY_UNITS or name in ("RAM", "SWAP", "IRAM"):
            continue
        cur = _mw(float(m.group(2)), m.group(3), lineno, name)
        rails[name] = cur
        key = _snake(name)
        row[key + "_power_mw"] = cur
        row[key + "_power_avg_mw"] = _mw(float(m.group(4)), m.group(5), lineno, name)
        if m.group(6):
            row[key + "_power_max_mw"] = _mw(float(m.group(6)), m.group(7), lineno, name)
    board = [r for r in BOARD_RAILS if r in rails]
    if board:
        row["board_power_mw"] = rails[board[0]]
        row["power_scope"] = "board:" + board[0]
    elif rails:
        row["rails_power_sum_mw"] = sum(rails.values())
        row["power_scope"] = "module-only:sum(%s)" % "+".join(sorted(rails))
    if not any(k for k in row if k != "timestamp"):
        raise ParseError(lineno, "not a tegrastats line (no RAM, CPU, frequency, temperature or power field)")
    return row


def parse_tegrastats(text):
    rows = []
    for lineno, line in _lines(text):
        if line.strip():
            rows.append(parse_tegrastats_line(line, lineno))
    if not rows:
        raise ParseError(0, "no tegrastats lines")
    return rows


# ---------------------------------------------------------------- vcgencmd

THROTTLE_BITS = (("under_voltage", 0), ("arm_freq_capped", 1), ("throttled", 2), ("soft_temp_limit", 3))
# measure_clock prints frequency(<clock id>)=; 48 is arm on the Pi 4 firmware, 0 on the Pi 5.
_ARM_CLOCK_IDS = (48, 0)
_VC = re.compile(r"^\s*(temp|frequency\((\d+)\)|throttled|volt)=\s*(\S+)\s*$")


def decode_throttled(value):
    out = {"throttled_raw": "0x%x" % value}
    for name, bit in THROTTLE_BITS:
        out[name + "_now"] = (value >> bit) & 1
        out[name + "_since_boot"] = (value >> (bit + 16)) & 1
    return out


def parse_vcgencmd(text):
    """Lines of ``vcgencmd measure_temp / measure_clock / get_throttled / measure_volts``. A
    quantity seen again starts a new row (a logging loop prints them in turn)."""
    rows, row = [], {}
    for lineno, line in _lines(text):
        if not line.strip():
            continue
        m = _VC.match(line)
        if not m:
            raise ParseError(lineno, "expected temp=, frequency(N)=, throttled= or volt=, got %r" % line.strip())
        key, clock, val = m.group(1), m.group(2), m.group(3)
        new = {}
        if key == "temp":
            vm = re.match(r"^(-?\d+(?:\.\d+)?)'C$", val)
            if not vm:
                raise ParseError(lineno, "temp: expected like 43.8'C, got %r" % val)
            new["soc_temp_c"] = float(vm.group(1))
        elif clock is not None:
            cid = int(clock)
            hz = _float(val, lineno, "frequency")
            new["arm_freq_hz" if cid in _ARM_CLOCK_IDS else "clock%d_freq_hz" % cid] = hz
        elif key == "throttled":
            try:
                new.update(decode_throttled(int(val, 16)))
            except ValueError:
                raise ParseError(lineno, "throttled: expected a hex value like 0x50005, got %r" % val) from None
        else:
            vm = re.match(r"^(-?\d+(?:\.\d+)?)V$", val)
            if not vm:
                raise ParseError(lineno, "volt: expected like 0.7200V, got %r" % val)
            new["core_volt_v"] = float(vm.group(1))
        if any(k in row for k in new):
            rows.append(row)
            row = {}
        row.update(new)
    if row:
        rows.append(row)
    if not rows:
        raise ParseError(0, "no vcgencmd lines")
    return rows


_PMIC = re.compile(r"^\s*([A-Z0-9_]+)_([AV])\s+(current|volt)\((\d+)\)=\s*(-?\d+(?:\.\d+)?)([AV])\s*$")


def parse_pmic_read_adc(text):
    """``vcgencmd pmic_read_adc`` (Raspberry Pi 5) -> one row: per rail ``<rail>_current_a``,
    ``<rail>_volt_v`` and ``<rail>_power_w`` where both are printed; ``rails_power_w`` sums the
    rails that have both. That sum is NOT the board's input power (EXT5V has no current sensor),
    which ``power_scope`` says."""
    cur, volt = {}, {}
    for lineno, line in _lines(text):
        if not line.strip():
            continue
        m = _PMIC.match(line)
        if not m:
            raise ParseError(lineno, "expected '<RAIL>_A current(n)=xA' or '<RAIL>_V volt(n)=xV', got %r"
                             % line.strip())
        rail, av, kind, _, val, unit = m.groups()
        if (av, kind, unit) not in (("A", "current", "A"), ("V", "volt", "V")):
            raise ParseError(lineno, "%s_%s: %s reading in %s" % (rail, av, kind, unit))
        (cur if av == "A" else volt)[rail] = float(val)
    if not cur and not volt:
        raise ParseError(0, "no pmic_read_adc lines")
    row = {}
    for r in sorted(set(cur) | set(volt)):
        k = _snake(r)
        if r in cur:
            row[k + "_current_a"] = cur[r]
        if r in volt:
            row[k + "_volt_v"] = volt[r]
        if r in cur and r in volt:
            row[k + "_power_w"] = cur[r] * volt[r]
    both = sorted(set(cur) & set(volt))
    if both:
        row["rails_power_w"] = sum(cur[r] * volt[r] for r in both)
        row["power_scope"] = "pmic-rails-only:sum(%d rails),not-board-input" % len(both)
    return [row]


# ---------------------------------------------------------------- Android dumpsys battery

_BATTERY_STATUS = {1: "unknown", 2: "charging", 3: "discharging", 4: "not-charging", 5: "full"}
_BATTERY_HEALTH = {1: "unknown", 2: "good", 3: "overheat", 4: "dead", 5: "over-voltage", 6: "failure", 7: "cold"}
# key -> (column, scale); units as Android's BatteryService prints them.
_DUMPSYS = {
    "ac powered": ("ac_powered", "bool"), "usb powered": ("usb_powered", "bool"),
    "wireless powered": ("wireless_powered", "bool"), "dock powered": ("dock_powered", "bool"),
    "max charging current": ("max_charging_current_ua", 1), "max charging voltage": ("max_charging_voltage_uv", 1),
    "charge counter": ("charge_counter_uah", 1), "status": ("status_code", 1), "health": ("health_code", 1),
    "present": ("present", "bool"), "level": ("level", 1), "scale": ("scale", 1),
    "voltage": ("voltage_mv", 1), "temperature": ("temperature_c", 0.1), "technology": ("technology", "str"),
    "charging state": ("charging_state", 1), "charging policy": ("charging_policy", 1),
    "cycle count": ("cycle_count", 1),
}


def parse_dumpsys_battery(text):
    """``dumpsys battery`` -> one row, by key (lines Android adds later are ignored)."""
    row = {}
    for lineno, line in _lines(text):
        if ":" not in line or line.strip().endswith(":") and not line.startswith(" "):
            continue   # the "Current Battery Service state:" header
        k, _, v = line.strip().partition(":")
        spec = _DUMPSYS.get(k.strip().lower())
        if spec is None:
            continue
        col, scale = spec
        v = v.strip()
        if scale == "bool":
            if v not in ("true", "false"):
                raise ParseError(lineno, "%s: expected true or false, got %r" % (k.strip(), v))
            row[col] = int(v == "true")
        elif scale == "str":
            row[col] = v
        else:
            x = _float(v, lineno, k.strip())
            row[col] = int(x) if scale == 1 and x == int(x) else round(x * scale, 6)
    if not row:
        raise ParseError(0, "not dumpsys battery output (no known key such as 'level:' or 'voltage:')")
    if "level" in row and row.get("scale"):
        row["level_pct"] = 100.0 * row["level"] / row["scale"]
    if "status_code" in row:
        row["status"] = _BATTERY_STATUS.get(row["status_code"], "code-%d" % row["status_code"])
        row["charging"] = int(row["status_code"] == 2)
    if "health_code" in row:
        row["health"] = _BATTERY_HEALTH.get(row["health_code"], "code-%d" % row["health_code"])
    return [row]


# ---------------------------------------------------------------- dumpsys thermalservice

# android.os.PowerManager THERMAL_STATUS_* (the framework's throttling severity, 0..6).
THERMAL_STATUS = ("none", "light", "moderate", "severe", "critical", "emergency", "shutdown")
# android.os.Temperature TYPE_*: 6, 7 and 8 are battery current-limit (BCL) readings in mV, mA and
# percent that the HAL reports through the same Temperature records; they are not temperatures.
_TEMP_TYPE = {-1: "unknown", 0: "cpu", 1: "gpu", 2: "battery", 3: "skin", 4: "usb_port", 5: "power_amplifier",
              9: "npu", 10: "tpu", 11: "display", 12: "modem", 13: "soc", 14: "wifi", 15: "camera",
              16: "flashlight", 17: "speaker", 18: "ambient", 19: "pogo"}
_BCL_UNIT = {6: "mv", 7: "ma", 8: "pct"}
_THERMAL_RECORD = re.compile(r"^\s*Temperature\{(.*)\}\s*$")
_SECTIONS = {"Cached temperatures:": "cached", "Current temperatures from HAL:": "hal-current"}
NO_READING = -99.0   # vendors print -99.9 for a sensor they have no reading for


def parse_thermalservice(text):
    """``dumpsys thermalservice`` -> one row: ``thermal_status`` (0-6) and its name, one
    ``temp_<sensor>_c`` per temperature the HAL reports now (the cached list only when there is no
    current one; ``temps_from`` says which), ``<type>_max_temp_c`` per sensor type,
    ``bcl_<sensor>_{mv,ma,pct}`` for current-limit readings, and ``throttling_sensors``
    (sensors whose own status is above none)."""
    row = {}
    recs = {"cached": [], "hal-current": []}
    section = None
    for lineno, line in _lines(text):
        st = line.strip()
        if st.startswith("Thermal Status:"):
            v = st.split(":", 1)[1].strip()
            if not v.isdigit():
                raise ParseError(lineno, "Thermal Status: expected 0-6, got %r" % v)
            row["thermal_status"] = int(v)
            row["thermal_status_name"] = (THERMAL_STATUS[int(v)] if int(v) < len(THERMAL_STATUS)
                                          else "code-%s" % v)
            continue
        if st.startswith("HAL Ready:"):
            row["hal_ready"] = int(st.split(":", 1)[1].strip() == "true")
        if st in _SECTIONS:
            section = _SECTIONS[st]
            continue
        m = _THERMAL_RECORD.match(line)
        if m is None:
            if not line.startswith(("\t", " ")):
                section = None   # an unindented line ends a list
            continue
        if section is None:
            continue   # Temperature records of another list (thresholds print TemperatureThreshold)
        fields = dict(kv.strip().partition("=")[::2] for kv in m.group(1).split(","))
        for k in ("mValue", "mType", "mName"):
            if k not in fields:
                raise ParseError(lineno, "Temperature record without %s" % k)
        try:
            typ = int(fields["mType"])
            status = int(fields.get("mStatus", "0"))
        except ValueError:
            raise ParseError(lineno, "Temperature record: mType and mStatus must be integers") from None
        recs[section].append((lineno, fields["mName"].strip(), typ, fields["mValue"].strip(), status))
    if "thermal_status" not in row:
        raise ParseError(0, "not dumpsys thermalservice output (no 'Thermal Status:' line)")
    src = "hal-current" if recs["hal-current"] else "cached"
    if recs[src]:
        row["temps_from"] = src
    hot = []
    for lineno, name, typ, value, status in recs[src]:
        v = _float(value, lineno, name)
        if v != v or v <= NO_READING:   # NaN or the vendor's no-reading value: absent, not a temperature
            continue
        if status > 0:
            hot.append(name)
        # Samsung's HAL names each sensor after its type (TYPE_CPU) and numbers the types its own
        # way (TYPE_CPU is mType=1 there): the name wins over the number when it is a type name.
        named = name[5:].lower() if name.startswith("TYPE_") else None
        if named is None and typ in _BCL_UNIT:
            row["bcl_%s_%s" % (_snake(name), _BCL_UNIT[typ])] = v
            continue
        row["temp_%s_c" % _snake(name)] = v
        kind = named or _TEMP_TYPE.get(typ, "type%d" % typ)
        if kind != "unknown":
            key = "%s_max_temp_c" % kind
            row[key] = max(v, row.get(key, v))
    if hot:
        row["throttling_sensors"] = " ".join(hot)
    return [row]


# ---------------------------------------------------------------- benchmark_model

# Android logcat ("11-22 10:00:00.123  1234  1234 I tflite  : ...") or the INFO: prefix.
_BM_PREFIX = re.compile(r"^(?:.*?\btflite\s*:\s*|(?:INFO|WARNING|ERROR|VERBOSE):\s*)")
_BM_COUNT = re.compile(r"^count=(\d+)\s+(.*)$")
_BM_TIMINGS = re.compile(r"^Inference timings in us:\s*(.*)$")
_BM_PARAMS = {"num threads": "threads", "graph": "graph", "use xnnpack": "use_xnnpack",
              "min num runs": "min_num_runs", "num runs": "num_runs"}


def _bm_stats(s, lineno):
    """'first=.. curr=.. min=.. max=.. avg=.. std=..' (+ p5/median/p95), or 'curr=V(all same)'."""
    out = {}
    for k, v in re.findall(r"(\w+)=([-\d.]+(?:\(all same\))?)", s):
        if v.endswith("(all same)"):
            v = v[: -len("(all same)")]
            x = _float(v, lineno, k)
            for key in ("first", "curr", "min", "max", "avg", "median", "p5", "p95"):
                out[key] = x
            out["std"] = 0.0
        else:
            out[k] = _float(v, lineno, k)
    return out


def parse_benchmark_model(text):
    """TensorFlow Lite ``benchmark_model`` output (plain, ``INFO:``-prefixed, or logcat lines
    tagged ``tflite``) -> one row per run: the summary timings in us, the warm-up and timed
    series statistics, peak memory, and the parameters it echoed (threads, graph)."""
    rows, row, series = [], {}, []
    for lineno, raw in _lines(text):
        line = _BM_PREFIX.sub("", raw.strip(), count=1).strip()
        if not line:
            continue
        m = _BM_COUNT.match(line)
        if m:
            st = _bm_stats(m.group(2), lineno)
            st["count"] = int(m.group(1))
            series.append(st)
            continue
        m = _BM_TIMINGS.match(line)
        if m:
            for part in m.group(1).split(","):
                k, _, v = part.partition(":")
                k = k.strip().lower()
                col = {"init": "init_us", "first inference": "first_inference_us",
                       "warmup (avg)": "warmup_avg_us", "inference (avg)": "inference_avg_us"}.get(k)
                if col:
                    row[col] = _float(v.strip(), lineno, k)
            if "inference_avg_us" not in row:
                raise ParseError(lineno, "'Inference timings' line without 'Inference (avg)'")
            # The last two count= series before the summary are warm-up then timed runs.
            if series:
                for prefix, st in zip(("inference", "warmup"), reversed(series[-2:])):
                    row["n_" + prefix] = st["count"]
                    for k in ("min", "max", "avg", "std", "median", "p5", "p95"):
                        if k in st:
                            row["%s_%s_us" % (prefix, k)] = st[k]
            rows.append(row)
            row, series = {k: v for k, v in row.items() if k in ("threads", "graph", "model_size_mb")}, []
            continue
        low = line.lower()
        m = re.match(r"^initialized session in ([\d.]+)ms", low)
        if m:
            row["init_session_ms"] = float(m.group(1))
        m = re.match(r"^the input model file size \(mb\):\s*([\d.]+)", low)
        if m:
            row["model_size_mb"] = float(m.group(1))
        m = re.match(r"^overall peak memory footprint \(mb\)[^:]*:\s*([\d.]+)", low)
        if m and rows:
            rows[-1]["peak_memory_mb"] = float(m.group(1))
        m = re.match(r"^([a-z ]+):\s*\[(.*)\]$", low)
        if m and m.group(1).strip() in _BM_PARAMS:
            col = _BM_PARAMS[m.group(1).strip()]
            val = line[line.index("[") + 1: line.rindex("]")]
            row[col] = int(val) if val.isdigit() else val
    if not rows:
        raise ParseError(0, "no 'Inference timings in us:' line: not benchmark_model output, or the run "
                         "did not finish")
    return rows


# ---------------------------------------------------------------- nvpmodel

def parse_nvpmodel(text):
    """``nvpmodel -q`` -> [{'power_mode': name, 'power_mode_id': id}]; warnings are skipped."""
    lines = [ln.strip() for _, ln in _lines(text) if ln.strip() and not ln.startswith("NVPM WARN")]
    for i, ln in enumerate(lines):
        if ln.startswith("NV Power Mode:"):
            row = {"power_mode": ln.split(":", 1)[1].strip()}
            if i + 1 < len(lines) and lines[i + 1].isdigit():
                row["power_mode_id"] = int(lines[i + 1])
            return [row]
    raise ParseError(0, "no 'NV Power Mode:' line")


PARSERS = {
    "tegrastats": parse_tegrastats,
    "vcgencmd": parse_vcgencmd,
    "pmic_read_adc": parse_pmic_read_adc,
    "dumpsys-battery": parse_dumpsys_battery,
    "dumpsys-thermalservice": parse_thermalservice,
    "benchmark_model": parse_benchmark_model,
    "nvpmodel": parse_nvpmodel,
}
