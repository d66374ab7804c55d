"""The Ray executor: each run is a Ray job, so Ray does the queueing, the resources, the logs and the stopping.

A job's entrypoint is the project's own command line, `python -m s7core train --run-dir RUN --resume --cpus N`,
asking Ray for the run's CPUs and GPUs (fractions allowed); a job Ray cannot place yet waits as PENDING, which
the run shows as 'queued'. Workers get this copy of s7core through the job's runtime environment (`py_modules`),
so only Python, torch and Ray need installing on a node; the run folders must be on storage every node mounts at
the same path. The run's status holds the job's submission id, so any process that reaches the cluster (an app
restarted while jobs run, `python -m s7core runs` in another shell) finds the jobs again.

The cluster is the one $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS names (the dashboard, http://HEAD:8265), read
as Ray's own `ray job submit` reads them. `ray` is imported only when a cluster is asked something.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shlex
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import s7core
from s7core.config import Resources
from s7core.files import atomic_write
from s7core.runs.executor import RAY, Capacity, Executor, StorageCheck, check_can_start, launch_resources
from s7core.runs.status import RunError, RunState, RunStatus, now
from s7core.runs.store import LOG_FILE, RunFolder, run_folders, runs_root

ADDRESS_ENVS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")  # Ray's own order: the first one set names the cluster
CLUSTER_DEFAULT_CPUS = 1  # what cpus 0 ("automatic") reserves on a cluster: one core, one torch thread
STOP_WAIT_S = 60  # after SIGTERM, Ray waits this long before SIGKILL; the trainer needs one step and a save
PROBE_FILE = ".s7-storage-probe"  # the marker a probe job reads back, in the runs root
STORAGE_CHECK_FILE = ".s7-storage-check.json"  # the last passed check, shared by every process using the root
STORAGE_CHECK_TTL_S = 600.0  # a passed check is trusted this long for the same nodes
PROBE_TIMEOUT_S = 180.0  # a first job on a node also unpacks s7core there
FAILED_LOG_LINES = 3  # lines of the job's log quoted in the message of a failed run
NODE_LABEL = "ray.io/node-id"  # every Ray node carries its id as this label
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
QUIET_LOGGERS = ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging")


class ClusterError(RunError):
    """The Ray cluster cannot be reached, or cannot do what was asked; the message says what to fix."""


def cluster_address(address: str | None = None) -> str:
    """The Ray dashboard's address: `address`, else $RAY_API_SERVER_ADDRESS, else $RAY_ADDRESS."""
    found = address or next((os.environ[e] for e in ADDRESS_ENVS if os.environ.get(e)), None)
    if not found:
        raise ClusterError(
            "no Ray cluster named: set RAY_ADDRESS to the head's dashboard address, e.g. "
            "RAY_ADDRESS=http://HEAD:8265 (README: 'Running for a class on a cluster')"
        )
    return found


def cluster_resources(resources: Resources) -> tuple[int, float]:
    """The CPUs and GPUs a job asks Ray for: cpus 0 (automatic) is CLUSTER_DEFAULT_CPUS."""
    return resources.cpus or CLUSTER_DEFAULT_CPUS, resources.gpus


def entrypoint(run_dir: Path, cpus: int) -> str:
    """The shell command a run's job runs: the project's own command line, resuming the run folder."""
    return f"python -m s7core train --run-dir {shlex.quote(str(run_dir))} --resume --cpus {cpus}"


