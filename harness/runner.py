"""One worker per target: connect, deploy the agent, push models once per hash, run jobs.

Transport errors and timeouts are retried with exponential backoff over a fresh connection and a
fresh agent; a model the runtime rejects is a final error row and the worker moves on.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from harness.bundle import agent_bundle
from harness.errors import BadInput
from harness.hostmeter import HostMeter, measure_with_host_meter
from harness.inventory import Target
from harness.store import Store
from harness.telemetry.meters import MeterError
from harness.transport.adb import ADBTransport
from harness.transport.base import AgentProcess, PermanentError, RemoteTimeout, TransportError
from harness.transport.local import LocalTransport
from harness.transport.ssh import SSHParams, SSHTransport
from harness.zoo.graph import read_graph, reference_class, sha256_file


@dataclass(frozen=True)
class RunSettings:
    job_timeout_s: float = 120.0
    retries: int = 3            # extra attempts per job (and per connection) after the first
    backoff_s: float = 1.0      # doubled on each retry, capped at 30 s
    warmup: dict | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    ssh_config: str = "~/.ssh/config"
    trust_new_hosts: bool = False
    connect_timeout_s: float = 10.0
    # measured in pairs with every job (relative latency): {id, path, sha256}, or one per dtype
    # reference class, {"by_dtype": {class: {id, path, sha256}}} (reference_for)
    reference: dict | None = None


@lru_cache(maxsize=1024)
def _reference_class(path: str, sha256: str) -> str:
    try:
        return reference_class(read_graph(path))
    except BadInput:    # a corrupt model: the runtime on the target rejects it, with its own error row
        return "float32"


def reference_for(spec: dict | None, path: str, sha256: str) -> dict | None:
    """The reference model a job's candidate is paired with: ``spec`` itself, or with a reference
    per class the one of the candidate's :func:`harness.zoo.graph.reference_class` (a campaign
    begun before ``hybrid-split`` existed pairs those with its ``hybrid`` reference, as it did),
    carrying the spec's ``small`` one, which the agent takes instead for a candidate faster than
    its ``below_ms`` (a campaign begun before that has none), and the spec's ``blocks`` (how the
    pairs alternate; none: single invokes, as campaigns begun before did)."""
    if spec and "by_dtype" in spec:
        cls = _reference_class(path, sha256)
        by = spec["by_dtype"]
        ref = by[cls] if cls in by else by[cls.split("-")[0]]
        return {**ref, **{k: spec[k] for k in ("small", "blocks") if spec.get(k)}}
    return spec


class SetupError(PermanentError):
    """Pinning asked for in the inventory could not be applied (needs root, no such knob)."""


def make_transport(t: Target, s: RunSettings):
    if t.transport == "local":
        return LocalTransport()
    if t.transport == "adb":
        return ADBTransport(t.serial, t.adb, s.connect_timeout_s)
    return SSHTransport(SSHParams(t.host, t.port, t.user, t.identity_file, s.known_hosts, s.ssh_config,
                                  s.trust_new_hosts, s.connect_timeout_s))


class Session:
    """A connection plus a running agent on one target."""

    def __init__(self, target: Target, settings: RunSettings):
        self.target, self.settings = target, settings
        self.transport = make_transport(target, settings)
        self.agent: AgentProcess | None = None
        self.info: dict = {}
        self._pushed: set[str] = set()
        self._seq = 0
        self.baseline_c: dict = {}
        self.host_meter: HostMeter | None = None

    def open(self) -> dict:
        tr = self.transport
        tr.connect()
        wd = self.workdir = tr.expand(self.target.workdir)
        tr.mkdir(wd + "/models")
        bundle = agent_bundle()   # agent + meters + parsers, one zip named by its sha256
        agent_path = f"{wd}/{bundle.name}"
        if not tr.exists(agent_path):
            tr.put(str(bundle), agent_path)
        python = self.target.python
        if self.target.provision:
            rc, out, err = tr.run([python, agent_path, "--provision", wd, self.target.provision], timeout=900)
            if rc != 0:
                raise TransportError(f"provisioning failed: {err.strip().splitlines()[-1] if err.strip() else rc}")
            python = out.strip().splitlines()[-1]
        log = f"{wd}/agent.log"
        self.agent = tr.start([python, agent_path, "--log", log])
        try:
            self.info = self.request({"cmd": "hello"}, timeout=120)
        except TransportError as e:
            raise TransportError(f"{e}; agent log {log}: {self._log_tail(log)}") from None
        if not self.info.get("ok"):
            raise TransportError(f"agent on {self.target.name} cannot run: {self.info.get('error')}")
        t = self.target
        if t.power_meter and t.power_meter.get("attached") == "host":
            try:
                self.host_meter = HostMeter(t.power_meter)
            except MeterError as e:
                raise SetupError(f"power meter on the host: {e}") from None
            self.info["host_power_source"] = self.host_meter.name
        if t.governor or t.nvpmodel is not None:
            r = self.request({"cmd": "setup", "governor": t.governor, "nvpmodel": t.nvpmodel}, timeout=120)
            if not r.get("ok"):
                raise SetupError(f"setup on {t.name} failed: {r.get('error')}")
            self.info["pinned"] = r
        if t.cooldown_c:
            # The idle baseline: the temperatures when the session starts (after pinning).
            ctx = self.request({"cmd": "context"}, timeout=60).get("context", {})
            self.baseline_c = ctx.get("temp_c", {})
            self.info["cooldown_baseline_c"] = self.baseline_c
        return self.info

    def job_request(self, job: dict, model: str, warmup: dict | None) -> dict:
        t = self.target
        req = {"cmd": "measure", "model": model, "threads": job["threads"], "n_runs": job["n_runs"],
               "background_load": job["background_load"], "warmup": warmup or {}}
        if self.host_meter is not None:
            req["host_meter"] = {"hz": self.host_meter.hz, "name": self.host_meter.name}
        elif t.power_meter:
            req["power_meter"] = t.power_meter
        if t.cpus:
            req["cpus"] = list(t.cpus)
        ref = reference_for(self.settings.reference, job["path"], job["sha256"])
        if ref:
            def on_target(r):   # the model pushed once by content hash, named as the agent reports it
                return {"model": self.ensure_model(r["sha256"], r["path"]), "id": r["id"], "sha256": r["sha256"]}
            req["reference"] = on_target(ref)
            if ref.get("small"):
                req["reference"]["small"] = {**on_target(ref["small"]), "below_ms": ref["small"]["below_ms"]}
            if ref.get("blocks"):
                req["reference"]["blocks"] = dict(ref["blocks"])
        if t.cooldown_c and self.baseline_c:
            req["cooldown"] = {"baseline": self.baseline_c, "above_c": t.cooldown_c, "timeout_s": 300}
        return req

    def _log_tail(self, log: str) -> str:
        try:
            rc, out, _ = self.transport.run(["tail", "-n", "1", log], timeout=10)
            return out.strip() or "(empty)"
        except TransportError:
            return "(unreadable)"

    def request(self, req: dict, timeout: float) -> dict:
        self._seq += 1
        req = dict(req, id=self._seq)
        self.agent.write_line(json.dumps(req))
        while True:
            resp = json.loads(self.agent.read_line(timeout))
            if resp.get("id") == self._seq:
                return resp

    def measure(self, req: dict, timeout: float) -> dict:
        """One measure request; with a meter on the host, sampled here and aligned to the device."""
        if self.host_meter is None:
            return self.request(req, timeout)
        return measure_with_host_meter(self.host_meter, lambda: self.request({"cmd": "clock"}, timeout=30)["t_mono"],
                                       lambda: self.request(req, timeout))

    def ensure_model(self, sha256: str, local_path: str) -> str:
        remote = f"{self.workdir}/models/{sha256}.tflite"
        if sha256 not in self._pushed:
            if not self.transport.exists(remote):
                self.transport.put(local_path, remote)
            self._pushed.add(sha256)
        return remote

    def close(self, kill: bool = False) -> None:
        if self.agent is not None and not kill and self.info.get("pinned"):
            try:   # the agent also restores when its input closes; this says so in the log sooner
                self.request({"cmd": "restore"}, timeout=60)
            except (TransportError, ValueError):
                pass
        if self.agent is not None:
            try:
                self.agent.kill() if kill else self.agent.close()
            except Exception:
                pass
            self.agent = None
        if self.host_meter is not None:
            self.host_meter.close()
            self.host_meter = None
        self.transport.close()


class TargetWorker:
    def __init__(self, cid: str, target: Target, store: Store, settings: RunSettings,
                 progress: Callable[[str], None], stop: threading.Event | None = None):
        self.cid, self.target, self.store, self.settings = cid, target, store, settings
        self.progress = progress
        self.stop = stop or threading.Event()
        self.fatal: str | None = None    # the store cannot be written: every worker stops, nothing kept is lost
        self.session: Session | None = None

    def abort(self) -> None:
        """From another thread (Ctrl-C): stop, and end the job in flight by killing its agent."""
        self.stop.set()
        s = self.session
        if s is not None and s.agent is not None:
            try:
                s.agent.kill()
            except Exception:
                pass

    def _backoff(self, attempt: int) -> None:
        self.stop.wait(min(30.0, self.settings.backoff_s * 2 ** attempt))

    def _connect(self) -> Session | None:
        last = ""
        for attempt in range(self.settings.retries + 1):
            if self.stop.is_set():
                return None
            s = Session(self.target, self.settings)
            try:
                info = s.open()
                self.store.set_target_info(self.cid, self.target.name, info)
                return s
            except (TransportError, ValueError) as e:
                s.close(kill=True)
                last = str(e)
                self.store.record_failure(self.cid, self.target.name, None,
                                          "setup" if isinstance(e, SetupError) else "connect", last)
                if isinstance(e, PermanentError):   # host keys, permissions, a missing binary: said once
                    self.progress(f"[{self.target.name}] cannot be used: {last}")
                    return None
                self.progress(f"[{self.target.name}] connect failed ({last}); attempt {attempt + 1}")
                self._backoff(attempt)
        self.progress(f"[{self.target.name}] giving up: {last}")
        return None

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:   # outside a job (the store when connecting): said, never a silent dead thread
            self.fatal = f"[{self.target.name}] stopped: {type(e).__name__}: {e}"
            if isinstance(e, (sqlite3.Error, OSError)):
                self.stop.set()

    def _run(self) -> None:
        jobs = self.store.pending_jobs(self.cid, self.target.name)
        total = len(jobs)
        session: Session | None = None
        done = 0
        try:
            for job in jobs:
                attempt = 0
                while True:
                    if self.stop.is_set():
                        return
                    if session is None:
                        session = self.session = self._connect()
                        if session is None:
                            return  # remaining jobs stay pending/error: --resume measures them
                    try:
                        if self._run_job(session, job, attempt):
                            break
                        if self.stop.is_set():   # aborted: the job stays pending for --resume
                            return
                    except Exception as e:   # not a transport fault: its error row, and the campaign goes on
                        session.close(kill=True)   # the agent may be mid-answer: a fresh one for the next job
                        session = None
                        if self._store_failed(e, job):
                            return
                        break
                    session.close(kill=True)
                    session = None
                    attempt += 1
                    if attempt > self.settings.retries:
                        self.progress(f"[{self.target.name}] {job['candidate_id']}: giving up after {attempt} tries")
                        break
                    self._backoff(attempt - 1)
                done += 1
                self.progress(f"[{self.target.name}] {done}/{total} {job['candidate_id']} "
                              f"threads={job['threads']} bg={job['background_load']}")
        finally:
            if session is not None:
                session.close()

    def _store_failed(self, e: Exception, job: dict) -> bool:
        """An unexpected exception in a job. The store failing (a full or read-only disk) stops every
        worker, the job left to --resume; anything else is the job's final error row and the
        campaign goes on. True when this worker must stop."""
        why = f"{type(e).__name__}: {e}"
        store_fault = isinstance(e, sqlite3.Error)
        try:
            self.store.record_failure(self.cid, self.target.name, job, "internal", why, final=not store_fault)
        except (sqlite3.Error, OSError) as e2:
            store_fault, why = True, f"{why}; then {e2}"
        if store_fault:
            self.fatal = f"{self.store.path}: cannot write ({why})"
            self.stop.set()
            return True
        self.progress(f"[{self.target.name}] {job['candidate_id']}: {why}")
        return False

    def _run_job(self, s: Session, job: dict, attempt: int) -> bool:
        """True when the job reached a final state (ok or failed); False to retry on a new session."""
        name = self.target.name
        if not os.path.isfile(job["path"]):
            self.store.record_failure(self.cid, name, job, "model", f"{job['path']}: no such model file", final=True)
            return True
        if sha256_file(job["path"]) != job["sha256"]:
            self.store.record_failure(self.cid, name, job, "model", f"{job['path']}: file changed since the manifest "
                                      f"(sha256 differs)", final=True)
            return True
        started = time.time()
        try:
            remote = s.ensure_model(job["sha256"], job["path"])
            req = s.job_request(job, remote, self.settings.warmup)
            timeout = self.settings.job_timeout_s + req.get("cooldown", {}).get("timeout_s", 0)   # the wait is not the job
            res = s.measure(req, timeout=timeout)
        except RemoteTimeout as e:
            self.store.record_failure(self.cid, name, job, "timeout", str(e))
            return False
        except (TransportError, ValueError) as e:
            aborted = self.stop.is_set()    # abort() killed the agent: not the target's fault
            self.store.record_failure(self.cid, name, job, "interrupted" if aborted else "transport",
                                      "interrupted; --resume measures it" if aborted else str(e))
            return False
        if res.get("ok"):
            self.store.record_result(job["id"], res, started, (self.target.profile.name, self.target.profile.power_model))
            return True
        final = res.get("kind") in ("model", "meter", "setup")   # retrying will not fix these
        self.store.record_failure(self.cid, name, job, res.get("kind", "agent"), res.get("error", "?"), final=final)
        return final
