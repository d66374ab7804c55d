"""What a live view of a run shows, computed from its status and metrics lines: the time left, the curves.

Step lines carry `wall` (the Unix time they were written), so the time left keeps counting down between
two lines, and through the evaluations at an epoch's end, where no step line is written.
"""

from __future__ import annotations

import time
from typing import Any

from s7core.config import time_to_go
from s7core.runs.status import RunInfo, RunState


def time_left(info: RunInfo, rows: list[dict[str, Any]], now: float | None = None) -> float | None:
    """Seconds the run still needs, from the pace of its steps so far; None before its first step line.

    The pace is the run's training time per step, evaluations included, over all its sessions; the steps
    left are those of the planned epochs. Never 0 while the run is still running (it is then finishing:
    the last evaluation); None for a run that is not running.
    """
    if info.state is not RunState.RUNNING:
        return None
    steps = [r for r in rows if r.get("kind") == "step" and r.get("global_step")]
    if not steps:
        return None
    last = steps[-1]
    if last.get("work_total"):  # weighed by each epoch's work (early epochs at a smaller image size cost less)
        left = time_to_go(last["elapsed_s"], last["work_done"], last["work_total"]) or 0.0
    else:  # a line from before the work was recorded: every step alike
        per_step = last["elapsed_s"] / last["global_step"]
        left = (info.epochs * last["steps_per_epoch"] - last["global_step"]) * per_step
    if "wall" in last:
        left -= (time.time() if now is None else now) - last["wall"]
    return max(left, 1.0)


def step_points(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of one metric: step lines at their fraction of an epoch, epoch lines at whole epochs."""
    xs, ys = [], []
    for r in rows:
        if r.get(key) is None:
            continue
        if r.get("kind") == "step":
            xs.append(r["epoch"] - 1 + r["step"] / r["steps_per_epoch"])
        elif r.get("kind") == "epoch":
            xs.append(float(r["epoch"]))
        else:
            continue
        ys.append(r[key])
    return xs, ys
