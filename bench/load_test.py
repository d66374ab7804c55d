"""A classroom on one server: 30 sessions over Streamlit's own websocket protocol while one `fast` run trains.

Starts `streamlit run app.py` on 127.0.0.1, then measures the `fast` run's training speed alone, then again while
SESSIONS clients (each a real websocket session speaking Streamlit's protobuf protocol, as the browser does) open
every page in turn and edit the network (a new spec each time, through a ?spec= link, which redraws the RF table).

Reported: p50/p95 of the time from a client's request to the end of the page's script (every element of the page
received: "rendered" here means on the wire, before a browser would paint it), the same for an edit on the
Architecture page (the RF table updated), exception boxes and errors, the server's peak memory, and the training
run's images/s with the class and without. It does not drive a browser: painting happens on the students' own
machines, not on the server.

    python bench/load_test.py --sessions 30 --duration 180 --data-dir ../shared/data/cifar-10-batches-bin
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere without installing s7core

from streamlit.proto.BackMsg_pb2 import BackMsg  # noqa: E402
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from s7core.links import spec_to_link  # noqa: E402
from s7core.spec import get_preset  # noqa: E402

PAGES = ("architecture", "receptive_field", "train", "results", "misclassified")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def edited_links(count: int, seed: int) -> list[str]:
    """?spec= values of the tiny net with one channel count changed each: every edit a new network."""
    chance, tiny = random.Random(seed), get_preset("tiny")
    links = []
    for _ in range(count):
        layers = list(tiny.layers)
        i = chance.choice([i for i, lay in enumerate(layers) if lay.type in ("conv", "sepconv") and lay.channels != 10])
        layers[i] = type(layers[i])(**{**layers[i].__dict__, "channels": chance.randrange(8, 129)})
        links.append(spec_to_link(tiny.with_layers(layers))["spec"])
    return links


class Session:
    """One browser tab's websocket: ask for a page (with a query string) and wait for its script to finish."""

    def __init__(self, url: str):
        self.url, self.ws, self.pages = url, None, {}

    async def connect(self) -> None:
        self.ws = await connect(self.url, subprotocols=["streamlit"], max_size=None, open_timeout=120)

    async def run(self, page: str, query: str = "") -> tuple[float, list[str]]:
        """Seconds from the request to 'script finished', and the exception messages the page showed."""
        msg = BackMsg()
        msg.rerun_script.query_string = query
        msg.rerun_script.page_script_hash = self.pages.get(page, "")
        msg.rerun_script.page_name = page
        start = time.perf_counter()
        await self.ws.send(msg.SerializeToString())
        errors: list[str] = []
        while True:
            raw = await self.ws.recv()
            fwd = ForwardMsg()
            fwd.ParseFromString(raw)
            kind = fwd.WhichOneof("type")
            if kind == "navigation":
                self.pages = {p.url_pathname: p.page_script_hash for p in fwd.navigation.app_pages}
            elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                element = fwd.delta.new_element
                if element.WhichOneof("type") == "exception":
                    errors.append(f"{element.exception.type}: {element.exception.message}"[:300])
            elif kind == "script_finished":
                return time.perf_counter() - start, errors

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def student(url: str, links: list[str], until: float, seed: int, out: dict) -> None:
    """One student: opens each page in turn, and edits the network on the Architecture page between them."""
    chance, session = random.Random(seed), Session(url)
    try:
        await session.connect()
        await session.run("architecture")  # the first load also tells the client the pages' hashes
        while time.monotonic() < until:
            for page in PAGES:
                seconds, errors = await session.run(page)
                out["page"].append(seconds)
                out["exceptions"] += errors
                if time.monotonic() >= until:
                    break
            seconds, errors = await session.run("architecture", "spec=" + chance.choice(links))
            out["edit"].append(seconds)
            out["exceptions"] += errors
            await asyncio.sleep(chance.uniform(0.5, 2.0))  # a student reads before the next click
    except Exception as err:  # a dropped session is a result, not a crash of the benchmark
        out["failures"].append(f"{type(err).__name__}: {err}"[:300])
    finally:
        await session.close()


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    total = 0
    for line in subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)], capture_output=True,
                               text=True).stdout.split():  # fmt: skip
        total += int(line)
    return total / 1024


