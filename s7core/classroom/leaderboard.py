"""The leaderboard: each student's best finished run under the class's thresholds, and the runs that fail a rule.

The one accuracy figure is the **best test accuracy**: the test accuracy of the run's best checkpoint, as the
Train and Results pages show it. A run's parameters, global RF and rules come from its own spec, judged by the
thresholds given (the class's, in class mode), so a teacher's change re-ranks the board at once. In class mode
there is one ranked row per student; in solo mode (`per_owner=False`) one per run.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
from dataclasses import asdict, dataclass

from s7core.links import canonical_json, spec_to_link
from s7core.rf.table import global_rf
from s7core.rules import RuleSettings, check_rules
from s7core.runs.status import RunError, RunInfo
from s7core.runs.store import list_runs, read_metrics, read_run_config
from s7core.spec import NetworkSpec, SpecError, spec_from_dict
from s7core.summary import summarize

NO_OWNER = "(no owner)"  # the row label of a run made outside class mode
CSV_COLUMNS = (
    "rank", "student", "run", "best_test_accuracy", "parameters", "global_rf", "rules_passed", "failed_rules",
    "epochs", "training_time_s", "network",
)  # fmt: skip


@dataclass(frozen=True)
class BoardRow:
    """One run on the board, with the figures the table shows."""

    rank: int | None  # 1 for the best; None for a run listed below the ranking
    student: str
    run: str
    best_test_accuracy: float  # test accuracy of the run's best checkpoint, 0..1
    parameters: int
    global_rf: int
    rules_passed: int
    rules_total: int
    failed_rules: tuple[str, ...]  # the titles of the rules the run fails, each with its reason
    epochs: int
    training_time_s: float | None  # training seconds, all sessions together (evaluations included)
    network: str  # the spec's name
    link: dict[str, str]  # query parameters that open the network on the Architecture page

    @property
    def passes(self) -> bool:
        """Whether the run passes every rule."""
        return not self.failed_rules


@dataclass(frozen=True)
class Leaderboard:
    """The ranked rows (best first) and, below them, the finished runs that fail a rule."""

    ranked: tuple[BoardRow, ...]
    failing: tuple[BoardRow, ...]


@functools.lru_cache(maxsize=512)
def _judge(spec_json: str, rules_json: str) -> tuple[int, int, int, int, tuple[str, ...]]:
    """(parameters, global RF, rules passed, rules in all, failed rules) of one spec under one set of thresholds."""
    spec = spec_from_dict(json.loads(spec_json))
    results = check_rules(spec, RuleSettings(**json.loads(rules_json)))
    failed = tuple(f"{r.title}: {r.reason}" for r in results if not r.passed)
    return summarize(spec).total_params, global_rf(spec), sum(r.passed for r in results), len(results), failed


def _training_time(run_dir: str) -> float | None:
    epochs = read_metrics(run_dir, "epoch")
    return float(epochs[-1]["elapsed_s"]) if epochs and epochs[-1].get("elapsed_s") is not None else None


def board_row(info: RunInfo, rules: RuleSettings, spec: NetworkSpec | None = None) -> BoardRow:
    """The board's row of one finished run (its spec read from the run folder unless given)."""
    spec = spec or read_run_config(info.path)[0]
    params, rf, passed, total, failed = _judge(canonical_json(spec), json.dumps(asdict(rules), sort_keys=True))
    return BoardRow(
        rank=None, student=info.owner or NO_OWNER, run=info.name, best_test_accuracy=float(info.best_accuracy or 0.0),
        parameters=params, global_rf=rf, rules_passed=passed, rules_total=total, failed_rules=failed,
        epochs=info.epoch, training_time_s=_training_time(info.path), network=spec.name, link=spec_to_link(spec),
    )  # fmt: skip


def _order(row: BoardRow) -> tuple:
    # higher accuracy first; on a tie, fewer parameters, then the shorter training, then by name
    return (-row.best_test_accuracy, row.parameters, row.training_time_s or 0.0, row.student, row.run)


def leaderboard(
    runs: list[RunInfo] | None = None,
    rules: RuleSettings | None = None,
    per_owner: bool = True,
    runs_dir: str | os.PathLike | None = None,
    leave_out: frozenset[str | None] = frozenset(),
) -> Leaderboard:
    """Rank the finished runs (of the runs root unless given) under `rules`: the best passing run of each owner
    (of each run when not `per_owner`), best first; the finished runs that fail a rule go below, best first.

    `leave_out` names owners whose runs are not ranked (the teachers and None, in class mode). The thresholds
    default to the assignment's. A damaged run is left out.
    """
    rules = rules or RuleSettings()
    rows = []
    for info in runs if runs is not None else list_runs(runs_dir):
        if info.state != "finished" or info.best_accuracy is None:
            continue
        if info.owner in leave_out:
            continue
        try:
            rows.append(board_row(info, rules))
        except (RunError, SpecError):
            continue  # a damaged run folder cannot be judged; the Train page shows what is wrong with it
    passing = sorted((r for r in rows if r.passes), key=_order)
    if per_owner:
        best: dict[str, BoardRow] = {}
        for row in passing:
            best.setdefault(row.student, row)
        passing = sorted(best.values(), key=_order)
    ranked = tuple(_with_rank(row, i + 1) for i, row in enumerate(passing))
    failing = tuple(sorted((r for r in rows if not r.passes), key=_order))
    return Leaderboard(ranked, failing)


def _with_rank(row: BoardRow, rank: int) -> BoardRow:
    return BoardRow(**{**row.__dict__, "rank": rank})


def leaderboard_csv(board: Leaderboard) -> str:
    """The board as CSV: the ranked rows, then the failing ones (rank empty), with the columns of CSV_COLUMNS."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in (*board.ranked, *board.failing):
        writer.writerow([
            row.rank or "", row.student, row.run, f"{row.best_test_accuracy:.4f}", row.parameters, row.global_rf,
            f"{row.rules_passed}/{row.rules_total}", "; ".join(row.failed_rules), row.epochs,
            "" if row.training_time_s is None else f"{row.training_time_s:.1f}", row.network,
        ])  # fmt: skip
    return out.getvalue()
