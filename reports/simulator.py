"""The one check of Numba's CUDA simulator switch, and turning it on.

    cuda_simulator_on() -> bool     is NUMBA_ENABLE_CUDASIM in force (or will it be, at Numba's import)?
    enable_cuda_simulator()         set it; a UserError once Numba was imported without it

Numba reads NUMBA_ENABLE_CUDASIM once, when it is first imported, so this module never
imports Numba itself before the caller has had the chance to set the variable.
"""
from __future__ import annotations

import os
import sys

from lstm_numpy.errors import UserError


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
            raise UserError("--cuda-simulator must be set before Numba is imported; run run_comparison.py "
                            "in a fresh process or set NUMBA_ENABLE_CUDASIM=1 in the environment.")
        return
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
