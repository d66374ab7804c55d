"""A local Ray cluster for the tests: a head (2 CPUs) and a second node (1 CPU) on 127.0.0.1, started once per test
session by the `ray_cluster` fixture (tests/conftest.py), and only when a test asks for it.

Each node is `ray start --block` in its own session and temporary folder, on ports of its own, and is stopped by
its own process id. Where Ray is missing the tests that need it skip, with the reason; S7_REQUIRE_CLUSTER=1 (as in
CI) makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 120  # a busy 2-core machine takes a while to start two Ray nodes
HEAD_CPUS, NODE_CPUS = 2, 1


def ray_or_skip() -> None:
    """Skip (fail under S7_REQUIRE_CLUSTER=1) where Ray's job client or the `ray` command is missing."""
    missing = None
    try:
        import ray.job_submission  # noqa: F401
    except ImportError:
        missing = "ray is not installed: pip install -r requirements-cluster.txt"
    if missing is None and not shutil.which("ray"):
        missing = "the `ray` command is not on PATH"
    if missing:
        if os.environ.get("S7_REQUIRE_CLUSTER") == "1":
            pytest.fail(f"S7_REQUIRE_CLUSTER=1 but {missing}")
        pytest.skip(missing)


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_ports() -> list[str]:
    """Per-node ports, so that two nodes on one machine never ask for the same one."""
    names = ("node-manager", "object-manager", "runtime-env-agent", "dashboard-agent-grpc", "dashboard-agent-listen")
    ports = free_ports(len(names) + 1)
    flags = [f"--{name}-port={port}" for name, port in zip(names, ports, strict=False)]
    return flags + [f"--metrics-export-port={ports[-1]}"]


def _start_node(args: list[str], temp_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    log = open(temp_dir / "ray-start.log", "wb")  # noqa: SIM115 - the process writes to it until it is stopped
    command = ["ray", "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    command += ["--object-store-memory=100000000", f"--temp-dir={temp_dir}", *args, *_node_ports()]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop_node(proc: subprocess.Popen, temp_dir: Path) -> None:
    """SIGTERM our `ray start --block` (it stops the processes it started), then any left that use its folder."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    import psutil  # a dependency of ray[default]

    for p in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(temp_dir) in part for part in p.info["cmdline"] or ()):
                p.kill()


def _wait_until(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the Ray cluster did not come up in time"
        time.sleep(1)


def _reachable(address: str) -> bool:
    from s7core.runs.ray_jobs import ClusterError, RayExecutor

    try:
        RayExecutor(address=address).client  # noqa: B018
        return True
    except ClusterError:
        return False


def node_count(address: str) -> int:
    """The live nodes of the cluster at `address` (0 while it cannot be reached)."""
    from s7core.runs.ray_jobs import ClusterError, RayExecutor

    try:
        return RayExecutor(address=address).capacity().nodes
    except ClusterError:
        return 0


@contextlib.contextmanager
def local_cluster() -> Iterator[str]:
    """Start the head and the second node; yield the dashboard address; stop both, whatever happened."""
    ray_or_skip()
    gcs, dashboard, client = free_ports(3)
    # Ray's queue fails a job that waits longer than this; a class queues for longer than the default 15 min
    env = {**os.environ, "RAY_JOB_START_TIMEOUT_SECONDS": "3600"}
    head_dir, node_dir = (Path(tempfile.mkdtemp(prefix=f"s7ray{k}-", dir="/tmp")) for k in "hn")  # short: socket paths
    head_args = ["--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}"]
    head_args += [f"--ray-client-server-port={client}", f"--num-cpus={HEAD_CPUS}", "--num-gpus=0"]
    head_args += ["--include-dashboard=true"]
    nodes = [(_start_node(head_args, head_dir, env), head_dir)]
    address = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_until(lambda: _reachable(address), START_TIMEOUT_S)
        worker_args = [f"--address=127.0.0.1:{gcs}", f"--num-cpus={NODE_CPUS}", "--num-gpus=0"]
        nodes.append((_start_node(worker_args, node_dir, env), node_dir))
        _wait_until(lambda: node_count(address) == 2, START_TIMEOUT_S)
        yield address
    finally:
        for proc, temp_dir in reversed(nodes):
            _stop_node(proc, temp_dir)
        for temp_dir in (head_dir, node_dir):
            shutil.rmtree(temp_dir, ignore_errors=True)


def trainer_pid(run_dir: Path) -> int | None:
    """The pid of the process training `run_dir` on this machine (a Ray job's trainer too), or None."""
    import psutil

    for p in psutil.process_iter(["pid", "cmdline"]):
        cmdline = p.info["cmdline"] or []
        if "s7core" in cmdline and "train" in cmdline and str(run_dir) in cmdline:
            return p.info["pid"]
    return None
