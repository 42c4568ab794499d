"""Parsers on real device output (tests/fixtures/device-output: see its README for where each file
comes from), plus the format variations those tools print on other generations."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.telemetry.parsers import (
    ParseError,
    parse_benchmark_model,
    parse_dumpsys_battery,
    parse_nvpmodel,
    parse_pmic_read_adc,
    parse_tegrastats,
    parse_tegrastats_line,
    parse_thermalservice,
    parse_vcgencmd,
)

FIX = Path(__file__).parent / "fixtures" / "device-output"
ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "harness/zoo/bundled/digits-compressed/dc-w025-d0-r48-float32.tflite"


def text(name: str) -> str:
    return (FIX / name).read_text()


# ---------------------------------------------------------------- tegrastats

def test_tegrastats_nano_jp4_unitless_mw_and_board_rail():
    (r,) = parse_tegrastats(text("tegrastats-jetson-nano.txt"))
    assert r["pom_5v_in_power_mw"] == 1022 and r["pom_5v_cpu_power_mw"] == 204
    assert r["board_power_mw"] == 1022 and r["power_scope"] == "board:POM_5V_IN"
    assert [r[f"cpu{i}_freq_mhz"] for i in range(4)] == [204] * 4 and r["cpu0_load_pct"] == 16
    assert r["gpu_freq_mhz"] == 76 and r["gpu_load_pct"] == 0
    assert r["cpu_temp_c"] == 36.5 and r["thermal_temp_c"] == 36.25
    assert r["ram_used_mb"] == 534 and r["ram_total_mb"] == 3964
    assert "ram_power_mw" not in r and "iram_power_mw" not in r   # RAM 534/3964MB is not a rail
    assert "timestamp" not in r


def test_tegrastats_xavier_nx_and_orin_nx_units():
    (x,) = parse_tegrastats(text("tegrastats-jetson-xavier-nx.txt"))
    (o,) = parse_tegrastats(text("tegrastats-jetson-orin-nx-jp5.txt"))
    assert x["board_power_mw"] == 4067 and x["vdd_soc_power_avg_mw"] == 1353
    assert o["board_power_mw"] == 5299 and o["vdd_cpu_gpu_cv_power_mw"] == 773
    assert x["gpu_load_pct"] == 62 and x["cpu5_freq_mhz"] == 1267
    # Offline cores are marked offline, with no load or frequency (not zeros).
    assert o["cpu4_online"] == 0 and "cpu4_load_pct" not in o and "cpu4_freq_mhz" not in o
    assert o["cpu3_online"] == 1 and o["tj_temp_c"] == 48.875


def test_tegrastats_orin_nano_jp6_timestamp_and_gpc_list():
    (r,) = parse_tegrastats(text("tegrastats-jetson-orin-nano-jp6.txt"))
    assert r["timestamp"] == "2025-11-30T13:26:01"
    assert r["gpu_freq_mhz"] == 305 and r["gpu_load_pct"] == 0
    assert r["board_power_mw"] == 5704 and r["cpu5_freq_mhz"] == 729


def test_tegrastats_variations():
    line = text("tegrastats-jetson-orin-nx-jp5.txt").strip()
    # Three-valued power (cur/avg/max).
    r = parse_tegrastats_line(line.replace("VDD_IN 5299mW/5299mW", "VDD_IN 5299mW/5100mW/6120mW"))
    assert (r["vdd_in_power_mw"], r["vdd_in_power_avg_mw"], r["vdd_in_power_max_mw"]) == (5299, 5100, 6120)
    # Not run as root: GPU frequency omitted -> absent, never 0.
    r = parse_tegrastats_line(line.replace("GR3D_FREQ 0%@611", "GR3D_FREQ 0%"))
    assert "gpu_freq_mhz" not in r and r["gpu_load_pct"] == 0
    # name@cur/maxC temperatures.
    r = parse_tegrastats_line(line.replace("tj@48.875C", "tj@48.875C/105C"))
    assert r["tj_temp_c"] == 48.875 and r["tj_temp_max_c"] == 105
    # No board rail: the sum of module rails, labelled module-only, and no board_power_mw.
    r = parse_tegrastats_line("RAM 1/2MB CPU [5%@1190] GPU 0/0 CPU 308/308 SOC 1230/1230 SYS5V 2263/2263")
    assert "board_power_mw" not in r and r["rails_power_sum_mw"] == 308 + 1230 + 2263
    assert r["power_scope"].startswith("module-only:")
    # A unit that is not power is an error that names the line, not a silent value.
    with pytest.raises(ParseError, match="line 3: VDD_IN: unknown power unit 'mA'"):
        parse_tegrastats(line + "\n" + line + "\n" + line.replace("5299mW/5299mW", "5299mA/5299mA"))
    with pytest.raises(ParseError, match="line 2: not a tegrastats line"):
        parse_tegrastats(line + "\nsegmentation fault\n")
    with pytest.raises(ParseError, match="CPU"):
        parse_tegrastats_line("CPU [5%@1190,garbage]")


# ---------------------------------------------------------------- vcgencmd, pmic

def test_vcgencmd_samples():
    rows = parse_vcgencmd(text("vcgencmd-samples.txt"))
    assert rows[0] == {"soc_temp_c": 43.8, "arm_freq_hz": 2000478464.0}          # Pi 4: frequency(48)
    assert rows[1]["arm_freq_hz"] == 2400023808.0 and rows[1]["throttled_raw"] == "0x0"   # Pi 5: frequency(0)
    assert rows[1]["throttled_now"] == 0 and rows[1]["under_voltage_since_boot"] == 0
    r = rows[2]
    assert r["throttled_raw"] == "0x50005" and r["core_volt_v"] == 0.72
    assert (r["under_voltage_now"], r["arm_freq_capped_now"], r["throttled_now"], r["soft_temp_limit_now"]) == (1, 0, 1, 0)
    assert (r["under_voltage_since_boot"], r["throttled_since_boot"], r["soft_temp_limit_since_boot"]) == (1, 1, 0)


def test_vcgencmd_other_clock_and_errors():
    assert parse_vcgencmd("frequency(1)=500000000\n") == [{"clock1_freq_hz": 5e8}]
    with pytest.raises(ParseError, match="line 2: temp: expected like 43.8'C"):
        parse_vcgencmd("volt=0.8V\ntemp=hot\n")
    with pytest.raises(ParseError, match="line 1: expected temp="):
        parse_vcgencmd("error=1 error_msg=\"Command not registered\"\n")
    with pytest.raises(ParseError, match="throttled: expected a hex"):
        parse_vcgencmd("throttled=0xZZ\n")


def test_pmic_read_adc_pi5():
    (r,) = parse_pmic_read_adc(text("vcgencmd-pmic_read_adc-pi5.txt"))
    assert r["vdd_core_current_a"] == pytest.approx(6.22421) and r["vdd_core_volt_v"] == pytest.approx(0.861733)
    assert r["vdd_core_power_w"] == pytest.approx(6.22421 * 0.861733)
    # EXT5V and BATT have a voltage but no current: no power for them, and the sum says it is not the input.
    assert r["ext5v_volt_v"] == pytest.approx(5.09066) and "ext5v_power_w" not in r and "ext5v_current_a" not in r
    assert r["rails_power_w"] == pytest.approx(7.2398, abs=1e-3)
    assert "not-board-input" in r["power_scope"] and "12 rails" in r["power_scope"]
    with pytest.raises(ParseError, match="line 2"):
        parse_pmic_read_adc(" VDD_CORE_A current(7)=6.2A\n VDD_CORE_V volt(15)=0.86mV\n")


# ---------------------------------------------------------------- Android battery

def test_dumpsys_battery_units_and_new_keys():
    (r,) = parse_dumpsys_battery(text("dumpsys-battery.txt"))
    assert r["voltage_mv"] == 4352 and r["temperature_c"] == pytest.approx(27.4)
    assert r["level_pct"] == 100 and r["status"] == "full" and r["charging"] == 0 and r["usb_powered"] == 1
    assert r["charge_counter_uah"] == 3270000 and r["health"] == "good" and r["technology"] == "Li-ion"
    # Newer Android adds lines (parsed by key, unknown ones ignored) and may drop some.
    newer = text("dumpsys-battery.txt").replace("  level: 100\n", "  level: 57\n  Charging state: 1\n"
                                                 "  Battery cycle: 10\n  Capacity level: 3\n")
    newer = newer.replace("  status: 5\n", "  status: 2\n")
    (n,) = parse_dumpsys_battery(newer)
    assert n["level_pct"] == 57 and n["charging"] == 1 and n["charging_state"] == 1 and "battery_cycle" not in n
    (m,) = parse_dumpsys_battery("  level: 80\n")
    assert m == {"level": 80}          # no scale printed: no level_pct guessed
    with pytest.raises(ParseError, match="line 2: AC powered: expected true or false"):
        parse_dumpsys_battery("Current Battery Service state:\n  AC powered: maybe\n")
    with pytest.raises(ParseError, match="not dumpsys battery output"):
        parse_dumpsys_battery("cmd: Can't find service: battery\n")


def test_thermalservice_current_hal_temps_not_cached_ones():
    (q,) = parse_thermalservice(text("dumpsys-thermalservice-qcom.txt"))
    assert q["thermal_status"] == 0 and q["thermal_status_name"] == "none" and q["hal_ready"] == 1
    # The cached list holds older, hotter values (cpu1-gold 48.3): the HAL's current ones are read.
    assert q["temps_from"] == "hal-current" and q["cpu_max_temp_c"] == pytest.approx(44.1)
    assert q["temp_cpu1_gold_usr_c"] == pytest.approx(33.5) and q["battery_max_temp_c"] == pytest.approx(28.0, abs=1e-3)
    assert q["skin_max_temp_c"] == pytest.approx(30.147001) and "throttling_sensors" not in q


def test_thermalservice_vendor_quirks():
    # Samsung: sensors named after their type, numbered its own way (TYPE_CPU is mType=1), and
    # -99.9 for a sensor with no reading (absent, not a temperature).
    (s,) = parse_thermalservice(text("dumpsys-thermalservice-samsung.txt"))
    assert s["cpu_max_temp_c"] == 24.0 and s["skin_max_temp_c"] == 25.3 and s["battery_max_temp_c"] == 24.4
    assert "gpu_max_temp_c" not in s and not any("power_amplifier" in k for k in s)
    # Pixel: battery current-limit records (types 6/7/8) are mV, mA and %, never temperatures.
    (p,) = parse_thermalservice(text("dumpsys-thermalservice-pixel.txt"))
    assert p["bcl_ocp_gpu_ma"] == 11900.0 and p["bcl_vdroop1_mv"] == 1050.0 and p["bcl_soc_pct"] == 0.0
    assert "temp_ocp_gpu_c" not in p and p["cpu_max_temp_c"] == pytest.approx(27.0, abs=1e-5)
    assert p["gpu_max_temp_c"] == pytest.approx(26.0, abs=1e-5) and "unknown_max_temp_c" not in p
    assert max(v for k, v in p.items() if k.endswith("_temp_c")) < 30   # no mA/mV value among temperatures


def test_thermalservice_variations_and_errors():
    hot = text("dumpsys-thermalservice-qcom.txt").replace("Thermal Status: 0", "Thermal Status: 3").replace(
        "mValue=44.1, mType=0, mName=cpu1-silver-usr, mStatus=0", "mValue=71.5, mType=0, mName=cpu1-silver-usr, mStatus=2")
    (h,) = parse_thermalservice(hot)
    assert h["thermal_status_name"] == "severe" and h["throttling_sensors"] == "cpu1-silver-usr"
    assert h["cpu_max_temp_c"] == 71.5
    # HAL not connected: no current list, so the cached one is used and says so.
    cached = text("dumpsys-thermalservice-qcom.txt").split("HAL Ready:")[0] + "HAL Ready: false\n"
    (c,) = parse_thermalservice(cached)
    assert c["temps_from"] == "cached" and c["hal_ready"] == 0 and c["cpu_max_temp_c"] == pytest.approx(48.3, abs=1e-5)
    (n,) = parse_thermalservice("Thermal Status: 1\nCurrent temperatures from HAL:\n"
                                "\tTemperature{mValue=NaN, mType=3, mName=disp_therm, mStatus=0}\n")
    assert n == {"thermal_status": 1, "thermal_status_name": "light", "temps_from": "hal-current"}
    with pytest.raises(ParseError, match="line 3: Temperature record without mValue"):
        parse_thermalservice("Thermal Status: 0\nCurrent temperatures from HAL:\n\tTemperature{mType=3, mName=x}\n")
    with pytest.raises(ParseError, match="line 1: Thermal Status: expected 0-6"):
        parse_thermalservice("Thermal Status: hot\n")
    with pytest.raises(ParseError, match="not dumpsys thermalservice output"):
        parse_thermalservice("Can't find service: thermalservice\n")


# ---------------------------------------------------------------- benchmark_model, nvpmodel

def test_benchmark_model_old_and_info_prefix():
    (old,) = parse_benchmark_model(text("benchmark_model-rpi4.txt"))
    assert old["inference_avg_us"] == 33071.8 and old["n_inference"] == 50 and old["inference_std_us"] == 129
    assert old["n_warmup"] == 12 and old["warmup_max_us"] == 156677 and old["first_inference_us"] == 156677
    assert old["init_us"] == 3501 and old["model_size_mb"] == pytest.approx(3.34914)
    assert "inference_median_us" not in old and "peak_memory_mb" not in old
    (new,) = parse_benchmark_model(text("benchmark_model-info-prefix.txt"))
    assert new["inference_avg_us"] == 56265.8 and new["n_inference"] == 1061 and new["peak_memory_mb"] == 93.2383
    assert new["n_warmup"] == 9 and new["inference_min_us"] == 54669


def test_benchmark_model_logcat_median_and_all_same():
    src = text("benchmark_model-info-prefix.txt").replace("INFO: ", "")
    logcat = "".join(f"11-22 10:00:0{i % 10}.123  4321  4321 I tflite  : {ln}\n"
                     for i, ln in enumerate(["Num threads: [4]", "Graph: [/data/local/tmp/m.tflite]"]
                                            + src.splitlines()))
    logcat = logcat.replace("std=982", "std=982 p5=54900 median=56200 p95=57900")
    (r,) = parse_benchmark_model(logcat)
    assert r["threads"] == 4 and r["graph"] == "/data/local/tmp/m.tflite"
    assert r["inference_median_us"] == 56200 and r["inference_p95_us"] == 57900 and r["inference_avg_us"] == 56265.8
    const = src.replace("count=1061 first=56576 curr=56299 min=54669 max=60236 avg=56265.8 std=982",
                        "count=5 curr=120(all same)")
    (c,) = parse_benchmark_model(const)
    assert c["n_inference"] == 5 and c["inference_min_us"] == c["inference_max_us"] == 120 and c["inference_std_us"] == 0
    with pytest.raises(ParseError, match="no 'Inference timings in us:' line"):
        parse_benchmark_model("\n".join(src.splitlines()[:3]))
    with pytest.raises(ParseError, match="line 1: avg: expected a number"):
        parse_benchmark_model("count=3 avg=1.2.3\n")


def test_nvpmodel():
    assert parse_nvpmodel(text("nvpmodel-q.txt")) == [{"power_mode": "MAXN", "power_mode_id": 0}]
    with pytest.raises(ParseError, match="no 'NV Power Mode:' line"):
        parse_nvpmodel("nvpmodel: command not found\n")


# ---------------------------------------------------------------- CLI

def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness.telemetry", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT)


def test_cli_parse_csv_units_and_empty_cells(tmp_path):
    log = tmp_path / "t.log"
    line = text("tegrastats-jetson-orin-nx-jp5.txt").strip()
    log.write_text(line + "\n" + line.replace("GR3D_FREQ 0%@611", "GR3D_FREQ 3%") + "\n")
    p = run("parse", "--format", "tegrastats", str(log))
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert len(rows) == 2 and rows[0]["gpu_freq_mhz"] == "611" and rows[1]["gpu_freq_mhz"] == ""
    assert rows[1]["board_power_mw"] == "5299.0" and "vdd_in_power_avg_mw" in rows[0]


def test_cli_parse_error_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("temp=43.8'C\nthrottled=zz\n")
    p = run("parse", "--format", "vcgencmd", str(bad))
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip() == f"error: {bad}:2: vcgencmd: throttled: expected a hex value like 0x50005, got 'zz'"


def test_import_benchmark_joins_the_store(tmp_path):
    p = run("import-benchmark", str(FIX / "benchmark_model-rpi4.txt"), "--model", str(MODEL), "--target", "pi4",
            "--profile", "raspberry-pi-4", "--out", str(tmp_path))
    assert p.returncode == 2 and "does not echo 'Num threads'; pass --threads N" in p.stderr
    p = run("import-benchmark", str(FIX / "benchmark_model-rpi4.txt"), "--model", str(MODEL), "--target", "pi4",
            "--profile", "raspberry-pi-4", "--threads", "4", "--runtime-version", "2.14", "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    (pq,) = tmp_path.glob("import-*/measurements.parquet")
    (r,) = pd.read_parquet(pq).to_dict("records")
    assert r["measured_by"] == "benchmark_model" and r["runtime"] == "benchmark_model" and r["runtime_version"] == "2.14"
    assert r["threads"] == 4 and r["n_runs"] == 50 and r["warmup_runs"] == 12 and r["status"] == "ok"
    assert r["latency_ms_mean"] == pytest.approx(33.0718) and r["latency_ms_min"] == pytest.approx(32.687)
    assert pd.isna(r["latency_ms_median"])          # this benchmark_model printed no median: none invented
    assert r["first_inference_ms"] == pytest.approx(156.677) and r["profile"] == "raspberry-pi-4"
    assert r["energy_source"] == "none" and pd.isna(r["energy_mj"])
    # Two runs of the same context cannot both be stored: refused before anything is written.
    twice = tmp_path / "twice.txt"
    one = "INFO: Num threads: [4]\n" + (FIX / "benchmark_model-info-prefix.txt").read_text()
    twice.write_text(one + one)
    p = run("import-benchmark", str(twice), "--model", str(MODEL), "--target", "p", "--profile", "android-adb",
            "--out", str(tmp_path / "twice"))
    assert p.returncode == 2 and p.stderr.strip() == (f"error: {twice}: run 2 repeats threads=4 of an earlier run; the store "
                                                      "keeps one measurement per model, threads and background load: "
                                                      "import each run from its own file")
    assert not (tmp_path / "twice").exists()