def runtime_env(gpus: float = 0.0) -> dict[str, Any]:
    """The job's runtime environment: this copy of s7core on the path, and how long a stop may take."""
    env = {"RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_S), "PYTHONUNBUFFERED": "1"}
    if not gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a run that reserved no GPU must not take one another run reserved
    return {"py_modules": [str(Path(s7core.__file__).resolve().parent)], "excludes": ["__pycache__"], "env_vars": env}


def _ray_message(text: str | None) -> str:
    """Ray's job message on one line, without its traceback."""
    return " ".join((text or "").split("Full traceback")[0].split())


# ---------------------------------------------------------------- the probe job and the storage check


def probe_storage(marker: str | os.PathLike) -> dict[str, Any]:
    """What a probe job reports from a node: the marker's token, whether the runs folder is writable there."""
    marker = Path(marker)
    report: dict[str, Any] = {"host": socket.gethostname(), "s7core": s7core.__version__}
    report["python"] = sys.version.split()[0]
    try:
        report["token"] = marker.read_text().strip()
    except OSError as err:
        report["error"] = f"cannot read {marker}: {err.strerror or err}"
        return report
    try:
        with tempfile.NamedTemporaryFile(dir=marker.parent, prefix=".s7-probe-"):
            report["writable"] = True
    except OSError as err:
        report["writable"] = False
        report["error"] = f"cannot write in {marker.parent}: {err.strerror or err}"
    try:
        import torch

        report["torch"] = torch.__version__
        report["cuda_gpus"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        report["error"] = "torch is not installed on this node: pip install -r requirements.txt there"
    return report


# ---------------------------------------------------------------- the executor


class RayExecutor(Executor):
    """Runs as Ray jobs on the cluster at `address` (default: $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS)."""

    name = RAY

    def __init__(
        self,
        runs_dir: str | os.PathLike | None = None,
        address: str | None = None,
        max_concurrent: int | None = None,  # the local executor's limit; Ray queues by resources instead
    ):
        self.root = runs_root(runs_dir)
        self._address = address
        self._client = None

    @property
    def address(self) -> str:
        """The dashboard address this executor talks to."""
        return cluster_address(self._address)

    @property
    def client(self):
        """Ray's JobSubmissionClient for the cluster (made on first use; Ray is imported then)."""
        if self._client is None:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError:
                raise ClusterError(
                    "the ray executor needs Ray: pip install -r requirements-cluster.txt (or choose --backend local)"
                ) from None
            for chatty in QUIET_LOGGERS:  # per-upload INFO lines, not for a student's terminal
                logging.getLogger(chatty).setLevel(logging.WARNING)
            try:
                self._client = JobSubmissionClient(self.address)
            except (ConnectionError, OSError, RuntimeError, ValueError) as err:
                raise ClusterError(
                    f"cannot reach the Ray cluster at {self.address} ({_ray_message(str(err))[:200]}) — start its "
                    "head with `ray start --head --dashboard-host 0.0.0.0`, or fix RAY_ADDRESS"
                ) from None
        return self._client

    # ---- launching

    def check_launch(self, resources: Resources) -> None:
        """Refuse a request no node can meet (saying what the cluster has), or a cluster that cannot see the runs."""
        cpus, gpus = cluster_resources(resources)
        nodes = self._nodes()
        if not any(n["cpus"] >= cpus and n["gpus"] >= gpus for n in nodes):
            have = "; ".join(f"{n['ip']}: {n['cpus']:g} CPUs, {n['gpus']:g} GPUs" for n in nodes) or "no live node"
            raise ClusterError(
                f"no node of the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs for one run (the cluster has {have})"
                " — ask for less with --cpus/--gpus, or add a node that has them"
            )
        check = self.check_storage()
        if not check.ok:
            raise ClusterError(check.message)

    def start(self, run_dir: str | os.PathLike, resources: Resources | None = None) -> RunStatus:
        """Submit the run as a Ray job asking for its CPUs and GPUs; Ray holds it as PENDING until a node has them."""
        folder = RunFolder(Path(run_dir).resolve())
        folder.read_config()  # refuse a damaged config before submitting anything
        status = self.state(folder.path)
        check_can_start(folder, status)
        resources = launch_resources(status, resources)
        self.check_launch(resources)
        cpus, gpus = cluster_resources(resources)
        job = f"s7-{folder.name}-{secrets.token_hex(4)}"
        # written before the submission, so that the trainer, which may start at once, finds the job's handle
        queued = folder.update_status(
            state=RunState.QUEUED,
            executor=RAY,
            handle={"submission_id": job, "address": self.address},
            resources=resources.to_dict(),
            queued_at=now("microseconds"),
            message=f"submitted to the Ray cluster: waiting for {cpus:g} CPUs and {gpus:g} GPUs",
        )
        try:
            self.client.submit_job(
                entrypoint=entrypoint(folder.path, cpus),
                submission_id=job,
                runtime_env=runtime_env(gpus),
                metadata={"s7_run": str(folder.path)},
                entrypoint_num_cpus=cpus,
                entrypoint_num_gpus=gpus or None,
            )
        except Exception as err:  # the submission failed: the run was never held by Ray
            message = f"the Ray cluster refused the job: {_ray_message(str(err))[:300]}"
            folder.update_status(state=status.state, handle={}, message=message)
            raise ClusterError(message) from None
        return queued

    def stop(self, run_dir: str | os.PathLike) -> RunStatus:
        """Ask Ray to stop the run's job: a running trainer gets SIGTERM and saves; a pending job is dropped."""
        folder = RunFolder(Path(run_dir))
        status = self.state(folder.path)
        if status.state.active and status.executor != RAY:
            raise RunError(f"run {folder.name} was launched by the {status.executor} executor — stop it there")
        if not status.state.active:
            raise RunError(f"run {folder.name} is not running (it is {status.state})")
        job = status.handle["submission_id"]
        if status.state is RunState.RUNNING:
            # the message goes first, so that it cannot land after the trainer's own last status
            stopping = folder.update_status(message="stopping: finishing the step and saving")
            self._stop_job(job)
            return stopping
        self._stop_job(job)
        latest = folder.read_status()
        if latest.state is RunState.RUNNING:  # it started meanwhile: its trainer got the SIGTERM
            return latest
        return folder.update_status(state=RunState.STOPPED, message="removed from the queue; start it again to train")

    def _stop_job(self, job: str) -> None:
        try:
            self.client.stop_job(job)
        except RuntimeError as err:
            raise ClusterError(f"Ray could not stop job {job}: {_ray_message(str(err))[:200]}") from None

    # ---- watching

    def state(self, run_dir: str | os.PathLike) -> RunStatus:
        """The run's status; a job Ray reports as ended while the status still says active is corrected."""
        folder = RunFolder(Path(run_dir))
        status = folder.read_status()
        if not status.state.active or status.executor != RAY or "submission_id" not in status.handle:
            return status
        job = status.handle["submission_id"]
        try:
            info = self.client.get_job_info(job)
        except RuntimeError as err:
            if "404" not in str(err):
                return status
            info = None  # the cluster no longer knows the job: restarted, or the job's record expired
        except (ClusterError, ConnectionError, OSError):
            return status  # the cluster is unreachable now: say nothing new rather than guess
        if info is not None and str(info.status.value) not in TERMINAL:
            if str(info.status.value) == "RUNNING" and status.state is RunState.QUEUED:
                return dataclasses.replace(status, state=RunState.RUNNING, message="starting on the cluster")
            return status
        latest = folder.read_status()  # the trainer may have written its last status just before the job ended
        if not latest.state.active or latest.handle != status.handle:
            return latest
        return folder.write_status(self._ended(folder, latest, info))

    def _ended(self, folder: RunFolder, status: RunStatus, info: Any) -> RunStatus:
        """The status of a run whose job ended without the trainer saying so (killed, refused, stopped early)."""
        resume = "resume the run to continue from its last checkpoint"
        if info is None:
            message = f"the Ray cluster no longer knows job {status.handle['submission_id']} (restarted?) — {resume}"
            return dataclasses.replace(status, state=RunState.FAILED, message=message)
        ray_status = str(info.status.value)
        if ray_status == "STOPPED":
            where = "before it started" if status.state is RunState.QUEUED else f"after epoch {status.epoch}"
            return dataclasses.replace(status, state=RunState.STOPPED, message=f"stopped on the cluster {where}")
        if ray_status == "SUCCEEDED":  # the trainer exited 0 without its last status: written elsewhere, or lost
            why = "its trainer ended without reporting how the run ended"
        else:
            why = _ray_message(info.message) or f"the job {ray_status.lower()}"
        message = f"the Ray job failed after epoch {status.epoch}: {why} — {resume}"
        lines = [line.strip() for line in self.logs(folder.path, FAILED_LOG_LINES * 4).splitlines() if line.strip()]
        if lines:
            message += f"; its log ends: {' | '.join(lines[-FAILED_LOG_LINES:])}"
        return dataclasses.replace(status, state=RunState.FAILED, message=message)

    def logs(self, run_dir: str | os.PathLike, lines: int = 50) -> str:
        """The last `lines` lines of the run's job log, as Ray keeps it (train.log when Ray has none)."""
        status = RunFolder(Path(run_dir)).read_status()
        text = None
        if status.executor == RAY and "submission_id" in status.handle:
            with contextlib.suppress(ClusterError, RuntimeError, ConnectionError, OSError):
                text = self.client.get_job_logs(status.handle["submission_id"])
        if text is None:
            try:
                text = (Path(run_dir) / LOG_FILE).read_text(errors="replace")
            except FileNotFoundError:
                return ""
        return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""

    def refresh(self) -> None:
        """Correct the status of every Ray run under the root; Ray itself starts pending jobs as nodes free up."""
        for path in run_folders(self.root):
            with contextlib.suppress(RunError):
                status = RunFolder(path).read_status()
                if status.state.active and status.executor == RAY:
                    self.state(path)

    def run_ended(self, run_dir: str | os.PathLike) -> None:
        """Nothing to do: Ray starts the next pending job when this one's resources free up."""

    # ---- the cluster

    def _nodes(self) -> list[dict[str, Any]]:
        """The live nodes: id, address, CPUs and GPUs (totals)."""
        self.client  # noqa: B018 - reaching the dashboard first gives the clearer error
        try:
            from ray.util.state import list_nodes

            found = list_nodes(address=self.client.get_address(), filters=[("state", "=", "ALIVE")], detail=True)
        except Exception as err:  # the state API raises its own kinds for an unreachable or old dashboard
            raise ClusterError(f"cannot list the nodes of the Ray cluster at {self.address}: {err}") from None
        return [
            {
                "id": n.node_id,
                "ip": n.node_ip,
                "cpus": float(n.resources_total.get("CPU", 0)),
                "gpus": float(n.resources_total.get("GPU", 0)),
            }
            for n in found
        ]

    def capacity(self) -> Capacity:
        """The cluster's nodes and its total and free CPUs and GPUs."""
        nodes = self._nodes()
        usage = self._usage()
        free = {k: (total - used) for k, (used, total) in usage.items()}
        return Capacity(
            executor=RAY,
            where=self.client.get_address(),
            nodes=len(nodes),
            cpus=sum(n["cpus"] for n in nodes),
            gpus=sum(n["gpus"] for n in nodes),
            free_cpus=free.get("CPU"),
            free_gpus=free.get("GPU", 0.0 if "CPU" in free else None),
        )

    def _usage(self) -> dict[str, tuple[float, float]]:
        """Resource -> (used, total) over the cluster, as `ray status` shows it; empty when the dashboard has none."""
        url = self.client.get_address().rstrip("/") + "/api/cluster_status"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the cluster's own dashboard
                report = json.load(response)["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return {k: (float(v[0]), float(v[1])) for k, v in report.items() if k in ("CPU", "GPU")}

    def check_storage(self, force: bool = False) -> StorageCheck:
        """Whether every node sees the runs folder: a probe job on each reads back a marker written here.

        A passed check is kept in the runs root for STORAGE_CHECK_TTL_S and reused while the nodes stay the same,
        so thirty sessions and every `--detach` do not each send probes.
        """
        nodes = self._nodes()
        if not nodes:
            return StorageCheck(False, f"the Ray cluster at {self.address} has no live node yet — start one, or wait")
        ids = tuple(sorted(n["id"] for n in nodes))
        cached = self._cached_check()
        if not force and cached and cached.nodes == ids and time.time() - cached.checked_at < STORAGE_CHECK_TTL_S:
            return cached
        self.root.mkdir(parents=True, exist_ok=True)
        marker = (self.root / PROBE_FILE).resolve()
        token = secrets.token_hex(8)
        with atomic_write(marker, binary=False) as f:
            f.write(token)
        problems = []
        for node in nodes:
            try:
                problem = self._probe(node, marker, token)
            except (RuntimeError, ConnectionError, OSError) as err:  # Ray refused or lost the probe job
                problem = f"node {node['ip']}: the probe job could not run ({_ray_message(str(err))[:200]})"
            if problem:
                problems.append(problem)
        if problems:
            message = (
                f"the Ray workers cannot use the runs folder {marker.parent}: {'; '.join(problems)} — put the runs "
                "folder on storage every node mounts at the same path (NFS), point S7_RUNS_DIR at it, and check "
                "again with `python -m s7core cluster --backend ray`"
            )
            return StorageCheck(False, message, ids, time.time())
        check = StorageCheck(True, f"all {len(nodes)} nodes see {marker.parent}", ids, time.time())
        with atomic_write(self.root / STORAGE_CHECK_FILE, binary=False) as f:
            json.dump({**check.to_dict(), "address": self.client.get_address()}, f)
        return check

    def _cached_check(self) -> StorageCheck | None:
        try:
            data = json.loads((self.root / STORAGE_CHECK_FILE).read_text())
            if data.get("address") != self.client.get_address():
                return None
            return StorageCheck(bool(data["ok"]), str(data["message"]), tuple(data["nodes"]), float(data["checked_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _probe(self, node: dict[str, Any], marker: Path, token: str) -> str | None:
        """Run the probe job on one node; None when its reply, written there, shows here with the token."""
        job = f"s7-probe-{token[:8]}-{node['id'][:8]}"
        reply = marker.parent / f"{PROBE_FILE}-{job}.json"
        self.client.submit_job(
            entrypoint=f"python -m s7core cluster --probe {shlex.quote(str(marker))} --reply {shlex.quote(str(reply))}",
            submission_id=job,
            runtime_env=runtime_env(),
            entrypoint_num_cpus=0,  # runs even while training jobs hold every core
            entrypoint_label_selector={NODE_LABEL: node["id"]},
        )
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while str(self.client.get_job_status(job).value) not in TERMINAL:
            if time.monotonic() > deadline:
                with contextlib.suppress(RuntimeError):
                    self.client.stop_job(job)
                return f"node {node['ip']}: the probe job did not finish within {PROBE_TIMEOUT_S:.0f} s"
            time.sleep(0.2)
        try:  # the reply is written into the runs folder on the node: seeing it here proves the folder is shared
            report = json.loads(reply.read_text())
        except (OSError, ValueError):
            why = _ray_message(self.client.get_job_info(job).message)[:300]
            tail = " | ".join(line.strip() for line in self.client.get_job_logs(job).splitlines()[-2:] if line.strip())
            return f"node {node['ip']}: its probe's reply never reached this folder (job: {why}; log: {tail or '-'})"
        finally:
            reply.unlink(missing_ok=True)
        if report.get("token") != token:
            return f"node {node['ip']}: {report.get('error') or 'it sees another runs folder at that path'}"
        if report.get("error"):
            return f"node {node['ip']}: {report['error']}"
        return None
