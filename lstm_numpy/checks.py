"""The one equivalence rule (the README's "Identical losses") and its helper.

    |a - r| <= atol + rtol * |r|     elementwise, r the reference

rtol is 1e-10 in float64 and 1e-4 in float32. atol defaults to rtol times the
largest |r| of the tensor: an entry that is a small difference of large terms
(a gradient that nearly cancels) cannot be expected to keep relative accuracy
of its own, only relative to the tensor's scale. Scalars (losses) thus get a
purely relative test, and loss histories are compared with atol=0 so that every
epoch is held to its own value.
"""
from __future__ import annotations

import numpy as np

RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}


def rtol_for(dtype) -> float:
    return RTOL[np.dtype(dtype)]


def assert_close(name: str, actual, reference, rtol: float | None = None, atol: float | None = None) -> None:
    """Raise AssertionError naming the tensor, the worst index and both values when the rule fails."""
    a = np.asarray(actual)
    r = np.asarray(reference)
    if a.shape != r.shape:
        raise AssertionError(f"{name}: shape {a.shape} != reference shape {r.shape}")
    if rtol is None:
        rtol = rtol_for(r.dtype if r.dtype in RTOL else a.dtype)
    r64 = r.astype(np.float64)
    if atol is None:
        atol = rtol * float(np.max(np.abs(r64))) if r.size else 0.0
    err = np.abs(a.astype(np.float64) - r64)
    allowed = atol + rtol * np.abs(r64)
    bad = ~(err <= allowed)          # NaN counts as a failure
    if bad.any():
        excess = np.where(np.isnan(err), np.inf, err - allowed)
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), r.shape)) if r.ndim else ()
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {r.size} entries differ beyond atol={atol:.3g} + rtol={rtol:.3g}*|ref|; "
            f"worst at index {worst}: got {a[worst]!r}, reference {r[worst]!r}")


def assert_same_history(name: str, history, reference, rtol: float | None = None) -> None:
    """The equivalence rule on a whole training run: the same number of epochs, every epoch's training and
    validation loss held to its own value (atol=0), and every final parameter, in the reference's dtype."""
    if len(history.train_loss) != len(reference.train_loss):
        raise AssertionError(f"{name} trained {len(history.train_loss)} epochs, the reference {len(reference.train_loss)}")
    dtype = reference.params.dtype
    rtol = rtol_for(dtype) if rtol is None else rtol
    for epoch, (train, valid) in enumerate(zip(history.train_loss, history.valid_loss)):
        assert_close(f"{name} epoch {epoch} train loss", train, reference.train_loss[epoch], rtol=rtol, atol=0)
        assert_close(f"{name} epoch {epoch} valid loss", valid, reference.valid_loss[epoch], rtol=rtol, atol=0)
    for (param, value), (_, expected) in zip(history.params.items(), reference.params.items()):
        if value.dtype != expected.dtype:
            raise AssertionError(f"{name} final {param} is {value.dtype}, the reference {expected.dtype}")
        assert_close(f"{name} final {param}", value, expected, rtol=rtol)
