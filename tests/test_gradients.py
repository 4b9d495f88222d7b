"""The reference's gradients against central finite differences, in float64.

Fourth-order central differences with step 1e-3 are used: their truncation error
(~eps^4) and round-off error (~1e-16 / eps) both stay near 1e-12, so a relative
error below 1e-6 is a sharp test even for gradient entries of size 1e-6.
Relative error = |analytic - numeric| / max(|analytic|, |numeric|, 1e-8); the
1e-8 floor only matters for entries that are exactly zero (W_hh when T = 1).
"""
import numpy as np
import pytest

from parallel_lstm import lstm_numpy as L
EPS = 1e-3
REL_TOL = 1e-6

# (task, B, T, D, H, Y): sizes that are not round numbers, and T=1, B=1 among them.
CASES = [
    ("regression", 3, 5, 2, 7, 2),
    ("regression", 1, 1, 1, 3, 1),
    ("regression", 2, 6, 3, 5, 3),
    ("classification", 3, 5, 3, 7, 3),
    ("classification", 1, 1, 4, 5, 4),
    ("classification", 2, 4, 3, 6, 3),
]


def random_batch(task, B, T, D, Y, rng):
    X = rng.normal(size=(B, T, D))
    target = rng.normal(size=(B, Y)) if task == "regression" else rng.integers(0, Y, size=(B, T))
    return X, target


def numeric_gradient(params, name, X, target, task):
    """Fourth-order central difference of the loss for every entry of one parameter."""
    array = getattr(params, name)
    grad = np.empty_like(array)
    for idx in np.ndindex(array.shape):
        original = array[idx]

        def loss_at(step):
            array[idx] = original + step
            value = L.loss_only(params, X, target, task)
            array[idx] = original
            return value

        grad[idx] = (8 * (loss_at(EPS) - loss_at(-EPS)) - (loss_at(2 * EPS) - loss_at(-2 * EPS))) / (12 * EPS)
    return grad


def relative_errors(analytic, numeric):
    return np.abs(analytic - numeric) / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), 1e-8)


@pytest.mark.parametrize("task,B,T,D,H,Y", CASES)
def test_every_gradient_entry_matches_finite_differences(task, B, T, D, H, Y):
    rng = np.random.default_rng(B * 100 + T * 10 + H)
    params = L.init_params(D, H, Y, seed=H, forget_bias=0.5)
    assert all(np.all(p != 0) for p in (params.b, params.b_y)), "biases must be non-zero to be tested"
    X, target = random_batch(task, B, T, D, Y, rng)
    loss, grads = L.loss_and_grads(params, X, target, task)
    assert loss == pytest.approx(L.loss_only(params, X, target, task), rel=1e-14)
    for name, analytic in grads.items():
        numeric = numeric_gradient(params, name, X, target, task)
        errors = relative_errors(analytic, numeric)
        worst = np.unravel_index(np.argmax(errors), errors.shape)
        assert errors.max() < REL_TOL, (
            f"{task} {name}{worst}: analytic {analytic[worst]!r} vs numeric {numeric[worst]!r}")


def test_the_check_detects_a_wrong_gradient():
    """A gradient off by one part in 1e5 at a single entry must fail the test above."""
    task, B, T, D, H, Y = CASES[0]
    params = L.init_params(D, H, Y, seed=3)
    X, target = random_batch(task, B, T, D, Y, np.random.default_rng(0))
    _, grads = L.loss_and_grads(params, X, target, task)
    numeric = numeric_gradient(params, "W_hh", X, target, task)
    wrong = grads.W_hh.copy()
    big = np.unravel_index(np.argmax(np.abs(wrong)), wrong.shape)
    wrong[big] *= 1 + 1e-5
    assert relative_errors(grads.W_hh, numeric).max() < REL_TOL
    assert relative_errors(wrong, numeric).max() > REL_TOL


def test_float32_gradients_follow_float64():
    task, B, T, D, H, Y = CASES[3]
    params = L.init_params(D, H, Y, seed=1)
    X, target = random_batch(task, B, T, D, Y, np.random.default_rng(1))
    loss64, g64 = L.loss_and_grads(params, X, target, task)
    loss32, g32 = L.loss_and_grads(params.astype(np.float32), X.astype(np.float32), target, task)
    assert g32.W_ih.dtype == np.float32
    L.assert_close("loss", loss32, loss64, rtol=1e-5)
    for name, g in g32.items():
        L.assert_close(name, g, getattr(g64, name), rtol=1e-4)
