"""The PyTorch peer (reports/torch_baseline.py) against the reference, by the same rule as our backends.

PyTorch is an optional extra: without it these tests are skipped, and CI installs the CPU build so that
they run there.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from parallel_lstm import lstm_numpy as ref
from parallel_lstm.data import make_workload
from parallel_lstm.lstm_numpy.checks import assert_same_history
from parallel_lstm.reports import torch_baseline

pytest.importorskip("torch", reason="PyTorch is optional: pip install torch==2.13.0")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("task", ref.TASKS)
def test_loss_and_grads_match_the_reference(task, dtype):
    B, T, D, H, Y = 5, 4, 3, 7, 2
    rng = np.random.default_rng(3)
    params = ref.init_params(D, H, Y, seed=2, dtype=dtype, forget_bias=0.5)
    X = rng.standard_normal((B, T, D)).astype(dtype)
    targets = rng.standard_normal((B, Y)) if task == "regression" else rng.integers(0, Y, (B, T))
    loss, grads = torch_baseline.loss_and_grads(params, X, targets, task)
    loss_ref, grads_ref = ref.loss_and_grads(params, X, targets, task)
    ref.assert_close("loss", loss, loss_ref, rtol=ref.rtol_for(dtype))
    for (name, g), (_, g_ref) in zip(grads.items(), grads_ref.items()):
        ref.assert_close(name, g, g_ref, rtol=ref.rtol_for(dtype))
    ref.assert_close("predict", torch_baseline.predict(params, X, task), ref.predict(params, X, task),
                     rtol=ref.rtol_for(dtype))


@pytest.mark.parametrize("workload, dtype, changes", [
    ("seed", np.float64, dict(hidden=8, epochs=2)),
    ("light", np.float64, dict(epochs=3, clip_norm=0.05)),
    ("light", np.float32, dict(epochs=2))])
def test_training_matches_the_reference(workload, dtype, changes):
    w = make_workload(workload, **changes)
    params = ref.init_params(*w.sizes, seed=w.config.seed, dtype=dtype)
    assert_same_history("torch", torch_baseline.train(params, w.data, w.config), ref.train(params, w.data, w.config))


def test_phases_leave_the_parameters_alone():
    w = make_workload("light", epochs=1)
    params = ref.init_params(*w.sizes, seed=0)
    trainer = torch_baseline.make_trainer(params, w.data, replace(w.config, threads=1))
    order = ref.epoch_orders(w.data.X_train.shape[0], 1, 0)[0]
    for phase in ("forward", "backward"):
        losses, _ = trainer.run_epoch(order, upto=phase)
        assert np.isfinite(losses).all()
        for (name, a), (_, b) in zip(trainer.host_params().items(), params.items()):
            assert np.array_equal(a, b), f"{phase} changed {name}"
    with pytest.raises(ref.UserError, match="unknown phase"):
        trainer.run_epoch(order, upto="everything")


def test_trainers_on_different_thread_counts_take_turns():
    """PyTorch's thread count is global: each trainer sets its own at every epoch, so that the timing rounds
    can alternate a one-thread trainer with one on the default count."""
    import torch
    w = make_workload("light", hidden=4, epochs=1)
    params = ref.init_params(*w.sizes, seed=0)
    order = ref.epoch_orders(w.data.X_train.shape[0], 1, 0)[0]
    default = torch_baseline.make_trainer(params, w.data, w.config)
    single = torch_baseline.make_trainer(params, w.data, replace(w.config, threads=1))
    for trainer, threads in ((default, torch_baseline.default_threads()), (single, 1), (default, None)):
        trainer.run_epoch(order)
        expected = threads or torch_baseline.default_threads()
        assert torch.get_num_threads() == trainer.stats["threads"] == expected
