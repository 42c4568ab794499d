"""SQLite campaign store: WAL, schema version, step-by-step migrations, Parquet export.

Raw data is kept: every timed and warm-up latency sample and the context snapshots before and
after each job. Statistics in the export are computed from the raw samples.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from harness import __version__
from harness.errors import BadInput, HarnessError

SCHEMA_VERSION = 3
FINAL = ("ok", "failed")  # a job in these states is not measured again on --resume

_V1 = """
CREATE TABLE campaigns (id TEXT PRIMARY KEY, created_at REAL NOT NULL, command TEXT, harness_version TEXT,
  settings TEXT NOT NULL);
CREATE TABLE targets (campaign_id TEXT NOT NULL, name TEXT NOT NULL, profile TEXT, profile_sha256 TEXT,
  transport TEXT, host TEXT, info TEXT, PRIMARY KEY (campaign_id, name));
CREATE TABLE candidates (campaign_id TEXT NOT NULL, candidate_id TEXT NOT NULL, sha256 TEXT NOT NULL,
  family TEXT, macs INTEGER, params INTEGER, file_bytes INTEGER, accuracy REAL, path TEXT, entry TEXT,
  PRIMARY KEY (campaign_id, candidate_id));
CREATE TABLE jobs (id INTEGER PRIMARY KEY, campaign_id TEXT NOT NULL, target TEXT NOT NULL,
  candidate_id TEXT NOT NULL, threads INTEGER NOT NULL, background_load INTEGER NOT NULL,
  n_runs INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
  started_at REAL, finished_at REAL, runtime TEXT, runtime_version TEXT, load_ms REAL,
  first_inference_ms REAL, warmup_stable INTEGER, peak_rss_mb REAL, rss_method TEXT, energy_mj REAL,
  energy_source TEXT, throttled INTEGER, error TEXT, result TEXT,
  UNIQUE (campaign_id, target, candidate_id, threads, background_load));
CREATE TABLE samples (job_id INTEGER NOT NULL REFERENCES jobs(id), phase TEXT NOT NULL, idx INTEGER NOT NULL,
  latency_ms REAL NOT NULL, PRIMARY KEY (job_id, phase, idx));
CREATE TABLE contexts (job_id INTEGER NOT NULL REFERENCES jobs(id), phase TEXT NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (job_id, phase));
CREATE TABLE errors (id INTEGER PRIMARY KEY, campaign_id TEXT NOT NULL, target TEXT, candidate_id TEXT,
  job_id INTEGER, at REAL NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);
