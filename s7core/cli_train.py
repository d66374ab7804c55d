"""Training commands for the command line: train, evaluate, data.

python -m s7core train --preset seed --recipe reference --epochs 20
python -m s7core train --run-dir runs/NAME --resume
python -m s7core train --preset tiny --detach --backend ray --cpus 2 --gpus 0.5
python -m s7core evaluate --run runs/NAME --tta
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from s7core.config import Resources, Setting, resource_settings, settings, time_to_go, with_settings
from s7core.errors import UserError
from s7core.recipes import RECIPES
from s7core.runs.executor import BACKEND_ENV, EXECUTORS
from s7core.stopping import StopFlag

ALIASES = {"tta_flip": ("--tta",)}  # short flags kept beside the generated ones
RESUME_NOTE = {"epochs": "; with --resume: the run's new total, to train it further"}
RESOURCES = resource_settings()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the training sub-commands to the main parser."""
    p = subparsers.add_parser("train", help="train a network in a run folder (resumable)")
    p.add_argument("--preset", default="seed", help="network preset (default: seed)")
    p.add_argument("--spec", help="network spec JSON file (instead of --preset)")
    p.add_argument("--recipe", default="default", help=f"training recipe: {', '.join(RECIPES)} (default: default)")
    p.add_argument("--data-dir", help="folder holding CIFAR-10 (default: $S7_DATA_DIR or the data cache)")
    p.add_argument("--run-dir", help="run folder to create (or, with --resume, to continue)")
    p.add_argument("--runs-dir", help="runs root for a new run with a generated name (default: $S7_RUNS_DIR or ./runs)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.add_argument(
        "--detach", action="store_true",
        help="launch the run through the executor (--backend), print its folder and return at once",
    )  # fmt: skip
    p.add_argument("--backend", choices=list(EXECUTORS), help=f"executor (default: ${BACKEND_ENV}, or local)")
    _add_setting_flags(p.add_argument_group("training settings (each one given replaces the recipe's value)"))
    _add_setting_flags(p.add_argument_group("resources (asked of the executor; a resume may ask anew)"), RESOURCES)
    p.set_defaults(run=run_train)

    p = subparsers.add_parser("evaluate", help="test accuracy, per-class accuracy and confusion matrix of a run")
    p.add_argument("--run", dest="run_path", required=True, help="run folder, or a run name under the runs root")
    p.add_argument("--which", choices=("best", "latest"), default="best", help="checkpoint to evaluate")
    p.add_argument("--tta", action="store_true", help="average each image with its mirror image")
    p.add_argument("--tta-shift", action="store_true", help="also average each image moved 1 pixel two ways")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(run=run_evaluate)

    p = subparsers.add_parser("data", help="say where CIFAR-10 is (exit 1 when missing), or download it")
    p.add_argument("--data-dir", help="data folder (default: $S7_DATA_DIR or the data cache)")
    p.add_argument("--download", action="store_true", help="download the official archive if it is not there")
    p.set_defaults(run=run_data)


# ---------------------------------------------------------------- train


def setting_flag(s: Setting) -> str:
    """The command-line flag of a setting: its field name, dashed (--weight-decay)."""
    return "--" + s.name.replace("_", "-")


