"""Training commands for the command line: train, evaluate, runs."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the training sub-commands to the main parser."""
