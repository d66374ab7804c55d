"""Design commands for the command line: presets, export, summary, rf, check.

python -m s7core presets
python -m s7core export --preset seed > net.json
python -m s7core summary --spec net.json
python -m s7core rf --preset seed --format csv
python -m s7core rf --module torchvision.models:resnet18 --input 3x224x224
python -m s7core check --spec net.json --max-params 500000
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s7core.errors import UserError
from s7core.rf.table import RFRecord, rf_table
from s7core.rules import RuleSettings, check_rules, rules_passed
from s7core.spec import PRESETS, NetworkSpec, get_preset, read_spec_text, spec_from_json
from s7core.summary import Summary, format_summary, summarize, summarize_module

FORMATS = ("table", "csv", "json")
# The reference RF table's columns first, so `rf --format csv` lines up with it; then the rest.
RF_COLUMNS = ("layer", "kernel", "dilation", "padding", "stride", "jump_out", "size_out", "rf")
RF_EXTRA_COLUMNS = ("name", "jump_in", "size_in", "start")
MAX_INPUT_CHANNELS, MAX_INPUT_SIDE = 4096, 4096  # a real forward pass runs on this input
SUMMARY_COLUMNS = ("index", "name", "position", "type", "output_shape", "params", "trainable", "mult_adds")


class CommandLineError(UserError):
    """Bad command-line input: a missing or conflicting option, an unreadable file, a bad module path."""


# ---------------------------------------------------------------- input


def load_spec(args: argparse.Namespace) -> NetworkSpec:
    """The spec named by exactly one of --preset NAME and --spec FILE.json ('-' reads stdin)."""
    _check_one_source(args)
    if args.preset is not None:
        return get_preset(args.preset)
    if args.spec == "-":
        return spec_from_json(read_spec_text(getattr(sys.stdin, "buffer", sys.stdin)))
    path = Path(args.spec)
    try:
        text = read_spec_text(path)
    except OSError as err:
        raise CommandLineError(f"cannot read spec file {path}: {err.strerror or err}") from None
    return spec_from_json(text)


def _check_one_source(args: argparse.Namespace) -> None:
    given = [args.preset, args.spec, getattr(args, "module", None)]
    if sum(g is not None for g in given) != 1:
        options = "--preset NAME, --spec FILE.json" + (" or --module PKG.MOD:FN" if hasattr(args, "module") else "")
        raise CommandLineError(f"give exactly one of {options}")
    if getattr(args, "input", None) is not None and args.module is None:
        raise CommandLineError("--input goes with --module; a spec carries its own input_shape")


def parse_input_shape(text: str | None) -> tuple[int, int, int]:
    """'3x32x32' -> (3, 32, 32); None gives CIFAR-10's 3x32x32."""
    if text is None:
        return 3, 32, 32
    match = re.fullmatch(r"\s*(\d{1,5})\s*[xX×,]\s*(\d{1,5})\s*[xX×,]\s*(\d{1,5})\s*", text or "")
    if not match or min(int(g) for g in match.groups()) < 1:
        raise CommandLineError(f"--input must be CxHxW with positive whole numbers, like 3x32x32; got {text!r}")
    c, h, w = (int(g) for g in match.groups())
    if c > MAX_INPUT_CHANNELS or max(h, w) > MAX_INPUT_SIDE:
        limit = f"at most {MAX_INPUT_CHANNELS} channels and {MAX_INPUT_SIDE} pixels a side"
        raise CommandLineError(f"--input {c}x{h}x{w} is too large: {limit}")
    return c, h, w


