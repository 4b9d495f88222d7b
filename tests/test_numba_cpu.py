"""lstm_numba_cpu against the reference: every kernel, the public entry points, whole trainings.

Tolerances are the project's policy (lstm_numpy.rtol_for: 1e-10 float64, 1e-4 float32); sizes are
awkward on purpose (T=1, B=1, H not a multiple of 4 or 8, row counts that do not fill a group) and
biases are non-zero (init_params draws them). Thread-count independence is asserted bitwise.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

from parallel_lstm import lstm_numba_cpu as nb
from parallel_lstm import lstm_numpy as ref
from parallel_lstm.data import make_workload
from parallel_lstm.lstm_numba_cpu import kernels
from parallel_lstm.lstm_numba_cpu.trainer import workspace
from parallel_lstm.lstm_numpy import assert_close, rtol_for
from parallel_lstm.lstm_numpy.checks import assert_same_history
from parallel_lstm.lstm_numpy.model import head_loss_and_grads
from parallel_lstm.lstm_numpy.contract import epoch_orders
from parallel_lstm.lstm_numpy.trainer import NumpyTrainer, sgd_update

DTYPES = [np.float64, np.float32]
# (B, T, D, H, Y): B=1, T=1, H = 1, 5, 7, 9 (no multiple of 4 or 8), D and Y above 1
SIZES = [(1, 1, 1, 1, 1), (1, 3, 2, 5, 3), (3, 1, 3, 7, 2), (5, 4, 2, 9, 3)]


def make_batch(B, T, D, H, Y, dtype, task, seed=0):
    """Parameters (non-zero biases), inputs and targets for one batch."""
    rng = np.random.default_rng(seed)
    params = ref.init_params(D, H, Y, seed=seed + 1, dtype=dtype)
    X = rng.standard_normal((B, T, D)).astype(dtype)
    if task == "regression":
        targets = rng.standard_normal((B, Y)).astype(dtype)
    else:
        targets = rng.integers(0, Y, (B, T))
    return params, X, targets


def time_major(X):
    return np.ascontiguousarray(X.transpose(1, 0, 2))


def check_params(name, actual, reference, dtype):
    for (field, a), (_, r) in zip(actual.items(), reference.items()):
        assert_close(f"{name}.{field}", a, r, rtol=rtol_for(dtype))


# ----------------------------------------------------------------------------- kernels

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("R, Kd, N", [(1, 1, 1), (1, 5, 3), (2, 4, 8), (3, 9, 7), (5, 13, 37)])
def test_accumulate_is_a_matmul(R, Kd, N, dtype):
    rng = np.random.default_rng(R * 100 + Kd)
    out0 = rng.standard_normal((R, N)).astype(dtype)
    coeffs = rng.standard_normal((R, Kd)).astype(dtype)
    M = rng.standard_normal((Kd, N)).astype(dtype)
    out = out0.copy()
    kernels.accumulate(out, coeffs, M)
    assert_close("out", out, out0 + coeffs @ M)
    # a transposed (non-contiguous) coefficient view, as the weight-gradient kernel passes
    out = out0.copy()
    kernels.accumulate(out, np.ascontiguousarray(coeffs.T).T, M)
    assert_close("out (strided coeffs)", out, out0 + coeffs @ M)


@numba.njit   # not cached: Numba would not see a change to kernels.tanh_of in another file
def tanh_loop(x, out):
    for i in range(x.shape[0]):
        out[i] = kernels.tanh_of(x[i])


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    special = [0.0, -0.0, 0.625, -0.625, np.nextafter(0.625, 0), 19.0, 20.5, 40.0, -700.0, 1e-300, np.inf, -np.inf]
    x = np.concatenate([rng.uniform(-1, 1, 20000), rng.uniform(-30, 30, 20000),
                        rng.standard_normal(2000) * 1e-6, special]).astype(dtype)
    out = np.empty_like(x)
    tanh_loop(x, out)
    reference = np.tanh(x)
    eps = np.finfo(dtype).eps
    assert out.dtype == dtype
    # a few units in the last place: far inside the 1e-10 / 1e-4 policy, and it must not be looser
    assert np.all(np.abs(out - reference) <= 4 * eps * np.abs(reference)), np.max(np.abs(out - reference) / np.abs(reference))
    assert np.isnan(tanh_loop_one(np.nan, dtype))


def tanh_loop_one(value, dtype):
    out = np.empty(1, dtype)
    tanh_loop(np.array([value], dtype), out)
    return out[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", SIZES)
def test_forward_kernel(sizes, dtype):
    B, T, D, H, Y = sizes
    params, X, _ = make_batch(*sizes, dtype, "regression")
    h_ref, cache = ref.lstm_forward(params, X)
    for group in (1, 2, B):          # how rows are grouped must not change anything
        ws = workspace(B, T, D, H, Y, Y, dtype, dtype)
        Xb, h, c, gates, tanh_c = ws.Xb, ws.h, ws.c, ws.gates, ws.tanh_c
        Xb[:] = time_major(X)
        kernels.lstm_forward(np.ascontiguousarray(params.W_ih.T), np.ascontiguousarray(params.W_hh.T), params.b,
                       Xb, B, group, h, c, gates, tanh_c)
        for name, a, r in (("h", h, cache.h), ("c", c, cache.c), ("gates", gates, cache.gates),
                           ("tanh_c", tanh_c, cache.tanh_c)):
            assert_close(f"{name} (group {group})", a, r)


# T*B = 279 terms: more than one chunk of kernels.WG_TERMS, the last one ragged
CHUNKED = (9, 31, 2, 6, 3)
assert CHUNKED[0] * CHUNKED[1] > 2 * kernels.WG_TERMS and CHUNKED[0] * CHUNKED[1] % kernels.WG_TERMS % 4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", SIZES + [CHUNKED])
def test_backward_and_weight_gradient_kernels(sizes, dtype):
    B, T, D, H, Y = sizes
    params, X, _ = make_batch(*sizes, dtype, "regression", seed=3)
    _, cache = ref.lstm_forward(params, X)
    dh = np.random.default_rng(4).standard_normal((T, B, H)).astype(dtype)   # random upstream gradient
    expected = ref.lstm_backward(params, dh, cache)
    for group, block in ((1, 1), (2, 3), (B, H + 1)):
        ws = workspace(B, T, D, H, Y, Y, dtype, dtype)
        dz, dh_next, dc_next = ws.dz, ws.dh_next, ws.dc_next
        kernels.lstm_backward(params.W_hh, dh, B, group, cache.c, cache.gates, cache.tanh_c, dz, dh_next, dc_next)
        dW_ihT, dW_hhT, db = np.ones((D, 4 * H), dtype), np.ones((H, 4 * H), dtype), np.ones(4 * H, dtype)
        kernels.lstm_weight_grads(time_major(X), cache.h, dz, B, block, dW_ihT, dW_hhT, db)
        for name, a, r in zip(("dW_ih", "dW_hh", "db"), (dW_ihT.T, dW_hhT.T, db), expected):
            assert_close(f"{name} (group {group}, block {block})", a, r)
        # a minibatch with fewer rows than the workspace (B_max = B + 2, spare rows NaN): the per-step
        # path, which must give the same sums, in the same order, as the one-matrix path of a full batch
        pad = lambda a: np.concatenate([a, np.full(a.shape[:1] + (2,) + a.shape[2:], np.nan, dtype)], axis=1)  # noqa: E731
        partial = np.ones((D, 4 * H), dtype), np.ones((H, 4 * H), dtype), np.ones(4 * H, dtype)
        kernels.lstm_weight_grads(pad(time_major(X)), pad(cache.h), pad(dz), B, block, *partial)
        for name, a, b in zip(("dW_ihT", "dW_hhT", "db"), partial, (dW_ihT, dW_hhT, db)):
            assert np.array_equal(a, b), f"{name} (n_rows < B_max, block {block})"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task", ref.TASKS)
@pytest.mark.parametrize("sizes", SIZES)
def test_head_kernels(sizes, task, dtype):
    B, T, D, H, Y = sizes
    params, X, targets = make_batch(*sizes, dtype, task, seed=5)
    h, _ = ref.lstm_forward(params, X)
    loss_ref, dh_ref, dW_y_ref, db_y_ref = head_loss_and_grads(params, h, targets, task)
    ws = workspace(B, T, D, H, Y, targets.shape[1], targets.dtype, dtype)
    Yb, out, dh, row_loss = ws.Yb, ws.out, ws.dh, ws.row_loss
    Yb[:] = targets
    n_terms = ref.loss_terms(task, B, T, Y)
    t_first = T - 1 if task == "regression" else 0
    kernels.head_outputs(params.W_y, params.b_y, h, 0, B, t_first, out)
    outputs = ref.head_forward(params, h, task)
    assert_close("outputs", out[-1] if task == "regression" else out.transpose(1, 0, 2), outputs)
    for r0, r1 in ((0, B // 2), (B // 2, B)):     # row ranges, as two row groups would run them
        if task == "regression":
            kernels.regression_loss(out, Yb, r0, r1, n_terms, row_loss)
        else:
            kernels.classification_loss(out, Yb, r0, r1, n_terms, row_loss)
    assert_close("loss", row_loss.sum() / n_terms, loss_ref, rtol=rtol_for(dtype))
    kernels.head_backward(params.W_y, out, 0, B, t_first, dh)
    dW_y, db_y = np.zeros_like(params.W_y), np.zeros_like(params.b_y)
    kernels.head_weight_grads(h, out, B, t_first, dW_y, db_y)
    assert_close("dh", dh, dh_ref)
    assert_close("dW_y", dW_y, dW_y_ref)
    assert_close("db_y", db_y, db_y_ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip_norm", [None, 1e-3, 1e6])
def test_sgd_update_kernel(clip_norm, dtype):
    params, X, targets = make_batch(3, 2, 2, 5, 2, dtype, "regression", seed=7)
    _, grads = ref.loss_and_grads(params, X, targets, "regression")
    expected = params.copy()
    sgd_update(expected, grads, 0.3, clip_norm)
    actual = params.copy()
    W_ihT, W_hhT = np.ascontiguousarray(params.W_ih.T), np.ascontiguousarray(params.W_hh.T)
    kernel_grads = (np.ascontiguousarray(grads.W_ih.T), np.ascontiguousarray(grads.W_hh.T), grads.b, grads.W_y, grads.b_y)
    kernels.sgd_update(actual.arrays(), kernel_grads, 0.3, -1.0 if clip_norm is None else clip_norm, W_ihT, W_hhT)
    check_params("params", actual, expected, dtype)
    np.testing.assert_array_equal(W_ihT, actual.W_ih.T)
    np.testing.assert_array_equal(W_hhT, actual.W_hh.T)
    assert not np.allclose(actual.W_hh, params.W_hh, rtol=0, atol=0)   # it did move


# ----------------------------------------------------------------------------- entry points

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task", ref.TASKS)
@pytest.mark.parametrize("sizes", SIZES)
def test_loss_and_grads_match_reference(sizes, task, dtype):
    params, X, targets = make_batch(*sizes, dtype, task, seed=11)
    loss, grads = nb.loss_and_grads(params, X, targets, task)
    loss_ref, grads_ref = ref.loss_and_grads(params, X, targets, task)
    assert isinstance(loss, float)
    assert_close("loss", loss, loss_ref, rtol=rtol_for(dtype))
    check_params("grads", grads, grads_ref, dtype)
    assert all(g.dtype == dtype for g in grads.arrays())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("task", ref.TASKS)
def test_predict_matches_reference(task, dtype):
    params, X, _ = make_batch(4, 3, 2, 7, 3, dtype, task, seed=13)
    actual = nb.predict(params, X, task)
    assert actual.shape == ref.predict(params, X, task).shape
    assert_close("predict", actual, ref.predict(params, X, task))


def test_backend_contract():
    assert nb.is_available() is None
    facts = nb.describe()
    assert facts["numba"] == numba.__version__
    assert facts["threading_layer"] in ("tbb", "omp", "workqueue")
    assert facts["threads"] >= 1
    assert nb.Params is ref.Params and nb.init_params is ref.init_params
    assert ref.get_backend("numba_cpu") is nb
    for name in ("loss_and_grads", "predict", "make_trainer", "train", "is_available", "describe"):
        assert callable(getattr(nb, name))


# ----------------------------------------------------------------------------- whole trainings

WORKLOADS = {
    "seed": {},
    "light": {},
    "heavy": dict(samples=256, hidden=24, epochs=2),
}


def train_both(workload, dtype, **changes):
    w = make_workload(workload, **WORKLOADS[workload], **changes)
    params = ref.init_params(*w.sizes, seed=w.config.seed, dtype=dtype)
    return nb.train(params, w.data, w.config), ref.train(params, w.data, w.config)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_training_matches_reference(workload, dtype):
    mine, theirs = train_both(workload, dtype)
    assert len(theirs.train_loss) == make_workload(workload, **WORKLOADS[workload]).config.epochs
    assert_same_history("numba_cpu", mine, theirs)
    assert mine.stats["threads"] >= 1 and mine.stats["threading_layer"]


def test_training_with_clipping_matches_reference():
    mine, theirs = train_both("light", np.float64, clip_norm=0.05, epochs=5)
    assert_same_history("numba_cpu", mine, theirs)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
@pytest.mark.parametrize("workload", ["seed", "heavy"])
def test_results_do_not_depend_on_thread_count(workload):
    histories = []
    for threads in (1, 2):
        w = make_workload(workload, **WORKLOADS[workload], threads=threads)
        params = ref.init_params(*w.sizes, seed=0)
        histories.append(nb.train(params, w.data, w.config))
    one, two = histories
    assert (one.stats["threads"], two.stats["threads"]) == (1, 2)
    # each output element is computed by one thread in a fixed order: bitwise equal, not only within 1e-12
    assert one.train_loss == two.train_loss and one.valid_loss == two.valid_loss
    for (name, a), (_, b) in zip(one.params.items(), two.params.items()):
        assert np.array_equal(a, b), name


@pytest.mark.parametrize("upto", ["forward", "backward"])
def test_phases_match_reference_and_leave_params(upto):
    w = make_workload("seed")
    params = ref.init_params(*w.sizes, seed=0)
    order = epoch_orders(w.data.X_train.shape[0], 1, 0)[0]
    mine = nb.make_trainer(params, w.data, w.config)
    theirs = NumpyTrainer(params, w.data, w.config)
    losses, valid = mine.run_epoch(order, upto=upto)
    losses_ref, valid_ref = theirs.run_epoch(order, upto=upto)
    assert_close("losses", losses, losses_ref)
    assert_close("valid", valid, valid_ref)
    check_params("params", mine.host_params(), params, np.float64)
    np.testing.assert_array_equal(mine.host_params().W_hh, params.W_hh)


def test_non_finite_loss_stops_updates_like_reference():
    w = make_workload("light")
    X = w.data.X_train.copy()
    order = epoch_orders(X.shape[0], 1, 0)[0]
    X[order[40]] = np.nan                          # poisons minibatch 2 (batch size 16)
    data = w.data._replace(X_train=X)
    params = ref.init_params(*w.sizes, seed=0)
    mine = nb.make_trainer(params, data, w.config)
    losses, valid = mine.run_epoch(order)
    theirs = NumpyTrainer(params, data, w.config)
    losses_ref, valid_ref = theirs.run_epoch(order)
    assert np.isfinite(losses[:2]).all() and np.isnan(losses[2:]).all()
    assert_close("losses before the stop", losses[:2], losses_ref[:2])
    # The poisoned minibatch's update was not applied: parameters and validation loss are those after minibatch 1.
    assert_close("valid after the stop", valid, valid_ref)
    check_params("params after the stop", mine.host_params(), theirs.host_params(), np.float64)
    # train() names the NaN in the data before any epoch; a diverging run is named by epoch and minibatch.
    with pytest.raises(ref.UserError, match=rf"X_train holds nan at index \({order[40]}, 0, 0\)"):
        nb.train(params, data, w.config)
    with pytest.raises(ref.NonFiniteLossError) as caught:
        nb.train(params, w.data, make_workload("light", lr=1e300).config)
    assert (caught.value.epoch, caught.value.minibatch) == (0, 1)


def test_bad_batches_are_user_errors_not_out_of_bounds_reads():
    # Compiled code has no bounds checks, so the entry points must refuse what would read or write outside arrays.
    params = ref.init_params(3, 5, 3, seed=0)
    X = np.zeros((2, 4, 3))
    with pytest.raises(ref.UserError, match="class ids outside 0..2"):
        nb.loss_and_grads(params, X, np.full((2, 4), 3), "classification")
    with pytest.raises(ref.UserError, match=r"X must have shape \(N, T, 3\)"):
        nb.predict(params, np.zeros((2, 4, 5)), "classification")
    with pytest.raises(ref.UserError, match="unknown phase 'sideways'"):
        w = make_workload("light")
        nb.make_trainer(ref.init_params(*w.sizes), w.data, w.config).run_epoch(np.arange(95), "sideways")
