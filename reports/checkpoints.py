"""run_comparison.py's --init-params and --save-params: parameter files checked before any work.

    check_save_path(path) -> str                 the absolute path --save-params will write, or one sentence
                                                 (not .npz, no such folder, the name taken, not writable)
    load_initial_params(path, workloads, dtype) -> (Params, record)   the file every backend starts from,
                                                 checked against every workload's (D, H, Y) and the dtype

The harness saves the reference's final weights with lstm_numpy.save_params (atomic, never overwriting:
a name taken since it was checked is one sentence, and the file there is kept). The files are its .npz
archives (the layout of lstm_numpy/params.py, shared by every backend), so a file saved after one run
starts any backend of another.
"""
from __future__ import annotations

import hashlib
import os

from parallel_lstm.lstm_numpy.errors import UserError
from parallel_lstm.lstm_numpy.params import Params, load_params


def check_save_path(path: str) -> str:
    """The absolute path of a new checkpoint, refused before any work when it cannot be written there."""
    if not path.endswith(".npz"):
        raise UserError(f"--save-params {path!r} must end in .npz; add the suffix.")
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise UserError(f"--save-params {path}: the folder {folder} does not exist; create it or choose another path.")
    if os.path.lexists(target):        # a dangling link takes the name too: publishing never replaces it
        raise UserError(f"--save-params {path} already exists; choose another file name so the earlier file is kept.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--save-params {path}: the folder {folder} is not writable; choose another path.")
    return target


def load_initial_params(path: str, workloads: list[tuple[str, object]], dtype: str) -> tuple[Params, dict]:
    """The parameters in ``path`` and their record for the results ({path, sha256}); one sentence when the file
    is damaged, or does not fit a workload's (D, H, Y) (``workloads``: [(label, Workload)]) or ``dtype``."""
    params = load_params(path)                      # names, shapes, finite values; one sentence otherwise
    if params.dtype != dtype:
        raise UserError(f"--init-params {path} holds {params.dtype} weights, but this run is {dtype}; give "
                        f"--dtype {params.dtype} or a {dtype} checkpoint.")
    for label, workload in workloads:
        if params.sizes != tuple(workload.sizes):
            where = "" if label == "main" else f" at {label}"
            (D, H, Y), (d, h, y) = params.sizes, workload.sizes
            fix = (f"give --hidden {H} or a checkpoint with H={h}" if (D, Y) == (d, y)
                   else f"give a checkpoint saved from the {workload.name} workload")
            raise UserError(f"--init-params {path} holds a model with D={D}, H={H}, Y={Y}, but the {workload.name} "
                            f"workload{where} needs D={d}, H={h}, Y={y}; {fix}.")
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    return params, {"path": os.path.abspath(path), "sha256": digest}

