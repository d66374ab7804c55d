"""The live view's time left: counting down from the first step line, never 0 while running."""

from __future__ import annotations

from s7core.runs.live import step_points, time_left
from s7core.runs.status import RunInfo, RunState


def _info(state=RunState.RUNNING) -> RunInfo:
    return RunInfo(state, epoch=0, epochs=2, name="r", path="/r")


def _step(step: int, elapsed: float, wall: float) -> dict:
    return dict(kind="step", epoch=1, step=step, steps_per_epoch=10, global_step=step, elapsed_s=elapsed, wall=wall)


def test_time_left_counts_down_from_the_first_step_between_lines() -> None:
    rows = [_step(2, 4.0, wall=100.0)]  # 2 s a step, 18 steps to go
    assert time_left(_info(), rows, now=100.0) == 36.0
    assert time_left(_info(), rows, now=110.0) == 26.0
    assert time_left(_info(), [], now=100.0) is None


def test_time_left_stays_above_zero_while_running_and_is_none_after() -> None:
    rows = [_step(10, 10.0, wall=0.0), dict(kind="step", epoch=2, step=10, steps_per_epoch=10, global_step=20,
                                            elapsed_s=20.0, wall=50.0)]  # fmt: skip
    assert time_left(_info(), rows, now=60.0) == 1.0
    assert time_left(_info(RunState.FINISHED), rows) is None


def test_step_points_sit_at_their_fraction_of_an_epoch() -> None:
    rows = [_step(5, 1.0, 0.0), dict(kind="epoch", epoch=1, loss=None, train_loss=0.5)]
    assert step_points(rows + [_step(5, 1, 0) | {"loss": 2.0}], "loss") == ([0.5], [2.0])
    assert step_points(rows, "train_loss") == ([1.0], [0.5])


def test_time_left_weighs_epochs_by_their_work() -> None:
    """Two epochs at a quarter of the pixels, then two at full size: 4 s of work done in the first epoch's
    half is an eighth of a full epoch's work, so 2.5 full epochs are left at 32 s each."""
    row = dict(kind="step", epoch=1, step=5, steps_per_epoch=10, global_step=5, elapsed_s=4.0, wall=100.0,
               work_done=0.125, work_total=2.5)  # fmt: skip
    info = RunInfo(RunState.RUNNING, epoch=0, epochs=4, name="r", path="/r")
    assert time_left(info, [row], now=100.0) == 4.0 / 0.125 * (2.5 - 0.125)
