"""Command-line pieces shared by run_comparison.py and the bench tools (reports.cpu_bench, reports.gpu_check).

    OneSentenceParser       argparse whose errors are one sentence on stderr and exit status 2
    positive_int, non_negative_int, positive_float      option types: ``type=positive_int``
    choice_list(convert, choices, one, many)            an option type for 'a,b,c' from a fixed set
    backend_list                                        registered backend names and peers, 'numpy,numba_cpu,torch'
"""
from __future__ import annotations

import argparse

import numpy as np

from parallel_lstm.lstm_numpy.backends import BACKENDS

from .census import PEERS

EXIT_USAGE = 2


class OneSentenceParser(argparse.ArgumentParser):
    """argparse, but an error is one sentence on stderr (no usage block) and exit code 2."""

    def error(self, message):
        message = message.rstrip(".")
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see --help.\n")


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
