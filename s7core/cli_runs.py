"""Run commands for the command line: runs, stop.

python -m s7core runs [--json]
python -m s7core stop RUN
"""

from __future__ import annotations

import argparse
import json

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
    from s7core.runs import get_executor, list_runs, runs_root

    if args.stop:
        args.run_name = args.stop
        return run_stop(args)
    get_executor(runs_dir=args.runs_dir).refresh()  # correct runs whose process has gone, start queued ones
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
