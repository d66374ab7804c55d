"""Where the trainer's cores come from when a class shares one server: page work yields, training does not.

Thirty sessions' page scripts run as threads of the one server process, on the same cores as the training
processes. Two settings keep a run's speed: the server's torch work uses one thread (a page's small forward
passes gain nothing from more, and each extra thread takes a core from the trainer), and each page-script thread
runs at a lower priority (a higher nice value, set per thread on Linux) so the kernel gives the trainer the cores
first. A training process starts from its parent's priority, so it sets its own back to TRAINER_NICE where the
system allows it (root, or a raised RLIMIT_NICE); where it cannot, it trains at the pages' priority, as before.
"""

from __future__ import annotations

import contextlib
import os
import threading

SERVER_TORCH_THREADS = 1  # torch's intra-op threads in the app's server process
PAGE_NICE = 10  # nice value of a page script's thread: the kernel weighs it about 1/10 of a nice-0 trainer
TRAINER_NICE = 0  # nice value a training process asks for


def _set_nice(who: int, value: int) -> bool:
    """Set the nice value of thread or process `who` (0: the caller); False where the system refuses."""
    try:
        os.setpriority(os.PRIO_PROCESS, who, value)
    except (OSError, AttributeError):  # not allowed to lower it, or no setpriority (Windows)
        return False
    return True


def as_page_thread() -> None:
    """Lower the calling page-script thread's priority and cap its torch threads (OpenMP keeps that per thread).

    Streamlit runs each script run in a fresh thread, so the app calls this at the top of every run.
    """
    import torch

    if torch.get_num_threads() != SERVER_TORCH_THREADS:
        torch.set_num_threads(SERVER_TORCH_THREADS)
    if hasattr(threading, "get_native_id"):  # on Linux a thread's id names it for setpriority
        tid = threading.get_native_id()
        with contextlib.suppress(OSError, AttributeError):
            if os.getpriority(os.PRIO_PROCESS, tid) < PAGE_NICE:
                _set_nice(tid, PAGE_NICE)


def as_trainer() -> bool:
    """Give this training process back the trainer's priority; False where the system does not allow it."""
    with contextlib.suppress(OSError, AttributeError):
        if os.getpriority(os.PRIO_PROCESS, 0) <= TRAINER_NICE:
            return True
    return _set_nice(0, TRAINER_NICE)
