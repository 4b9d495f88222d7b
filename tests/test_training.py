"""The shared epoch loop with the reference trainer, and parameter checkpoints."""
import numpy as np
import pytest

from parallel_lstm import lstm_numpy as L
from parallel_lstm.data import make_workload, with_config


def replay_epoch(params, data, config, order):
    """One epoch of minibatch SGD written out with the reference functions, for comparison."""
    params = params.copy()
    bounds = L.batch_bounds(order.size, config.batch_size)
    total = 0.0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rows = order[lo:hi]
        loss, grads = L.loss_and_grads(params, data.X_train[rows], data.Y_train[rows], config.task)
        total += loss * rows.size
        norm = np.sqrt(sum(np.sum(g * g) for g in grads.arrays()))
        scale = min(1.0, config.clip_norm / norm) if config.clip_norm else 1.0
        for p, g in zip(params.arrays(), grads.arrays()):
            p -= config.lr * scale * g
    return total / order.size, L.loss_only(params, data.X_valid, data.Y_valid, config.task), params


@pytest.mark.parametrize("clip_norm", [None, 0.05])
def test_the_loop_is_minibatch_sgd_in_the_drawn_order(clip_norm):
    w = with_config(make_workload("seed"), epochs=2, clip_norm=clip_norm)
    params = L.init_params(*w.sizes, seed=4)
    history = L.train(params, w.data, w.config)
    orders = L.epoch_orders(w.data.X_train.shape[0], 2, w.config.seed)
    expected = params
    for epoch in range(2):
        train_loss, valid_loss, expected = replay_epoch(expected, w.data, w.config, orders[epoch])
        assert history.train_loss[epoch] == pytest.approx(train_loss, rel=1e-13)
        assert history.valid_loss[epoch] == pytest.approx(valid_loss, rel=1e-13)
    for name, value in history.params.items():
        L.assert_close(name, value, getattr(expected, name), rtol=1e-13)
    # 59 samples in minibatches of 7: eight full ones and one of 3.
    assert np.diff(L.batch_bounds(59, 7)).tolist() == [7] * 8 + [3]


def test_clipping_bounds_every_step():
    w = with_config(make_workload("light"), epochs=1, batch_size=95, clip_norm=1e-3, lr=0.5)
    params = L.init_params(*w.sizes, seed=0)
    trained = L.train(params, w.data, w.config).params
    step = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(trained.arrays(), params.arrays())))
    assert step == pytest.approx(0.5 * 1e-3, rel=1e-10)


def test_training_lowers_the_loss_substantially():
    # Measured (init seed 0, default lr): seed 1.103 -> 0.957 after 50 epochs (ln 3 = 1.099 is chance);
    # light (H=16, lr 0.1) 1.062 -> 0.791 after 50 epochs, 0.089 after its default 300.
    seed = make_workload("seed", epochs=50)
    h = L.train(L.init_params(*seed.sizes, seed=0), seed.data, seed.config)
    assert h.train_loss[0] > 1.09 and h.train_loss[-1] < 0.97
    light = make_workload("light", epochs=50)
    h = L.train(L.init_params(*light.sizes, seed=0), light.data, light.config)
    assert h.train_loss[0] > 1.0 and h.train_loss[-1] < 0.82


def test_same_seed_same_history_bitwise_and_another_seed_differs():
    w = make_workload("light", epochs=3)
    run = lambda seed: L.train(L.init_params(*w.sizes, seed=seed), w.data, with_config(w, seed=seed).config)  # noqa: E731
    a, b, c = run(1), run(1), run(2)
    assert a.train_loss == b.train_loss and a.valid_loss == b.valid_loss
    assert all(np.array_equal(x, y) for x, y in zip(a.params.arrays(), b.params.arrays()))
    assert a.train_loss != c.train_loss


def test_validation_data_never_updates_the_weights():
    w = make_workload("light", epochs=2)
    params = L.init_params(*w.sizes, seed=0)
    a = L.train(params, w.data, w.config)
    shifted = w.data._replace(Y_valid=w.data.Y_valid + 10.0)
    b = L.train(params, shifted, w.config)
    assert a.train_loss == b.train_loss
    assert all(np.array_equal(x, y) for x, y in zip(a.params.arrays(), b.params.arrays()))
    assert b.valid_loss[0] > a.valid_loss[0] + 50


