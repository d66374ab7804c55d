"""Run commands for the command line: runs, stop.

python -m s7core runs [--json]
python -m s7core stop RUN
python -m s7core cluster [--backend ray]     where runs train, its free CPUs and GPUs, and the storage check
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from s7core.files import atomic_write
from s7core.runs.executor import BACKEND_ENV, EXECUTORS

RUNS_DIR_HELP = "runs root (default: $S7_RUNS_DIR or ./runs)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the run sub-commands to the main parser."""
    p = subparsers.add_parser("runs", help="list the runs and their states")
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    p.add_argument("--stop", metavar="RUN", help="ask this run to stop (as `python -m s7core stop RUN` does)")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(run=run_runs)

    p = subparsers.add_parser("stop", help="ask a run to stop (it saves a checkpoint first), or take it off the queue")
    p.add_argument("run_name", metavar="RUN", help="run folder, or a run name under the runs root")
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    p.set_defaults(run=run_stop)

    p = subparsers.add_parser("cluster", help="where runs train: nodes, free CPUs and GPUs, and the storage check")
    p.add_argument("--backend", choices=list(EXECUTORS), help=f"executor (default: ${BACKEND_ENV}, or local)")
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    p.add_argument("--recheck", action="store_true", help="probe every node again, ignoring a recent passed check")
    p.add_argument("--probe", metavar="MARKER", help=argparse.SUPPRESS)  # what a probe job runs on a node
    p.add_argument("--reply", metavar="FILE", help=argparse.SUPPRESS)  # where the probe writes what it found
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(run=run_cluster)


def run_stop(args: argparse.Namespace) -> int:
    """python -m s7core stop RUN"""
    from s7core.runs import executor_for, find_run

    run_dir = find_run(args.run_name, args.runs_dir)
    status = executor_for(run_dir).stop(run_dir)
    print(f"{run_dir.name}: {status.state} — {status.message}")
    return 0


def run_runs(args: argparse.Namespace) -> int:
    """python -m s7core runs [--json] [--stop RUN]"""
    from s7core.cli_train import _pct, format_table
    from s7core.runs import list_runs, refresh_runs, runs_root

    if args.stop:
        args.run_name = args.stop
        return run_stop(args)
    refresh_runs(args.runs_dir)  # correct runs whose process or job has gone, start queued ones
    infos = list_runs(args.runs_dir)
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    if not infos:
        print(f"no runs under {runs_root(args.runs_dir)}")
        return 0
    rows = [
        [i.name, i.state, f"{i.epoch}/{i.epochs}", _pct(i.best_accuracy), _pct(i.final_accuracy)]
        + [i.preset, i.recipe or "", i.message]
        for i in infos
    ]
    print(format_table(["run", "state", "epoch", "best", "final", "net", "recipe", "message"], rows))
    return 0


def run_cluster(args: argparse.Namespace) -> int:
    """python -m s7core cluster [--backend ray]; exit 1 when the workers cannot use the runs folder."""
    from s7core.runs import get_executor

    if args.probe:  # on a node, inside a probe job
        from s7core.runs.ray_jobs import probe_storage

        report = probe_storage(args.probe)
        print(json.dumps(report), flush=True)
        if args.reply:
            with atomic_write(args.reply, binary=False) as f:
                json.dump(report, f)
        return 0
    executor = get_executor(args.backend, runs_dir=args.runs_dir)
    capacity = executor.capacity()
    check = executor.check_storage(force=args.recheck)
    if args.json:
        out = {**dataclasses.asdict(capacity), "storage": check.to_dict() if check else None}
        print(json.dumps(out, indent=2))
    else:
        print(capacity.summary())
        if check:
            print(f"storage: {'ok' if check.ok else 'NOT USABLE'} — {check.message}")
    return 0 if check is None or check.ok else 1