def _add_setting_flags(group: argparse._ArgumentGroup, declared: list[Setting] | None = None) -> None:
    """One flag per declared setting (the training settings unless told); a flag left out keeps its value."""
    for s in settings() if declared is None else declared:
        flags = (setting_flag(s), *ALIASES.get(s.path, ()))
        limits = "" if s.kind is bool else f" [{s.allowed()}]"
        text = f"{s.help}{limits}{RESUME_NOTE.get(s.path, '')}".replace("%", "%%")  # argparse %-formats help
        if s.kind is bool:
            group.add_argument(*flags, dest=s.path, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            metavar = {int: "N", float: "X"}.get(s.kind, "NAME")
            group.add_argument(*flags, dest=s.path, type=s.kind, default=None, metavar=metavar, help=text)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, by path."""
    values = {s.path: getattr(args, s.path) for s in settings()}
    return {path: value for path, value in values.items() if value is not None}


def _load_spec(args: argparse.Namespace):
    from s7core.spec import get_preset, read_spec_text, spec_from_json

    if not args.spec:
        return get_preset(args.preset)
    try:
        return spec_from_json(read_spec_text(args.spec))
    except OSError as err:
        raise UserError(f"cannot read the spec file {args.spec}: {err.strerror}") from None


def _new_run(args: argparse.Namespace) -> Path:
    from s7core.data import DataError, find_cifar10
    from s7core.recipes import get_recipe
    from s7core.runs import create_run

    recipe = get_recipe(args.recipe)
    config = with_settings(recipe.config, _overrides(args))
    spec = _load_spec(args)
    found = find_cifar10(args.data_dir)
    if not found.found:
        raise DataError(found.message)
    if args.run_dir:
        run_dir = Path(args.run_dir)
        if (run_dir / "config.json").exists():
            raise UserError(f"{run_dir} is already a run — pass --resume to continue it, or choose another --run-dir")
        return create_run(spec, config, run_dir.parent, run_dir.name, args.data_dir, recipe.name)
    return create_run(spec, config, args.runs_dir, None, args.data_dir, recipe.name)


def _given_resources(args: argparse.Namespace) -> dict[str, Any]:
    """The resource flags given on the command line, by name."""
    return {s.path: getattr(args, s.path) for s in RESOURCES if getattr(args, s.path) is not None}


def _resources(args: argparse.Namespace, run_dir: Path) -> Resources | None:
    """The resources given on the command line over those of the run's latest launch; None when none was given."""
    from s7core.runs import read_status

    given = _given_resources(args)
    return Resources.from_dict({**read_status(run_dir).resources, **given}) if given else None


def _existing_run(args: argparse.Namespace) -> Path:
    if not args.run_dir:
        raise UserError("--resume needs --run-dir: the run folder to continue")
    fixed = sorted(set(_overrides(args)) - {"device", "epochs"})
    if fixed or args.spec:
        raise UserError(
            f"a run's settings are fixed once created ({', '.join(fixed or ['spec'])}); "
            "only --epochs can change when resuming — start a new run to change the others"
        )
    run_dir = Path(args.run_dir)
    if not (run_dir / "config.json").exists():
        raise UserError(f"{run_dir} is not a run folder (no config.json) — check the path, or drop --resume")
    return run_dir


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


class ProgressPrinter:
    """A one-line progress bar (redrawn with \\r on a terminal; a plain line every few seconds otherwise)."""

    def __init__(self, stream: TextIO, batch_size: int, epochs: int, plain_every_s: float = 10.0):
        self.stream, self.batch, self.epochs = stream, batch_size, epochs
        self.tty = stream.isatty()
        self.plain_every_s, self.last_plain = plain_every_s, 0.0

    def __call__(self, event) -> None:
        if event.kind == "step":
            self.step(event)
        elif event.kind == "epoch":
            self.epoch(event)
        else:  # the precision chosen, and the epochs a time budget bought
            if event.kind == "plan":
                self.epochs = event.epochs
            self.stream.write(f"{'time budget' if event.kind == 'plan' else event.kind}: {event.text}\n")
            self.stream.flush()

    def step(self, e) -> None:
        eta = time_to_go(e.elapsed_s, e.work_done, e.work_total) or 0.0
        bar = "#" * int(20 * e.step / e.steps_per_epoch)
        line = (
            f"epoch {e.epoch}/{self.epochs} [{bar:<20}] step {e.step}/{e.steps_per_epoch} loss {e.loss:.4f} "
            f"acc {100 * e.accuracy:.1f}% lr {e.lr:.4g} {e.images_per_s:.0f} img/s ETA {_duration(eta)}"
        )
        if self.tty:
            self.stream.write("\r" + line + "\033[K")
            self.stream.flush()
        elif time.monotonic() - self.last_plain >= self.plain_every_s:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last_plain = time.monotonic()

    def epoch(self, e) -> None:
        val = f" | val loss {e.val_loss:.4f} acc {_pct(e.val_acc)}" if e.val_acc is not None else ""
        part = f" (first {e.test_subset:,} images)" if e.test_subset else ""
        test = f" | test{part} loss {e.test_loss:.4f} acc {_pct(e.test_acc)}" if e.test_acc is not None else ""
        line = (
            f"epoch {e.epoch}/{e.epochs} train loss {e.train_loss:.4f} acc {_pct(e.train_acc)}{val}{test} "
            f"| lr {e.lr:.4g} | {e.epoch_s:.1f} s | ETA {_duration(e.eta_s)}{' *best' if e.best else ''}"
        )
        self.stream.write(("\r\033[K" if self.tty else "") + line + "\n")
        self.stream.flush()


def run_detached(args: argparse.Namespace) -> int:
    """python -m s7core train ... --detach: launch through the executor, print the run folder, return."""
    from s7core.runs import RunFolder, get_executor

    executor = get_executor(args.backend, runs_dir=Path(args.run_dir).parent if args.run_dir else args.runs_dir)
    if args.resume:
        run_dir = _existing_run(args)
        if args.epochs is not None:
            RunFolder(run_dir).set_epochs(args.epochs)
    else:
        executor.check_launch(Resources.from_dict(_given_resources(args)))  # before a run folder is made
        run_dir = _new_run(args)
    status = executor.start(run_dir, _resources(args, run_dir))
    print(run_dir)
    print(
        f"{run_dir.name}: {status.state} on the {executor.name} executor — {status.message}; "
        f"watch with `python -m s7core runs`, stop with `python -m s7core stop {run_dir.name}`",
        file=sys.stderr,
    )
    return 0


def run_train(args: argparse.Namespace) -> int:
    """python -m s7core train ..."""
    if args.detach:
        return run_detached(args)
    with contextlib.ExitStack() as held:
        # the command line's own flag, installed before its imports; a caller that parsed the flags itself gets
        # one here, first, so that a stop asked while torch loads still ends with a save
        stop = getattr(args, "stop_flag", None) or held.enter_context(StopFlag())
        import torch

        from s7core.runs import execute_run, read_run_config

        run_dir = _existing_run(args) if args.resume else _new_run(args)
        _, config, _ = read_run_config(run_dir)
        if args.cpus:  # the cores the executor reserved for this run; else torch's default, every core
            torch.set_num_threads(args.cpus)
        epochs = args.epochs if args.resume else None
        print(f"run folder: {run_dir}", file=sys.stderr)
        printers = [ProgressPrinter(sys.stderr, config.batch_size, epochs or config.epochs)]
        with contextlib.ExitStack() as files:
            if not _writes_to(sys.stderr, run_dir / "train.log"):  # a background run's stderr is train.log
                log = files.enter_context(open(run_dir / "train.log", "a"))
                printers.append(ProgressPrinter(log, config.batch_size, epochs or config.epochs, plain_every_s=60))
            result = execute_run(run_dir, lambda event: [p(event) for p in printers], stop, epochs)
            for p in printers:
                p.stream.write(_summary(result, run_dir) + "\n")
    return 0


def _writes_to(stream: TextIO, path: Path) -> bool:
    """Whether `stream` is already the file at `path`."""
    try:
        return path.exists() and os.path.samestat(os.fstat(stream.fileno()), path.stat())
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def _summary(result, run_dir: Path) -> str:
    if result.stopped:
        return (
            f"stopped after {result.global_step} steps ({result.epochs_done} whole epochs) and saved; "
            f"continue with: python -m s7core train --run-dir {run_dir} --resume"
        )
    best = f"best test accuracy {_pct(result.best_accuracy)} (epoch {result.best_epoch})"
    return (
        f"finished {result.epochs_done} epochs in {_duration(result.elapsed_s)} on {result.device} "
        f"({result.precision}): {best}, final {_pct(result.final_accuracy)}; run folder {run_dir}"
    )


# ---------------------------------------------------------------- evaluate


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain text table, columns padded to their widest cell, numbers aligned right."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_number(r[i]) for r in cells[1:]) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric, strict=True)).rstrip()

    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]])


