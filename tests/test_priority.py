"""Page scripts yield the cores to training runs: a page thread is niced, a trainer takes its priority back."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from s7core.priority import PAGE_NICE, SERVER_TORCH_THREADS, TRAINER_NICE, as_page_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def test_a_page_thread_is_niced_alone_and_the_server_uses_one_torch_thread() -> None:
    threads_before, main_nice = torch.get_num_threads(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = {}

    def page() -> None:
        as_page_thread()
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["threads"] = torch.get_num_threads()

    try:
        worker = threading.Thread(target=page)
        worker.start()
        worker.join()
        assert seen["nice"] == max(PAGE_NICE, main_nice)
        assert seen["threads"] == SERVER_TORCH_THREADS
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_nice  # only that thread yields
    finally:
        torch.set_num_threads(threads_before)


def test_a_trainer_started_from_a_page_thread_takes_back_its_priority_where_allowed() -> None:
    probe = "import os; from s7core.priority import as_trainer; print(as_trainer(), os.getpriority(os.PRIO_PROCESS, 0))"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        ["nice", "-n", str(PAGE_NICE), sys.executable, "-c", probe], cwd=root, capture_output=True, text=True
    )
    allowed, nice = out.stdout.split()
    assert int(nice) == (TRAINER_NICE if allowed == "True" else PAGE_NICE + os.getpriority(os.PRIO_PROCESS, 0))
    if os.geteuid() == 0:
        assert allowed == "True"  # root may lower a nice value