def test_a_non_finite_loss_stops_training_and_names_epoch_and_minibatch():
    w = with_config(make_workload("light", epochs=3), lr=1e300)
    with pytest.raises(L.NonFiniteLossError, match=r"epoch 0, minibatch \d+ is not finite") as info:
        L.train(L.init_params(*w.sizes, seed=0), w.data, w.config)
    assert info.value.epoch == 0 and info.value.minibatch >= 1


def test_phases_leave_the_parameters_alone():
    w = make_workload("seed")
    params = L.init_params(*w.sizes, seed=0)
    data = L.contract.check_data(params, w.data, "classification")
    trainer = L.make_trainer(params, data, w.config)
    order = L.epoch_orders(59, 1, 0)[0]
    bounds = L.batch_bounds(59, 7)
    # With the parameters frozen, every minibatch's loss is the loss at the initial parameters.
    frozen = [L.loss_only(params, data.X_train[order[a:b]], data.Y_train[order[a:b]], "classification")
              for a, b in zip(bounds[:-1], bounds[1:])]
    for upto in ("forward", "backward"):
        losses, valid = trainer.run_epoch(order, upto=upto)
        np.testing.assert_allclose(losses, frozen, rtol=1e-14)
        assert valid == pytest.approx(L.loss_only(params, data.X_valid, data.Y_valid, "classification"), rel=1e-14)
        assert all(np.array_equal(x, y) for x, y in zip(trainer.host_params().arrays(), params.arrays()))
    trained, _ = trainer.run_epoch(order)
    assert trained[0] == pytest.approx(frozen[0], rel=1e-14) and trained[-1] != pytest.approx(frozen[-1])


def test_float32_training_runs_in_float32():
    w = make_workload("light", epochs=2)
    params = L.init_params(*w.sizes, seed=0, dtype=np.float32)
    h = L.train(params, w.data, w.config)
    assert h.params.dtype == np.float32
    ref = L.train(params.astype(np.float64), w.data, w.config)
    np.testing.assert_allclose(h.train_loss, ref.train_loss, rtol=1e-4)


def test_data_that_does_not_fit_the_model_is_rejected():
    w = make_workload("light")
    params = L.init_params(2, 8, 1)
    with pytest.raises(L.UserError, match=r"X_train must have shape \(N, T, 2\)"):
        L.train(params, w.data, w.config)


# ---- checkpoints ----

def test_save_load_round_trip(tmp_path):
    params = L.init_params(3, 5, 2, seed=1, dtype=np.float32)
    path = tmp_path / "model.npz"
    L.save_params(path, params)
    loaded = L.load_params(path, sizes=(3, 5, 2), dtype=np.float32)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(loaded.arrays(), params.arrays()))
    assert list(tmp_path.iterdir()) == [path], "no temporary file is left behind"


def test_save_never_overwrites(tmp_path):
    path = tmp_path / "model.npz"
    L.save_params(path, L.init_params(1, 2, 1, seed=1))
    with pytest.raises(L.UserError, match="already exists"):
        L.save_params(path, L.init_params(1, 2, 1, seed=2))
    assert np.array_equal(L.load_params(path).W_ih, L.init_params(1, 2, 1, seed=1).W_ih)


def test_mismatched_checkpoints_are_rejected(tmp_path):
    path = tmp_path / "model.npz"
    L.save_params(path, L.init_params(3, 5, 2))
    with pytest.raises(L.UserError, match=r"\(D, H, Y\) = \(3, 5, 2\), but \(3, 6, 2\) is needed"):
        L.load_params(path, sizes=(3, 6, 2))
    with pytest.raises(L.UserError, match="is float64, but float32 is needed"):
        L.load_params(path, dtype=np.float32)
    bad = tmp_path / "bad.npz"
    arrays = dict(L.init_params(3, 5, 2).items())
    arrays["W_hh"] = arrays["W_hh"][:, :4]
    np.savez(bad, **arrays)
    with pytest.raises(L.UserError, match=r"W_hh has shape \(20, 4\), but D=3, H=5, Y=2 need \(20, 5\)"):
        L.load_params(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, W_ih=arrays["W_ih"])
    with pytest.raises(L.UserError, match="lacks W_hh, b, W_y, b_y"):
        L.load_params(partial)
    with pytest.raises(L.UserError, match="does not exist"):
        L.load_params(tmp_path / "missing.npz")
