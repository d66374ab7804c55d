"""Class-mode commands: the roster, the class's settings, the leaderboard, and serving the app to a class.

python -m s7core class add NAME --role student|teacher [--password-stdin]
python -m s7core class list | remove NAME | reset-password NAME [--password-stdin]
python -m s7core class on | off | settings [--min-rf 50 --submissions-open/--no-submissions-open ...]
python -m s7core class leaderboard [--csv | --json]
python -m s7core class remove-run RUN
python -m s7core class serve [--address 0.0.0.0] [--port 8501]

The command line acts as the teacher. A password is never an argument (it would show in `ps` and the shell's
history): it is asked for twice without echo, or read as one line from stdin with --password-stdin.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import subprocess
import sys

from s7core.errors import UserError

RUNS_DIR_HELP = "runs root, beside which the class's files live (default: $S7_RUNS_DIR or ./runs)"
RULE_FLAGS = {  # RuleSettings field -> help; the flags' names come from the fields
    "max_params": "networks must have fewer parameters than this",
    "min_rf": "the global receptive field must be above this (pixels)",
    "require_separable": "a depthwise-separable convolution is required",
    "require_dilated": "a dilated convolution is required",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `class` and its sub-commands to the main parser."""
    from s7core.classroom import CLASS_SETTINGS, ROLES

    top = subparsers.add_parser("class", help="class mode: the roster, the class's settings, the leaderboard")
    sub = top.add_subparsers(dest="class_command", required=True, metavar="SUBCOMMAND")

    def command(name: str, help_text: str, handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
        p.set_defaults(run=handler)
        return p

    p = command("add", "add a user to the roster, with a password", run_add)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", choices=ROLES, default="student", help="student (default) or teacher")
    p.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
    p = command("reset-password", "give a user a new password", run_reset)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
    p = command("remove", "take a user off the roster (their runs stay)", run_remove)
    p.add_argument("name", metavar="NAME")
    p = command("list", "the roster: names and roles", run_list)
    p.add_argument("--json", action="store_true", help="print it as JSON")
    command("on", "turn class mode on: every page then needs a signed-in user", run_on)
    command("off", "turn class mode off (solo mode: no sign-in)", run_off)

    p = command("settings", "show the class's settings, or change those given", run_settings)
    for s in CLASS_SETTINGS:
        _add_flag(p, s.name, s.kind, f"{s.help} [{s.allowed()}]")
    rule_fields = {f.name: f for f in dataclasses.fields(_rule_settings())}
    for name, help_text in RULE_FLAGS.items():
        _add_flag(p, name, bool if rule_fields[name].type in (bool, "bool") else int, help_text)
    p.add_argument("--data-dir", help="the CIFAR-10 folder every run of the class trains on")
    p.add_argument("--no-data-dir", action="store_true", help="forget it ($S7_DATA_DIR or the default again)")
    p.add_argument("--teacher", action="append", default=[], metavar="EMAIL",
                   help="an identity-provider e-mail address that signs in as a teacher (repeat for more)")  # fmt: skip
    p.add_argument("--no-teacher", action="append", default=[], metavar="EMAIL", help="take one off that list")
    p.add_argument("--json", action="store_true", help="print the settings as JSON")

    p = command("leaderboard", "each student's best finished run under the class's thresholds", run_leaderboard)
    p.add_argument("--csv", action="store_true", help="print it as CSV")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p = command("remove-run", "delete a run folder (stop it first)", run_remove_run)
    p.add_argument("run_name", metavar="RUN")
    p = command("serve", "start the app for a class with .streamlit/class/config.toml", run_serve)
    p.add_argument("--address", help="the address to listen on (default: the profile's)")
    p.add_argument("--port", type=int, help="the port (default: the profile's)")
    p.add_argument("--print", dest="print_only", action="store_true", help="print the command instead of running it")


def _rule_settings():
    from s7core.rules import RuleSettings

    return RuleSettings


def _add_flag(p: argparse.ArgumentParser, name: str, kind: type, help_text: str) -> None:
    flag = "--" + name.replace("_", "-")
    if kind is bool:
        p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
    else:
        p.add_argument(flag, dest=name, type=kind, default=None, metavar="N", help=help_text)


# ---------------------------------------------------------------- the roster


def _password(args: argparse.Namespace) -> str:
    """The new password: one line of stdin, or typed twice at a prompt that does not echo it."""
    from s7core.classroom import check_password

    if args.password_stdin:
        return check_password(sys.stdin.readline().rstrip("\r\n"))
    first = check_password(getpass.getpass(f"new password for {args.name}: "))
    if getpass.getpass("the same password again: ") != first:
        raise UserError("the two passwords differ — run the command again")
    return first


def run_add(args: argparse.Namespace) -> int:
    """python -m s7core class add NAME --role ROLE"""
    from s7core.classroom import Roster, normalise_name

    normalise_name(args.name)  # refuse a bad name before asking for a password
    entry = Roster(args.runs_dir).add(args.name, args.role, _password(args))
    print(f"added {entry.name} ({entry.role})")
    return 0


def run_reset(args: argparse.Namespace) -> int:
    """python -m s7core class reset-password NAME"""
    from s7core.classroom import Roster

    roster = Roster(args.runs_dir)
    if roster.get(args.name) is None:
        raise UserError(f"{args.name} is not on the roster — add them with `python -m s7core class add {args.name}`")
    roster.reset_password(args.name, _password(args))
    print(f"new password set for {args.name.strip().lower()}; their count of wrong tries is cleared")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """python -m s7core class remove NAME"""
    from s7core.classroom import Roster

    Roster(args.runs_dir).remove(args.name)
    print(f"removed {args.name.strip().lower()} from the roster (their runs are kept)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """python -m s7core class list"""
    from s7core.classroom import Roster
    from s7core.cli_train import format_table

    users = Roster(args.runs_dir).users()
    if args.json:
        print(json.dumps([{"name": u.name, "role": u.role.value, "added": u.added} for u in users], indent=2))
    elif not users:
        print("the roster is empty: add users with `python -m s7core class add NAME --role student|teacher`")
    else:
        print(format_table(["name", "role", "added"], [[u.name, u.role.value, u.added] for u in users]))
    return 0


# ---------------------------------------------------------------- settings


def run_on(args: argparse.Namespace) -> int:
    """python -m s7core class on"""
    from s7core.classroom import Roster, change_settings

    settings = change_settings(args.runs_dir, enabled=True)
    print("class mode is on: every page now needs a signed-in user")
    if not Roster(args.runs_dir).users() and not settings.teachers:
        print("nobody can sign in yet: add users with `python -m s7core class add NAME --role teacher|student`, "
              "or configure an identity provider (README: Running it for a class)")  # fmt: skip
    return 0


def run_off(args: argparse.Namespace) -> int:
    """python -m s7core class off"""
    from s7core.classroom import change_settings

    change_settings(args.runs_dir, enabled=False)
    print("class mode is off: solo mode, no sign-in")
    return 0


def _changes(args: argparse.Namespace, current) -> dict:
    """The settings given on the command line, as changes to `current`."""
    from s7core.classroom import CLASS_SETTINGS
    from s7core.rules import RuleSettings

    changes = {s.name: getattr(args, s.name) for s in CLASS_SETTINGS if getattr(args, s.name) is not None}
    rules = {name: getattr(args, name) for name in RULE_FLAGS if getattr(args, name) is not None}
    if rules:
        changes["rules"] = RuleSettings(**{**dataclasses.asdict(current.rules), **rules})
    if args.data_dir and args.no_data_dir:
        raise UserError("give --data-dir or --no-data-dir, not both")
    if args.data_dir:
        changes["data_dir"] = args.data_dir  # checked where every change is: ClassRuns.change_settings
    if args.no_data_dir:
        changes["data_dir"] = None
    if args.teacher or args.no_teacher:
        gone = {t.strip().lower() for t in args.no_teacher}
        changes["teachers"] = tuple(t for t in (*current.teachers, *args.teacher) if t.strip().lower() not in gone)
    return changes


def run_settings(args: argparse.Namespace) -> int:
    """python -m s7core class settings [...]"""
    from s7core.classroom import command_line_runs, load_settings

    current = load_settings(args.runs_dir)
    changes = _changes(args, current)
    settings = command_line_runs(args.runs_dir).change_settings(**changes) if changes else current
    if args.json:
        print(json.dumps(settings.to_dict(), indent=2))
        return 0
    rules = settings.rules
    lines = [
        ("class mode", "on" if settings.enabled else "off (solo mode)"),
        ("thresholds", f"fewer than {rules.max_params:,} parameters, global RF above {rules.min_rf}, "
                       f"separable {'required' if rules.require_separable else 'optional'}, "
                       f"dilated {'required' if rules.require_dilated else 'optional'}"),
        ("runs per student", f"{settings.max_active_per_student} queued or running"),
        ("runs at once", str(settings.max_concurrent)),
        ("a student's run may ask for", f"{settings.max_cpus_per_run} CPU cores, {settings.max_gpus_per_run:g} GPUs"),
        ("submissions", "open" if settings.submissions_open else "closed"),
        ("data folder", settings.data_dir or "$S7_DATA_DIR or the default"),
        ("teachers (identity provider)", ", ".join(settings.teachers) or "none listed"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in lines)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in lines))
    return 0


# ---------------------------------------------------------------- runs


def run_leaderboard(args: argparse.Namespace) -> int:
    """python -m s7core class leaderboard [--csv | --json]"""
    from s7core.classroom import class_leaderboard, leaderboard_csv
    from s7core.cli_train import _pct, format_table

    board = class_leaderboard(args.runs_dir)
    if args.csv:
        sys.stdout.write(leaderboard_csv(board))
        return 0
    if args.json:
        rows = lambda rs: [{**dataclasses.asdict(r), "failed_rules": list(r.failed_rules)} for r in rs]  # noqa: E731
        print(json.dumps({"ranked": rows(board.ranked), "failing": rows(board.failing)}, indent=2))
        return 0
    if not board.ranked and not board.failing:
        print("no finished runs yet")
        return 0
    headers = ["rank", "student", "run", "best test acc", "params", "RF", "rules", "epochs", "time"]

    def cells(r) -> list:
        time_text = "—" if r.training_time_s is None else f"{r.training_time_s:.0f} s"
        return [r.rank or "—", r.student, r.run, _pct(r.best_test_accuracy), f"{r.parameters:,}", r.global_rf,
                f"{r.rules_passed}/{r.rules_total}", r.epochs, time_text]  # fmt: skip

    print(format_table(headers, [cells(r) for r in board.ranked]))
    if board.failing:
        print("\nfailing a rule:")
        for r in board.failing:
            print(f"  {r.student} / {r.run} ({_pct(r.best_test_accuracy)}): {'; '.join(r.failed_rules)}")
    return 0


def run_remove_run(args: argparse.Namespace) -> int:
    """python -m s7core class remove-run RUN"""
    from s7core.classroom import command_line_runs

    command_line_runs(args.runs_dir).remove(args.run_name)
    print(f"removed run {args.run_name}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """python -m s7core class serve"""
    from s7core.classroom.server import REPO, serve_command

    command = serve_command(address=args.address, port=args.port)
    if args.print_only:
        print(" ".join(command))
        return 0
    return subprocess.call(command, cwd=REPO)  # Streamlit reads the project's .streamlit/config.toml from here