def train_rate(run_dir: Path, since_step: int) -> tuple[float | None, int]:
    """Median images/s of the run's step lines after global step `since_step`; and its latest global step."""
    from s7core.runs.store import read_metrics

    steps = [r for r in read_metrics(run_dir, "step") if r["global_step"] > since_step and r["step"] > 1]
    latest = max((r["global_step"] for r in read_metrics(run_dir, "step")), default=since_step)
    return (statistics.median(r["images_per_s"] for r in steps) if steps else None), latest


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load_phase(url: str, sessions: int, duration: float, server_pid: int) -> dict:
    links = edited_links(200, seed=1)
    out: dict = {"page": [], "edit": [], "exceptions": [], "failures": []}
    until = time.monotonic() + duration
    peak = {"mb": rss_mb(server_pid)}

    async def watch_memory() -> None:
        while time.monotonic() < until + 5:
            peak["mb"] = max(peak["mb"], rss_mb(server_pid))
            await asyncio.sleep(1.0)

    await asyncio.gather(watch_memory(), *(student(url, links, until, s, out) for s in range(sessions)))
    out["peak_server_mb"] = peak["mb"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of classroom load")
    parser.add_argument("--alone", type=float, default=45.0, help="seconds the run trains alone first")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "cifar-10-batches-bin")
    parser.add_argument("--out", type=Path, default=Path("bench/out/load_test.json"))
    args = parser.parse_args()

    from s7core.config import TrainConfig
    from s7core.recipes import get_recipe
    from s7core.runs.executor import get_executor
    from s7core.runs.store import create_run

    work = Path(tempfile.mkdtemp(prefix="s7-load-"))
    env = {**os.environ, "S7_RUNS_DIR": str(work / "runs"), "S7_DATA_DIR": str(args.data_dir)}
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1", "--server.port",
         str(port), "--server.headless", "true"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"ws://127.0.0.1:{port}/_stcore/stream"
    report: dict = {"sessions": args.sessions, "duration_s": args.duration}
    try:
        for _ in range(120):  # wait for the server
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        asyncio.run(load_phase(url, 1, 1.0, server.pid))  # warm the server: imports and caches, off the clock
        os.environ.update(S7_RUNS_DIR=env["S7_RUNS_DIR"])
        config: TrainConfig = get_recipe("fast").config.replace(epochs=30)  # outlasts the benchmark
        run_dir = create_run(get_preset("fast"), config, work / "runs", "fast-run", args.data_dir, "fast")
        executor = get_executor(runs_dir=work / "runs")
        executor.start(run_dir)
        while train_rate(run_dir, 0)[1] == 0:
            time.sleep(1.0)
        time.sleep(args.alone)
        alone, step = train_rate(run_dir, 0)
        print(f"training alone: {alone:.0f} images/s (median of the step lines)", flush=True)
        result = asyncio.run(load_phase(url, args.sessions, args.duration, server.pid))
        loaded, _ = train_rate(run_dir, step)
        executor.stop(run_dir)
        report.update(
            page_loads=len(result["page"]),
            page_p50_s=pct(result["page"], 0.5),
            page_p95_s=pct(result["page"], 0.95),
            edits=len(result["edit"]),
            edit_p50_s=pct(result["edit"], 0.5),
            edit_p95_s=pct(result["edit"], 0.95),
            exceptions=len(result["exceptions"]),
            exception_examples=sorted(set(result["exceptions"]))[:5],
            dropped_sessions=len(result["failures"]),
            failure_examples=sorted(set(result["failures"]))[:5],
            peak_server_mb=round(result["peak_server_mb"]),
            train_images_per_s_alone=round(alone or 0),
            train_images_per_s_with_class=round(loaded or 0),
            train_slowdown_pct=round(100 * (alone / loaded - 1), 1) if alone and loaded else None,
            host_cpus=os.cpu_count(),
            host_amx=bool(
                subprocess.run(["grep", "-o", "-w", "-m1", "amx_bf16", "/proc/cpuinfo"], capture_output=True).stdout
            ),  # fmt: skip
        )
        executor.wait(run_dir, timeout_s=60)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if report.get("exceptions") == 0 and report.get("dropped_sessions") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