def load_module_callable(path: str) -> Any:
    """Import 'package.module:callable' and call it with no arguments (e.g. a model constructor)."""
    module_name, sep, attr = (path or "").partition(":")
    if not sep or not module_name or not attr:
        raise CommandLineError(f"--module must look like package.module:callable, got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any failure while importing user code is the user's to fix
        raise CommandLineError(f"cannot import {module_name}: {type(err).__name__}: {_one_line(err)}") from None
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise CommandLineError(f"{module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise CommandLineError(f"{path} is not callable")
    try:
        return target()
    except Exception as err:
        raise CommandLineError(f"calling {path}() failed: {type(err).__name__}: {_one_line(err)}") from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


# ---------------------------------------------------------------- output


def write_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """CSV text with `columns`; None becomes an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return buffer.getvalue()


def write_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """A plain aligned text table: numbers right-aligned, text left-aligned."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in columns]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(list(columns)), line(["-" * w for w in widths])]
    return "\n".join(out + [line(r) for r in cells]) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def rf_rows(records: list[RFRecord]) -> list[dict[str, Any]]:
    """RF records as dicts; `start` as a short number (0 rather than 0.0)."""
    rows = []
    for record in records:
        row = record.to_dict()
        row["start"] = int(row["start"]) if float(row["start"]).is_integer() else row["start"]
        rows.append(row)
    return rows


def summary_rows(summary: Summary) -> list[dict[str, Any]]:
    return [{**row, "output_shape": "x".join(map(str, row["output_shape"]))} for row in summary.to_dict()["rows"]]


def _emit(text: str) -> None:
    sys.stdout.write(text)


# ---------------------------------------------------------------- commands


def run_presets(args: argparse.Namespace) -> int:
    """Table of the registered presets with their size, RF and rules passed."""
    rows = []
    for name, preset in PRESETS.items():
        spec = preset.make()
        results = check_rules(spec)
        rf = next(r.value for r in results if r.key == "rf")
        params = summarize(spec).total_params
        rules = rules_passed(results)
        rows.append(dict(name=name, params=params, global_rf=rf, rules=rules, description=preset.description))
    columns = ("name", "params", "global_rf", "rules", "description")
    if args.format == "json":
        _emit(json.dumps(rows, indent=2) + "\n")
    else:
        _emit((write_csv if args.format == "csv" else write_table)(rows, columns))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """The spec JSON of a preset, exactly what --spec reads."""
    _emit(get_preset(args.preset).to_json() + "\n")
    return 0


def run_summary(args: argparse.Namespace) -> int:
    """The parameter table: torchsummary's text, or CSV / JSON rows with multiply-adds."""
    if args.module:
        _check_one_source(args)
        shape = parse_input_shape(args.input)  # before importing: a typo should not wait for a model build
        summary = summarize_module(load_module_callable(args.module), shape)
    else:
        summary = summarize(load_spec(args))
    if args.format == "json":
        _emit(json.dumps(summary.to_dict(), indent=2) + "\n")
    elif args.format == "csv":
        _emit(write_csv(summary_rows(summary), SUMMARY_COLUMNS))
    else:
        _emit(format_summary(summary, extended=args.extended))
    return 0


def run_rf(args: argparse.Namespace) -> int:
    """The receptive-field table of a spec, or of any module (--module) on an input of --input."""
    if args.module:
        records, global_value = _module_rf(args)
    else:
        records = rf_table(load_spec(args))
        global_value = records[-1].rf
    rows = rf_rows(records)
    columns = RF_COLUMNS + RF_EXTRA_COLUMNS
    if args.format == "json":
        _emit(json.dumps({"global_rf": global_value, "records": rows}, indent=2) + "\n")
    elif args.format == "csv":
        _emit(write_csv(rows, columns))
    else:
        _emit(write_table(rows, columns) + f"global receptive field: {global_value}\n")
    return 0


def _module_rf(args: argparse.Namespace) -> tuple[list[RFRecord], int]:
    from s7core.rf import trace

    _check_one_source(args)
    shape = parse_input_shape(args.input)
    model = load_module_callable(args.module)
    table = trace.rf_table_from_module(model, shape)
    for warning in table.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return list(table.records), table.global_rf


def run_check(args: argparse.Namespace) -> int:
    """Each rule's pass/fail with its reason; exit 0 when all pass, 1 when any fails."""
    settings = RuleSettings(
        max_params=args.max_params,
        min_rf=args.min_rf,
        require_separable=args.require_separable,
        require_dilated=args.require_dilated,
    )
    spec = load_spec(args)
    results = check_rules(spec, settings)
    passed = all(r.passed for r in results)
    rows = [r.to_dict() for r in results]
    if args.format == "json":
        _emit(json.dumps({"spec": spec.name, "passed": passed, "rules": rows}, indent=2) + "\n")
    elif args.format == "csv":
        _emit(write_csv(rows, ("key", "passed", "value", "threshold", "reason")))
    else:
        lines = [f"{'PASS' if r.passed else 'FAIL'}  {r.title}: {r.reason}" for r in results]
        verdict = "meets every rule" if passed else "fails a rule"
        _emit("\n".join(lines) + f"\n{spec.name}: {rules_passed(results)} rules passed — {verdict}\n")
    return 0 if passed else 1


# ---------------------------------------------------------------- the parser


def _add_spec_source(parser: argparse.ArgumentParser, module: bool = False) -> None:
    parser.add_argument("--preset", metavar="NAME", help=f"a built-in network: {', '.join(PRESETS)}")
    parser.add_argument("--spec", metavar="FILE.json", help="a spec file (see export); '-' reads stdin")
    if module:
        parser.add_argument(
            "--module", metavar="PACKAGE.MODULE:CALLABLE", help="any torch module, made by calling CALLABLE()"
        )
        parser.add_argument("--input", metavar="CxHxW", help="input shape for --module (default: 3x32x32)")


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")


def _sub(subparsers: Any, name: str, help: str, run: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(run=run)
    return parser


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the design sub-commands (presets, export, summary, rf, check) to the main parser."""
    parser = _sub(subparsers, "presets", "list the built-in networks with parameters, RF and rules passed", run_presets)
    _add_format(parser)

    parser = _sub(subparsers, "export", "print a preset's spec as JSON (what --spec reads)", run_export)
    parser.add_argument("--preset", metavar="NAME", required=True, help=f"one of: {', '.join(PRESETS)}")

    parser = _sub(subparsers, "summary", "the parameter table (torchsummary style)", run_summary)
    _add_spec_source(parser, module=True)
    _add_format(parser)
    parser.add_argument("--extended", action="store_true", help="table: add multiply-adds and module paths")

    parser = _sub(subparsers, "rf", "the receptive-field table, layer by layer", run_rf)
    _add_spec_source(parser, module=True)
    _add_format(parser)

    parser = _sub(subparsers, "check", "check the assignment's rules; exit 1 if any fails", run_check)
    _add_spec_source(parser)
    _add_format(parser)
    defaults = RuleSettings()
    parser.add_argument("--max-params", type=int, default=defaults.max_params, help="fewer parameters than this")
    parser.add_argument("--min-rf", type=int, default=defaults.min_rf, help="global RF strictly above this")
    parser.add_argument("--no-require-separable", dest="require_separable", action="store_false")
    parser.add_argument("--no-require-dilated", dest="require_dilated", action="store_false")
