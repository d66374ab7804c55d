"""Runs: a run folder on disk, and executors that train it somewhere.

    status.py    RunState, RunStatus (what status.json holds), RunInfo (what the run list shows)
    store.py     the run folder: config, status, metrics, checkpoints, predictions; list_runs and run_info only read
    results.py   using a trained run: its model, its predictions, a fresh evaluation
    executor.py  the Executor interface (start, stop, state, logs, refresh) and get_executor(name)
    local.py     the local executor: background processes, a queue, pid checks
    ray_jobs.py  the ray executor: each run a Ray job (imports ray only when a cluster is asked something)
    worker.py    execute_run: what the training process does inside the folder

The names below are the package's public API, importable from `s7core.runs`.
"""

from s7core.runs.executor import (
    BACKEND_ENV,
    EXECUTORS,
    Capacity,
    Executor,
    executor_for,
    executor_name,
    get_executor,
    refresh_runs,
)
from s7core.runs.results import evaluate_run, load_predictions, load_run_model
from s7core.runs.status import RunError, RunInfo, RunState, RunStatus, progress_fraction
from s7core.runs.store import (
    RUNS_ENV,
    RunFolder,
    checkpoint_path,
    create_run,
    find_run,
    list_runs,
    load_checkpoint,
    measured_texts,
    read_metrics,
    read_run_config,
    read_status,
    run_data_dir,
    run_info,
    runs_root,
    save_checkpoint,
)
from s7core.runs.worker import execute_run

__all__ = [
    "BACKEND_ENV",
    "EXECUTORS",
    "Capacity",
    "RUNS_ENV",
    "Executor",
    "RunError",
    "RunFolder",
    "RunInfo",
    "RunState",
    "RunStatus",
    "checkpoint_path",
    "create_run",
    "evaluate_run",
    "execute_run",
    "executor_for",
    "executor_name",
    "find_run",
    "get_executor",
    "list_runs",
    "load_checkpoint",
    "load_predictions",
    "load_run_model",
    "progress_fraction",
    "read_metrics",
    "measured_texts",
    "read_run_config",
    "read_status",
    "refresh_runs",
    "run_data_dir",
    "run_info",
    "runs_root",
    "save_checkpoint",
]
