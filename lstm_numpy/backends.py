"""One registry from backend names to packages, so tests and the harness take the backend as a parameter.

Every backend package exposes the same entry points: ``loss_and_grads``, ``train``,
``predict`` (and re-exports ``Params``/``init_params`` from the reference).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import UserError

BACKENDS = {
    "numpy": "lstm_numpy",
    "numba_cpu": "lstm_numba_cpu",
    "numba_cuda": "lstm_numba_cuda",
}


def get_backend(name: str) -> ModuleType:
    """The backend package registered under ``name``."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}.")
    return importlib.import_module(BACKENDS[name])