"""

# MIGRATIONS[v] upgrades a store at version v to v + 1.
# v2: why a job's context was not the one asked for (frequency drop, throttling, external load),
# and the idle power subtracted from its energy.
_V2 = """
ALTER TABLE jobs ADD COLUMN context_flags TEXT;
ALTER TABLE jobs ADD COLUMN idle_power_mw REAL
"""
# v3: rows measured by another tool (TensorFlow Lite benchmark_model, imported from its output):
# which tool measured the row, and the latency statistics it printed (there are no raw samples).
_V3 = """
ALTER TABLE jobs ADD COLUMN measured_by TEXT;
ALTER TABLE jobs ADD COLUMN latency_summary TEXT
"""
MIGRATIONS: dict[int, str] = {0: _V1, 1: _V2, 2: _V3}

EXPORT_COLUMNS = (
    "campaign_id", "target", "profile", "candidate_id", "candidate_sha256", "family", "runtime", "runtime_version",
    "threads", "background_load", "n_runs", "latency_ms_median", "latency_ms_p90", "latency_ms_mean",
    "latency_ms_std", "latency_ms_min", "load_ms", "first_inference_ms", "warmup_runs", "warmup_stable",
    "peak_rss_mb", "energy_mj", "energy_source", "idle_power_mw", "throttled", "context_flags",
    "status", "error", "started_at", "macs",
    "accuracy", "harness_version", "measured_by", "pinned", "cpu_affinity", "cooldown_s",
    "reference_id", "reference_ms_median", "latency_rel_median", "delegate_partitions",
)


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HarnessError(f"{self.path.parent}: cannot create the folder ({e.strerror})") from None
        if self.path.exists():   # an existing file that is not a store is never rewritten in place
            with self.path.open("rb") as f:
                head = f.read(16)
            if head != b"SQLite format 3\x00":
                what = "empty, not an SQLite database" if not head else "not an SQLite database"
                raise BadInput(f"{self.path}: {what}; not a campaign store (left as it is)")
        self._lock = threading.RLock()
        try:
            self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as e:   # read-only or full disk, a truncated file: one line naming it
            raise HarnessError(f"{self.path}: {e}") from None

    def _migrate(self) -> None:
        with self._lock:
            v = self.db.execute("PRAGMA user_version").fetchone()[0]
            if v > SCHEMA_VERSION:
                raise HarnessError(f"{self.path}: store schema {v} is newer than this harness ({SCHEMA_VERSION}): "
                                   f"upgrade the harness to read it")
            while v < SCHEMA_VERSION:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in MIGRATIONS[v].split(";"):
                        if stmt.strip():
                            self.db.execute(stmt)
                    v += 1
                    self.db.execute(f"PRAGMA user_version={v}")
                    self.db.execute("COMMIT")
                except BaseException:
                    if self.db.in_transaction:   # SQLite has already rolled back after a full disk
                        self.db.execute("ROLLBACK")
                    raise

    def close(self) -> None:
        self.db.close()

    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self):
                store._lock.acquire()
                store.db.execute("BEGIN IMMEDIATE")
                return store.db

            def __exit__(self, et, ev, tb):
                try:
                    if et is None:
                        try:
                            store.db.execute("COMMIT")
                        except sqlite3.Error:   # a full disk at commit: nothing of this transaction is kept
                            if store.db.in_transaction:
                                store.db.execute("ROLLBACK")
                            raise
                    elif store.db.in_transaction:   # SQLite may have rolled back already (a full disk)
                        store.db.execute("ROLLBACK")
                finally:
                    store._lock.release()
        return _Tx()

    # ------------------------------------------------------------------ campaign setup
    def create_campaign(self, cid: str, settings: dict, command: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO campaigns VALUES (?,?,?,?,?)",
                       (cid, time.time(), command, __version__, json.dumps(settings)))

    def campaign(self, cid: str) -> dict | None:
        with self._lock:
            r = self.db.execute("SELECT id, created_at, command, harness_version, settings FROM campaigns WHERE id=?",
                                (cid,)).fetchone()
        if r is None:
            return None
        return {"id": r[0], "created_at": r[1], "command": r[2], "harness_version": r[3], "settings": json.loads(r[4])}

    def add_target(self, cid: str, t) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO targets (campaign_id, name, profile, profile_sha256, transport, host) "
                       "VALUES (?,?,?,?,?,?)", (cid, t.name, t.profile.name, t.profile.sha256, t.transport, t.host or t.serial))

    def set_target_info(self, cid: str, name: str, info: dict) -> None:
        with self._tx() as db:
            db.execute("UPDATE targets SET info=? WHERE campaign_id=? AND name=?", (json.dumps(info), cid, name))

    def add_candidate(self, cid: str, c) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO candidates VALUES (?,?,?,?,?,?,?,?,?,?)",
                       (cid, c.id, c.sha256, c.family, c.macs, c.params, c.file_bytes, c.accuracy, str(c.path),
                        json.dumps(c.entry)))

    def add_jobs(self, cid: str, rows: list[tuple[str, str, int, int, int]]) -> None:
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO jobs (campaign_id, target, candidate_id, threads, background_load, "
                           "n_runs) VALUES (?,?,?,?,?,?)", [(cid, *r) for r in rows])

    def pending_jobs(self, cid: str, target: str) -> list[dict]:
        with self._lock:
            cur = self.db.execute(
                "SELECT j.id, j.candidate_id, j.threads, j.background_load, j.n_runs, c.sha256, c.path "
                "FROM jobs j JOIN candidates c ON c.campaign_id=j.campaign_id AND c.candidate_id=j.candidate_id "
                f"WHERE j.campaign_id=? AND j.target=? AND j.status NOT IN {FINAL} ORDER BY j.id", (cid, target))
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    def move_pending(self, cid: str, old: str, new: str) -> int:
        """Jobs of ``old`` not yet final now belong to target ``new`` (a changed target on --resume)."""
        with self._tx() as db:
            cur = db.execute(f"UPDATE jobs SET target=? WHERE campaign_id=? AND target=? AND status NOT IN {FINAL}",
                             (new, cid, old))
            return cur.rowcount

    # ------------------------------------------------------------------ results
    def record_result(self, job_id: int, res: dict, started_at: float, power_model: tuple[str, dict] | None = None,
                      ) -> None:
        """Store one measured job atomically: raw samples, contexts, summary fields. Energy per
        inference comes from the agent's measurement (idle power subtracted) when it made one;
        otherwise from ``power_model`` (profile name, model), labelled ``estimate:``."""
        throttled = _throttled(res.get("context_before", {}), res.get("context_after", {}))
        flags = context_flags(res.get("context_before", {}), res.get("context_after", {}))
        energy = energy_of(res, power_model)
        keep = {k: v for k, v in res.items() if k not in ("samples_ms", "warmup_ms", "context_before", "context_after")}
        ref = res.get("reference") or {}
        if ref.get("model_ms"):   # the paired phase's raw samples go to the samples table too
            keep["reference"] = {k: v for k, v in ref.items() if k not in ("model_ms", "reference_ms")}
        with self._tx() as db:
            db.execute("DELETE FROM samples WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM contexts WHERE job_id=?", (job_id,))
            db.executemany("INSERT INTO samples VALUES (?,?,?,?)",
                           [(job_id, "timed", i, x) for i, x in enumerate(res["samples_ms"])]
                           + [(job_id, "warmup", i, x) for i, x in enumerate(res.get("warmup_ms", []))]
                           + [(job_id, "paired", i, x) for i, x in enumerate(ref.get("model_ms", []))]
                           + [(job_id, "reference", i, x) for i, x in enumerate(ref.get("reference_ms", []))])
            db.executemany("INSERT INTO contexts VALUES (?,?,?)",
                           [(job_id, p, json.dumps(res.get("context_" + p, {}))) for p in ("before", "after")])
            db.execute(
                "UPDATE jobs SET status='ok', attempts=attempts+1, started_at=?, finished_at=?, runtime=?, "
                "runtime_version=?, load_ms=?, first_inference_ms=?, warmup_stable=?, peak_rss_mb=?, rss_method=?, "
                "energy_mj=?, energy_source=?, idle_power_mw=?, throttled=?, context_flags=?, error=NULL, result=?, "
                "measured_by='harness-agent' WHERE id=?",
                (started_at, time.time(), res["runtime"], res["runtime_version"], res["load_ms"],
                 res["first_inference_ms"], int(bool(res.get("warmup_stable"))), res.get("peak_rss_mb"),
                 res.get("rss_method"), energy[0], energy[1], energy[2], throttled,
                 ",".join(flags) or None, json.dumps(keep), job_id))

    def record_imported(self, job_id: int, measured_by: str, summary: dict, fields: dict, raw: dict) -> None:
        """A job measured by another tool: ``summary`` holds the latency statistics it printed
        (ms: n, mean, min, max, std, and median/p90 only when the tool printed them); ``fields``
        the job columns it gave (runtime, load_ms, first_inference_ms, peak_rss_mb...)."""
        cols = ("runtime", "runtime_version", "load_ms", "first_inference_ms", "peak_rss_mb", "rss_method")
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET status='ok', attempts=attempts+1, started_at=?, finished_at=?, "
                + "".join(f"{c}=?, " for c in cols)
                + "energy_source='none', measured_by=?, latency_summary=?, error=NULL, result=? WHERE id=?",
                (fields.get("started_at"), time.time(), *(fields.get(c) for c in cols), measured_by,
                 json.dumps(summary), json.dumps(raw), job_id))

    def record_failure(self, cid: str, target: str, job: dict | None, kind: str, message: str,
                       final: bool = False) -> None:
        """An error row; ``final`` marks the job failed (not retried on --resume)."""
        with self._tx() as db:
            db.execute("INSERT INTO errors (campaign_id, target, candidate_id, job_id, at, kind, message) "
                       "VALUES (?,?,?,?,?,?,?)", (cid, target, job and job["candidate_id"], job and job["id"],
                                                  time.time(), kind, message))
            if job is not None:
                db.execute("UPDATE jobs SET attempts=attempts+1, status=?, error=? WHERE id=? AND status!='ok'",
                           ("failed" if final else "error", message, job["id"]))

    # ------------------------------------------------------------------ reading
    def errors(self, cid: str) -> list[dict]:
        with self._lock:
            cur = self.db.execute("SELECT target, candidate_id, kind, message, at FROM errors WHERE campaign_id=? "
                                  "ORDER BY id", (cid,))
            return [dict(zip(("target", "candidate_id", "kind", "message", "at"), r)) for r in cur.fetchall()]

    def status_counts(self, cid: str) -> dict[str, int]:
        with self._lock:
            return dict(self.db.execute("SELECT status, count(*) FROM jobs WHERE campaign_id=? GROUP BY status",
                                        (cid,)).fetchall())

    def rows(self, cid: str) -> list[dict]:
        """One row per (target, candidate, context), statistics computed from the raw samples."""
        with self._lock:
            cur = self.db.execute(
                "SELECT j.id, j.campaign_id, j.target, t.profile, j.candidate_id, c.sha256, c.family, j.runtime, "
                "j.runtime_version, j.threads, j.background_load, j.load_ms, j.first_inference_ms, j.warmup_stable, "
                "j.peak_rss_mb, j.energy_mj, j.energy_source, j.idle_power_mw, j.throttled, j.context_flags, "
                "j.status, j.error, j.started_at, c.macs, "
                "c.accuracy, k.harness_version, j.measured_by, j.latency_summary, j.result FROM jobs j "
                "JOIN candidates c ON c.campaign_id=j.campaign_id AND c.candidate_id=j.candidate_id "
                "JOIN targets t ON t.campaign_id=j.campaign_id AND t.name=j.target "
                "JOIN campaigns k ON k.id=j.campaign_id WHERE j.campaign_id=? ORDER BY j.id", (cid,))
            cols = [d[0] for d in cur.description]
            jobs = [dict(zip(cols, r)) for r in cur.fetchall()]
            samples: dict[tuple[int, str], list[float]] = {}
            for jid, phase, x in self.db.execute(
                    "SELECT s.job_id, s.phase, s.latency_ms FROM samples s JOIN jobs j ON j.id=s.job_id "
                    "WHERE j.campaign_id=? ORDER BY s.job_id, s.phase, s.idx", (cid,)):
                samples.setdefault((jid, phase), []).append(x)
        out = []
        for j in jobs:
            s = np.asarray(samples.get((j["id"], "timed"), []), float)
            row = {k: j.get(k) for k in EXPORT_COLUMNS}
            row["candidate_sha256"] = j["sha256"]
            row["n_runs"] = int(len(s))
            row["warmup_runs"] = len(samples.get((j["id"], "warmup"), []))
            row["warmup_stable"] = None if j["warmup_stable"] is None else bool(j["warmup_stable"])
            row["throttled"] = None if j["throttled"] is None else bool(j["throttled"])
            have = len(s) > 0
            row["latency_ms_median"] = float(np.median(s)) if have else None
            row["latency_ms_p90"] = float(np.percentile(s, 90)) if have else None
            row["latency_ms_mean"] = float(s.mean()) if have else None
            row["latency_ms_std"] = float(s.std(ddof=1)) if len(s) > 1 else None
            row["latency_ms_min"] = float(s.min()) if have else None
            result = json.loads(j["result"]) if j["result"] else {}
            pm = np.asarray(samples.get((j["id"], "paired"), []), float)
            pr = np.asarray(samples.get((j["id"], "reference"), []), float)
            if len(pm) and len(pm) == len(pr):
                # Relative latency: the median of each pair's ratio (model / reference, back to back).
                row["reference_id"] = (result.get("reference") or {}).get("id")
                row["reference_ms_median"] = float(np.median(pr))
                row["latency_rel_median"] = float(np.median(pm / pr))
            row["delegate_partitions"] = result.get("delegate_partitions")
            hy = result.get("hygiene") or {}
            row["pinned"] = ",".join(f"{k}={v}" for k, v in sorted(hy.get("pinned", {}).items())) or None
            row["cpu_affinity"] = ",".join(map(str, hy["cpu_affinity"])) if "cpu_affinity" in hy else None
            row["cooldown_s"] = hy["cooldown"]["waited_s"] if "cooldown" in hy else None
            if not have and j["latency_summary"]:
                # Imported from a tool that printed statistics only: take what it printed, and
                # leave what it did not (an older benchmark_model prints no median) empty.
                st = json.loads(j["latency_summary"])
                row["n_runs"] = st.get("n")
                row["warmup_runs"] = st.get("n_warmup")
                for k in ("median", "p90", "mean", "std", "min"):
                    row[f"latency_ms_{k}"] = st.get(k)
            out.append(row)
        return out

    def raw_samples(self, cid: str) -> dict[tuple[str, str, int, int], list[float]]:
        """Timed samples keyed by (target, candidate_id, threads, background_load)."""
        with self._lock:
            res: dict[tuple[str, str, int, int], list[float]] = {}
            for t, c, th, bg, x in self.db.execute(
                    "SELECT j.target, j.candidate_id, j.threads, j.background_load, s.latency_ms FROM samples s "
                    "JOIN jobs j ON j.id=s.job_id WHERE j.campaign_id=? AND s.phase='timed' ORDER BY s.job_id, s.idx",
                    (cid,)):
                res.setdefault((t, c, th, bg), []).append(x)
            return res

    def campaign_ids(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT id FROM campaigns ORDER BY created_at")]

    def targets(self, cid: str) -> list[dict]:
        with self._lock:
            cur = self.db.execute("SELECT name, profile, profile_sha256, transport, host, info FROM targets "
                                  "WHERE campaign_id=? ORDER BY name", (cid,))
            return [dict(zip(("name", "profile", "profile_sha256", "transport", "host"), r[:5]),
                         info=json.loads(r[5]) if r[5] else {}) for r in cur.fetchall()]

    def candidates(self, cid: str) -> list[dict]:
        with self._lock:
            cur = self.db.execute("SELECT candidate_id, sha256, family, macs, params, file_bytes, accuracy, entry "
                                  "FROM candidates WHERE campaign_id=? ORDER BY macs", (cid,))
            cols = ("candidate_id", "sha256", "family", "macs", "params", "file_bytes", "accuracy")
            return [dict(zip(cols, r[:7]), knobs=json.loads(r[7]).get("knobs", {})) for r in cur.fetchall()]

    def export_parquet(self, cid: str, out: str | Path) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self.rows(cid)
        types = {"threads": pa.int32(), "background_load": pa.int32(), "n_runs": pa.int32(),
                 "warmup_runs": pa.int32(), "macs": pa.int64(), "warmup_stable": pa.bool_(), "throttled": pa.bool_(),
                 "started_at": pa.float64(), "accuracy": pa.float64(), "energy_mj": pa.float64(),
                 "idle_power_mw": pa.float64(), "cooldown_s": pa.float64(), "latency_rel_median": pa.float64(),
                 "delegate_partitions": pa.int32()}
        fields = [pa.field(c, types.get(c, pa.float64() if ("_ms" in c or c.endswith("_mb")) else pa.string()))
                  for c in EXPORT_COLUMNS]
        schema = pa.schema(fields, metadata={"schema_version": str(SCHEMA_VERSION), "harness_version": __version__})
        table = pa.Table.from_pylist(rows, schema=schema)
        out = Path(out)
        tmp = out.with_suffix(".parquet.part")
        try:
            pq.write_table(table, tmp)
            tmp.replace(out)
        except BaseException:   # a full disk: no half-written file left beside the store
            tmp.unlink(missing_ok=True)
            raise
        return out


def energy_of(res: dict, power_model: tuple[str, dict] | None) -> tuple[float | None, str, float | None]:
    """(energy mJ per inference above idle, source label, idle mW)."""
    e = res.get("energy")
    n = len(res.get("samples_ms", []))
    if e and n:
        return e["energy_above_idle_mj"] / e.get("n_inferences", n), e["source"], e.get("idle_power_mw")
    if power_model and n:
        name, pm = power_model
        cores = max(1, int(res.get("threads", 1)))
        med = float(np.median(res["samples_ms"]))
        # W x ms = mJ: the active power of the busy cores over one inference, above idle
        return pm["active_w_per_core"] * cores * med, f"estimate:power_model({name})", pm["idle_w"] * 1e3
    return None, "none", None


FREQ_DROP = 0.10        # a cluster more than 10% slower after the job than before it
EXTERNAL_LOAD = 0.5     # more than half a CPU busy with work the job did not start


def context_flags(before: dict, after: dict) -> list[str]:
    """Why this measurement's context changed while it ran (empty when it did not, or when the
    OS says nothing)."""
    flags = []
    fb, fa = before.get("cpu_freq_mhz", {}), after.get("cpu_freq_mhz", {})
    drops = [c for c in fb if c in fa and fa[c] < (1 - FREQ_DROP) * fb[c]]
    if drops:
        flags.append("freq-drop:" + "+".join(sorted(drops)))
    if after.get("throttle_count", 0) > before.get("throttle_count", after.get("throttle_count", 0)):
        flags.append("throttle-count")
    # Under a governor that holds a frequency (performance, userspace), a CPU running below it
    # when the job ends is capped by something else: thermal, power or firmware limits.
    fset = after.get("cpu_set_freq_mhz", {})
    below = [c for c in fset if c in fa and fa[c] < (1 - FREQ_DROP) * fset[c]]
    if below:
        flags.append("freq-below-set:" + "+".join(sorted(below)))
    if any(s.get("vcgencmd_throttled", 0) & 0xF for s in (before, after)):
        flags.append("vcgencmd-throttled")
    status = max(s.get("android_thermal_status", 0) for s in (before, after))
    if status > 0:
        flags.append("android-thermal-status:%d" % status)
    if after.get("external_load_cpus", 0) > EXTERNAL_LOAD:
        flags.append("external-load:%.1f" % after["external_load_cpus"])
    return flags


def _throttled(before: dict, after: dict) -> int | None:
    """1 if the OS reported throttling during the job, 0 if it could have and did not, None if unknown."""
    known = False
    if "throttle_count" in before and "throttle_count" in after:
        known = True
        if after["throttle_count"] > before["throttle_count"]:
            return 1
    for snap in (before, after):
        if "vcgencmd_throttled" in snap:
            known = True
            if snap["vcgencmd_throttled"] & 0xF:  # bits 0-3: throttling or capping happening now
                return 1
        if "android_thermal_status" in snap:
            known = True
            if snap["android_thermal_status"] > 0:   # light (1) and above: the framework is throttling
                return 1
    return 0 if known else None
