"""Command-line pieces shared by run_comparison.py and the bench tools (reports.cpu_bench, reports.gpu_check).

    OneSentenceParser       argparse whose errors are one sentence on stderr and exit status 2
    parse_or_exit(parser, argv) -> (args, None) or (None, exit code): --help 0, a bad option 2
    run_tool(prog, work, interrupted)   work() -> exit code, with the tools' shared exits (below)
    positive_int, non_negative_int, positive_float      option types: ``type=positive_int``
    choice_list(convert, choices, one, many)            an option type for 'a,b,c' from a fixed set
    backend_list                                        registered backend names and peers, 'numpy,numba_cpu,torch'
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

import numpy as np

from parallel_lstm.lstm_numpy.backends import BACKENDS
from parallel_lstm.lstm_numpy.errors import NonFiniteLossError, UserError

from .census import PEERS

# Exit codes of every tool: 1 (a backend disagrees with the reference) is each tool's own verdict.
EXIT_OK, EXIT_DISAGREE, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3
EXIT_INTERRUPTED = 130          # 128 + SIGINT, as shells report it
PUBLISHED_WHOLE = "results files are written whole or not at all, so none is half-written"


class OneSentenceParser(argparse.ArgumentParser):
    """argparse, but an error is one sentence on stderr (no usage block) and exit code 2."""

    def error(self, message):
        message = message.rstrip(".")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see --help.\n")


def parse_or_exit(parser: argparse.ArgumentParser, argv: list[str]):
    """(args, None), or (None, exit code) after --help (0) or a bad option (2, already said on stderr)."""
    try:
        return parser.parse_args(argv), None
    except SystemExit as exc:
        return None, exc.code if isinstance(exc.code, int) else EXIT_USAGE


def run_tool(prog: str, work: Callable[[], int], interrupted: str = f"interrupted ({{reason}}); {PUBLISHED_WHOLE}") -> int:
    """``work()``'s exit code; a UserError is one sentence and exit 2, a diverged training exit 3, Ctrl-C
    (or what a tool turns into KeyboardInterrupt) the line ``interrupted`` ({reason}: what stopped it) and 130."""
    try:
        return work()
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteLossError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt as exc:
        print(f"{prog}: " + interrupted.format(reason=str(exc) or "Ctrl-C"), file=sys.stderr)
        return EXIT_INTERRUPTED


def number_option(convert, accept, what: str):
    """An argparse type: ``convert`` the text, then require ``accept(value)``, else say ``must be <what>``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    return parse


positive_int = number_option(int, lambda v: v > 0, "a positive integer")
non_negative_int = number_option(int, lambda v: v >= 0, "a non-negative integer")
positive_float = number_option(float, lambda v: bool(np.isfinite(v) and v > 0), "a positive number")


def choice_list(convert, choices, one: str, many: str):
    """An argparse type for a comma-separated list from ``choices`` (each ``convert``-ed from text), repeats
    dropped; ``one`` and ``many`` name one item and several in the error messages."""
    allowed = ", ".join(map(str, choices))

    def parse(text: str) -> list:
        names = [name.strip() for name in text.split(",") if name.strip()]
        if not names:
            raise argparse.ArgumentTypeError(f"give {many} separated by commas, from {allowed}")
        values = []
        for name in names:
            try:
                value = convert(name)
            except ValueError:
                value = None
            if value not in choices:
                raise argparse.ArgumentTypeError(f"unknown {one} {name!r}; choose from {allowed}")
            values.append(value)
        return list(dict.fromkeys(values))
    return parse


def backend_list(text: str) -> list[str]:
    """'numpy,numba_cpu' -> ['numpy', 'numba_cpu'], every name registered in lstm_numpy.backends or a peer
    baseline (reports.census.PEERS: torch)."""
    return choice_list(str, {**BACKENDS, **PEERS}, "backend", "backend names")(text)
