"""How much memory a model or a training run needs, checked before anything that size is allocated.

Letters: N samples, B batch, T time steps, D input features, H hidden units, Y outputs.

The estimates are simple upper bounds of what the reference holds at once (the other backends hold
no more on the host): the data, four copies of the parameters (the caller's, the trainer's, the
gradients, the host copy returned) and the larger of one minibatch's training activations, about
(T+1) * (16H + D + Y) values a row (input projection, h, c, four gates, tanh(c), their gradients),
and the validation pass's forward activations, about (T+1) * (11H + D + Y) values a row. A request
is refused only when it exceeds the machine's whole memory (physical, or a smaller cgroup limit):
then it can never run, and one sentence says so instead of a MemoryError from deep inside NumPy.
"""
from __future__ import annotations

import os

from .errors import UserError


def machine_memory_bytes() -> int | None:
    """The memory this process can have at most: physical memory, or a smaller cgroup limit; None if unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as handle:
            limit = handle.read().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total if total > 0 else None


def params_bytes(D: int, H: int, Y: int, itemsize: int = 8) -> int:
    """The bytes of one set of parameters (W_ih, W_hh, b, W_y, b_y)."""
    return itemsize * (4 * H * (D + H + 1) + Y * (H + 1))


def training_bytes(n_train: int, n_valid: int, T: int, D: int, H: int, Y: int, batch_size: int,
                   itemsize: int = 8) -> int:
    """The bytes a training run holds at once (see the module docstring); targets counted as 8-byte values."""
    data = (n_train + n_valid) * (itemsize * T * D + 8 * max(T, Y))
    training = min(batch_size, n_train) * (16 * H + D + Y)
    validation = n_valid * (11 * H + D + Y)
    return data + 4 * params_bytes(D, H, Y, itemsize) + itemsize * (T + 1) * max(training, validation)


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024


def check_fits(nbytes: int, what: str, fix: str) -> None:
    """Raise one sentence when ``nbytes`` exceeds this machine's memory; ``what`` needs them, ``fix`` says how to need less."""
    total = machine_memory_bytes()
    if total is not None and nbytes > total:
        raise UserError(f"{what} needs about {format_bytes(nbytes)} of memory, but this machine has "
                        f"{format_bytes(total)}; {fix}.")
