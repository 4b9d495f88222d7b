"""Which registered backends can run on this machine, and which ones a run takes.

    backend_status(name) -> BackendStatus           import one backend through the registry and ask it
    select_backends(requested, use_simulator)       the backends to run (the reference first) and the census
    check_threads(threads)                          a UserError when more threads are asked than Numba allows

Backends are reached only through ``lstm_numpy.backends``; peer baselines (PEERS: PyTorch's nn.LSTM,
reports/torch_baseline.py) run only when named in ``--backends``: a default run does not grow a row
because a package happens to be installed, and is not slowed by importing it. Nothing here imports
Numba or PyTorch at module level (see lstm_numpy/backends.py).
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os

from parallel_lstm.lstm_numpy.backends import BACKENDS, cuda_simulator_on, get_backend
from parallel_lstm.lstm_numpy.errors import UserError

REFERENCE = "numpy"
# name: (the module with a backend's surface, the package it needs)
PEERS = {"torch": ("parallel_lstm.reports.torch_baseline", "torch")}
PEER_SKIP = "a peer baseline runs only when asked: add it to --backends (e.g. --backends numpy,numba_cpu,{name})"
# Names a backend package must export for the harness to run it (see lstm_numpy/__init__.py).
REQUIRED_EXPORTS = ("make_trainer", "train", "is_available", "describe")


@dataclasses.dataclass
class BackendStatus:
    """What the registry says about one backend on this machine."""

    name: str
    module: object = None
    reason: str | None = None        # None: it can run here
    skip: str | None = None          # why a default run leaves out a backend that can run
    simulator: bool = False
    describe: dict = dataclasses.field(default_factory=dict)
    selected: bool = False


def backend_status(name: str) -> BackendStatus:
    """Import a registered backend and ask it whether it can run here; never raises."""
    status = BackendStatus(name)
    try:
        status.module = importlib.import_module(PEERS[name][0]) if name in PEERS else get_backend(name)
    except Exception as exc:   # a backend that fails to import is reported, not fatal
        status.reason = f"importing {BACKENDS.get(name, name)} failed ({type(exc).__name__}: {exc})"
        return status
    missing = [export for export in REQUIRED_EXPORTS if not hasattr(status.module, export)]
    if missing:
        status.reason = f"{status.module.__name__} does not export {', '.join(missing)} yet"
        return status
    try:
        status.reason = status.module.is_available()
    except Exception as exc:
        status.reason = f"is_available() raised {type(exc).__name__}: {exc}"
    try:
        status.describe = dict(status.module.describe())
    except Exception as exc:
        status.describe = {"error": f"describe() raised {type(exc).__name__}: {exc}"}
    status.simulator = bool(status.describe.get("simulator")) or ("cuda" in name and cuda_simulator_on())
    return status


def peer_status(name: str) -> BackendStatus:
    """A peer that was not asked for: whether its package is installed (found, not imported), and why a
    default run leaves it out."""
    module, package = PEERS[name]
    installed = importlib.util.find_spec(package) is not None
    return BackendStatus(name, reason=None if installed else f"{package} is not installed",
                         skip=PEER_SKIP.format(name=name))


def select_backends(requested: list[str] | None, use_simulator: bool) -> tuple[list[str], dict[str, BackendStatus]]:
    """The backends to run (reference first) and the status of every registered backend and peer."""
    census = {name: backend_status(name) for name in BACKENDS}
    for name in PEERS:
        census[name] = backend_status(name) if requested and name in requested else peer_status(name)
    if requested is None:
        chosen = []
        for name, status in census.items():
            if status.skip is not None:
                continue
            if status.reason is None and status.simulator and not use_simulator:
                status.skip = ("it would run on Numba's CUDA simulator here (no GPU); add --cuda-simulator "
                               "to check its losses (no timings)")
            elif status.reason is None:
                chosen.append(name)
    else:
        for name in requested:
            status = census[name]
            if status.reason is not None:
                hint = ("; add --cuda-simulator to run it on Numba's CUDA simulator"
                        if "cuda" in name and not use_simulator else "")
                raise UserError(f"backend {name} cannot run here: {status.reason.rstrip('.')}{hint}.")
        chosen = list(requested)
    if REFERENCE not in chosen and (chosen or requested is None):
        if census[REFERENCE].reason is not None:
            raise UserError(f"the reference backend cannot run here: {census[REFERENCE].reason.rstrip('.')}.")
        chosen.insert(0, REFERENCE)
    chosen.sort(key=lambda name: name != REFERENCE)
    for name in chosen:
        census[name].selected = True
    return chosen, census


def check_threads(threads: int | None) -> None:
    """--threads must not exceed the threads Numba may start (NUMBA_NUM_THREADS)."""
    if threads is None:
        return
    try:
        import numba   # here, not at the top: the caller may still have to set NUMBA_ENABLE_CUDASIM
        limit = numba.config.NUMBA_NUM_THREADS
    except ImportError:
        limit = os.cpu_count() or 1
    if threads > limit:
        raise UserError(f"--threads {threads} exceeds the {limit} threads Numba may use here "
                        f"(NUMBA_NUM_THREADS); give at most {limit}.")
