"""One registry from backend names to packages, so tests and the harness take the backend as a parameter.

Every backend package exposes the same entry points: ``loss_and_grads``, ``train``,
``predict`` (and re-exports ``Params``/``init_params`` from the reference).

Also the one check of Numba's CUDA simulator switch, used by the CUDA backend and the tools alike:

    cuda_simulator_on() -> bool     is NUMBA_ENABLE_CUDASIM in force (or will it be, at Numba's import)?
    enable_cuda_simulator()         set it; a UserError once Numba was imported without it

Numba reads NUMBA_ENABLE_CUDASIM once, when it is first imported, so this module never imports
Numba before the caller has had the chance to set the variable.
"""
from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from .errors import UserError

BACKENDS = {
    "numpy": "parallel_lstm.lstm_numpy",
    "numba_cpu": "parallel_lstm.lstm_numba_cpu",
    "numba_cuda": "parallel_lstm.lstm_numba_cuda",
}


def get_backend(name: str) -> ModuleType:
    """The backend package registered under ``name``."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}.")
    return importlib.import_module(BACKENDS[name])


def cuda_simulator_on() -> bool:
    """True when CUDA kernels run (or, Numba not yet imported, will run) on Numba's CPU simulator."""
    if "numba" in sys.modules:
        import numba.core.config
        return bool(numba.core.config.ENABLE_CUDASIM)
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def enable_cuda_simulator() -> None:
    """Set NUMBA_ENABLE_CUDASIM=1, which only works before Numba is first imported."""
    if "numba" in sys.modules:
        if not cuda_simulator_on():
            raise UserError("--cuda-simulator must be set before Numba is imported; run parallel-lstm compare "
                            "in a fresh process or set NUMBA_ENABLE_CUDASIM=1 in the environment.")
        return
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