def _is_number(text: str) -> bool:
    return text.rstrip("%").replace(".", "", 1).replace("-", "", 1).isdigit() or text == "—"


def evaluation_tables(ev) -> str:
    """Accuracy line, per-class table and confusion matrix of an Evaluation, as text."""
    head = f"test accuracy {_pct(ev.accuracy)}  (loss {ev.loss:.4f}, {ev.count} images)"
    counts = ev.confusion.sum(axis=1)
    per_class = [
        [name, int(counts[i]), _pct(_num(ev.recall[i])), _pct(_num(ev.precision[i]))]
        for i, name in enumerate(ev.classes)
    ]
    short = [name[:5] for name in ev.classes]
    confusion = [[f"{name[:5]}", *row] for name, row in zip(ev.classes, ev.confusion.tolist(), strict=True)]
    return "\n\n".join(
        [
            head,
            format_table(["class", "images", "accuracy", "precision"], per_class),
            "confusion matrix (rows: true class, columns: predicted)\n" + format_table(["true", *short], confusion),
        ]
    )


def _num(value: float) -> float | None:
    return None if value != value else float(value)  # nan -> None


def run_data(args: argparse.Namespace) -> int:
    """Print where the data set is, or the fix; download it first with --download."""
    from s7core import data

    if args.download and not data.find_cifar10(args.data_dir).found:
        data.download_cifar10(data.resolve_data_dir(args.data_dir), data.CIFAR10_URL, data.CIFAR10_MD5)
    status = data.find_cifar10(args.data_dir)
    print(status.message)
    return 0 if status.found else 1


def run_evaluate(args: argparse.Namespace) -> int:
    """python -m s7core evaluate --run RUN [--tta] [--tta-shift]"""
    from s7core.runs import evaluate_run, find_run

    ev = evaluate_run(find_run(args.run_path), args.which, args.tta, args.tta_shift)
    print(json.dumps(ev.summary(), indent=2) if args.json else evaluation_tables(ev))
    return 0
