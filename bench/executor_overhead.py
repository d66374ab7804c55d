"""What an executor costs a run: six tiny runs through `local` and through `ray`, launch to first step, and in all.

Each run trains the `tiny` preset for one epoch on a 500-image synthetic set (10 steps), so nearly all of its time
is the executor's and the trainer's start-up. Both executors get two runs at once: `local` with max_concurrent 2,
`ray` with a head of 2 CPUs and one CPU a run. "Launch to first step" is from `start()` to the first step line in
the run's metrics.jsonl (polled every 20 ms); "total" is from the first launch to the last run finished.

    python bench/executor_overhead.py                 # starts its own Ray head on 127.0.0.1 (2 CPUs), then stops it
    RAY_ADDRESS=http://HEAD:8265 python bench/executor_overhead.py --runs-dir /shared/runs   # an existing cluster
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s7core.config import Resources, TrainConfig  # noqa: E402
from s7core.data import make_tiny_cifar10  # noqa: E402
from s7core.runs import create_run, get_executor, read_metrics, read_status  # noqa: E402
from s7core.spec import get_preset  # noqa: E402

POLL_S = 0.02
AT_ONCE = 2  # runs training together on either executor (a 2-CPU head, or max_concurrent 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_head(cpus: int) -> Iterator[str]:
    """A Ray head on 127.0.0.1 in its own temporary folder, stopped by its own process id; yields its dashboard."""
    temp = Path(tempfile.mkdtemp(prefix="s7bench-", dir="/tmp"))
    gcs, dashboard = _free_port(), _free_port()
    command = ["ray", "start", "--head", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    command += [f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--num-cpus={cpus}"]
    command += ["--num-gpus=0", "--object-store-memory=100000000", f"--temp-dir={temp}"]
    command += [f"--ray-client-server-port={_free_port()}"]
    log = open(temp / "ray-start.log", "wb")  # noqa: SIM115 - written by the head until it stops
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get_executor("ray", address=address).capacity().nodes:
                    break
                time.sleep(1)
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"the Ray head did not start; see {temp / 'ray-start.log'}") from None
                time.sleep(1)
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def run_batch(backend: str, root: Path, data: Path, count: int, address: str | None) -> dict[str, list[float]]:
    """Launch `count` runs through `backend` at once; their launch-to-first-step and launch-to-finish times."""
    options = {"address": address} if backend == "ray" else {"max_concurrent": AT_ONCE}
    executor = get_executor(backend, runs_dir=root, **options)
    config = TrainConfig(epochs=1, batch_size=50, val_split=0, device="cpu", seed=0)
    resources = Resources(cpus=1) if backend == "ray" else None
    runs = [create_run(get_preset("tiny"), config, root, f"{backend}-{i}", data, "default") for i in range(count)]
    launched, first, ended = {}, {}, {}
    for run in runs:
        launched[run] = time.monotonic()
        executor.start(run, resources)
    while len(ended) < count:
        executor.refresh()
        for run in runs:
            if run not in first and read_metrics(run, "step"):
                first[run] = time.monotonic()
            if run not in ended and not executor.state(run).state.active:
                ended[run] = time.monotonic()
                state = read_status(run).state
                if state.value != "finished":
                    raise SystemExit(f"{run.name} ended {state}: {executor.logs(run, 5)}")
        time.sleep(POLL_S)
    start = min(launched.values())
    return {
        "first_step": [first[r] - launched[r] for r in runs],
        "finished": [ended[r] - launched[r] for r in runs],
        "total": [max(ended.values()) - start],
    }


def report(backend: str, times: dict[str, list[float]]) -> None:
    """One line of figures per executor."""
    first, done = times["first_step"], times["finished"]
    unqueued = ", ".join(f"{s:.1f}" for s in first[:AT_ONCE])
    print(
        f"{backend:5}  launch to first step: first {AT_ONCE} runs (no wait) {unqueued} s, "
        f"median of all {statistics.median(first):.1f} s  launch to finished: median {statistics.median(done):.1f} s  "
        f"total for {len(first)} runs: {times['total'][0]:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=6, help="runs per executor (default 6)")
    parser.add_argument("--runs-dir", help="runs root (default: a temporary folder; on a cluster, a shared one)")
    parser.add_argument("--backends", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    args = parser.parse_args()
    root = Path(args.runs_dir or tempfile.mkdtemp(prefix="s7bench-runs-"))
    data = make_tiny_cifar10(root / "data", n_train=500, n_test=200)
    host = os.uname().nodename
    print(f"host {host}, {os.cpu_count()} cores; {args.runs} runs of tiny, 1 epoch of 500 images, two at a time")
    results = {}
    if "local" in args.backends:
        results["local"] = run_batch("local", root, data, args.runs, None)
        report("local", results["local"])
    if "ray" in args.backends:
        address = os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
        with contextlib.nullcontext(address) if address else ray_head(cpus=AT_ONCE) as address:
            get_executor("ray", runs_dir=root, address=address).check_storage()  # once, as the app's start-up does
            results["ray"] = run_batch("ray", root, data, args.runs, address)
        report("ray", results["ray"])


if __name__ == "__main__":
    main()
