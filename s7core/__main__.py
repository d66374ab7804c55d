"""The command line: python -m s7core COMMAND ... (python -m s7core --help lists them).

Every command reports bad input as one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys

from s7core.errors import UserError
from s7core.stopping import StopFlag


def build_parser() -> argparse.ArgumentParser:
    from s7core import cli_class, cli_design, cli_lesson, cli_runs, cli_train

    parser = argparse.ArgumentParser(
        prog="python -m s7core", description="s7: design, check and train small CIFAR-10 convnets."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_design.register(sub)
    cli_lesson.register(sub)
    cli_train.register(sub)
    cli_runs.register(sub)
    cli_class.register(sub)
    return parser


def _trains_here(argv: list[str]) -> bool:
    """Whether the command trains in this process (`train` without --detach), read before the parser exists."""
    return argv[:1] == ["train"] and not any(arg.startswith("--det") for arg in argv)


def _given_as(err: UserError, args: argparse.Namespace | None) -> str:
    """' (given as --weight-decay)' when the refused setting came from a flag of this command, else ''."""
    from s7core.cli_train import setting_flag
    from s7core.config import ConfigError

    setting = err.setting if isinstance(err, ConfigError) else None
    if setting is None or getattr(args, setting.path, None) is None:
        return ""
    return f" (given as {setting_flag(setting)})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = None  # until the parser has read argv
    try:
        with contextlib.ExitStack() as held:
            # A trainer's stop handling comes before the parser, whose commands import torch (a second or more):
            # a SIGTERM at any moment of start-up then ends the run 'stopped' with a save, never half-started.
            stop = held.enter_context(StopFlag()) if _trains_here(argv) else None
            args = build_parser().parse_args(argv)  # argparse itself exits 2 with a usage line on bad flags
            args.stop_flag = stop
            return int(args.run(args) or 0)
    except UserError as err:
        print(f"error: {err}{_given_as(err, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    status = main()
    # Everything is written and closed by now. The interpreter's last garbage collections over torch's many
    # objects take about 0.4 s of a command's exit on a 2-core host; frozen objects are left out of them.
    gc.freeze()
    sys.exit(status)
