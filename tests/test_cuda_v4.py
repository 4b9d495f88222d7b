"""Kernel version 4 (lstm_numba_cuda/v4.py) kernel by kernel against the reference, with several blocks.

Letters: B batch, T time steps, D input features, H hidden units, Y outputs.
On the simulator v4's tiles are CHUNK 9 samples, K_TILE 3 deep, 6 x 4 gradient tiles, 3 lanes
x 3 samples per thread: the sizes below are multiples of none of them (H=5 also splits unevenly
over the unit slices, B=7 over the sample groups, B=11 into two chunks). The simulator runs
cooperative grids of one block only, so the partition over several blocks is tested through the
per-step launches, which call the same step functions as the cooperative kernel.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
from numba import cuda

from parallel_lstm import lstm_numba_cuda as cu
from parallel_lstm import lstm_numpy as ref
from cuda_reference import reference_dout
from parallel_lstm.lstm_numba_cuda import device, v4
from parallel_lstm.lstm_numba_cuda.v4 import UnitSlices
from parallel_lstm.lstm_numba_cuda.arguments import Batch, Caches, EpochState, ParamArrays, SgdSettings
from parallel_lstm.lstm_numba_cuda.device_code import REDUCE_THREADS, shared_kernels
from parallel_lstm.lstm_numpy.checks import assert_close, assert_same_history, rtol_for
from parallel_lstm.lstm_numpy.contract import BACKWARD, FORWARD, UPDATE, check_task, epoch_orders
from parallel_lstm.lstm_numpy.model import gate_gradients, head_loss_and_grads, lstm_forward, weight_gradients

T_, D_, H_, Y_ = 4, 3, 5, 2


@pytest.fixture(autouse=True, scope="module")
def fast_simulator_thread_switching():
    """The simulator busy-polls its Python threads: a short GIL switch interval makes barriers cheap."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(previous)


class Case:
    """One minibatch of B rows read through order[off + b] from N = B + 3 rows, on the device as the
    kernels' argument groups, and the reference's forward, head, BPTT and gradients of the same rows."""

    def __init__(self, task, B, dtype=np.float64, seed=0, T=T_, D=D_, H=H_, Y=Y_):
        rng = np.random.default_rng(seed)
        self.task, self.B, self.T, self.dtype = task, B, T, np.dtype(dtype)
        self.task_code = check_task(task)
        self.rtol = rtol_for(dtype)   # the loss is a Python float also in float32
        self.params = ref.init_params(D, H, Y, seed=seed, dtype=dtype, forget_bias=0.7)
        n = B + 3
        X = rng.normal(size=(n, T, D)).astype(dtype)
        targets = rng.normal(size=(n, Y)).astype(dtype) if task == "regression" else rng.integers(0, Y, size=(n, T))
        order = rng.permutation(n).astype(np.int64)
        off = 2
        rows = order[off:off + B]
        self.X, self.Y = X[rows], targets[rows]
        self.K = v4.kernels(self.dtype)
        self.shared = shared_kernels(self.dtype)
        self.L = L = device.Launcher()
        zeros = lambda *shape: L.to_device(np.zeros(shape, dtype))   # noqa: E731
        self.batch = Batch(L.to_device(X), L.to_device(targets), L.to_device(order), off, B)
        self.p = ParamArrays(*(L.to_device(a) for a in self.params.arrays()))
        self.g = ParamArrays(*(L.to_device(np.full(a.shape, np.nan, dtype)) for a in self.params.arrays()))
        self.caches = Caches(gates=zeros(T, B, 4 * H), c=zeros(T + 1, B, H), h=zeros(T + 1, B, H),
                             tanh_c=zeros(T, B, H), dz=zeros(T, B, 4 * H), dout=zeros(T, B, Y))
        self.dc_next, self.rowloss, self.outputs = zeros(B, H), zeros(B), zeros(T, B, Y)
        # NaN: an entry of a part that no tile wrote would poison its gradient
        self.scratch = L.to_device(np.full((4, sum(a.size for a in self.params.arrays())), np.nan, dtype))
        self.state = EpochState(losses=L.to_device(np.full(2, np.nan)), status=L.to_device(np.zeros(1, np.int32)),
                                counter=L.to_device(np.zeros(1, np.int32)), scale=zeros(1), partial=zeros(64))
        self.terms = ref.loss_terms(task, B, T, Y)
        # the reference, step by step
        h, self.cache = lstm_forward(self.params, self.X)
        self.loss, dh, self.dW_y, self.db_y = head_loss_and_grads(self.params, h, self.Y, task)
        self.dout_ref = reference_dout(self.params, h, self.Y, task)
        self.dz_ref = gate_gradients(self.params, dh, self.cache)
        self.grads_ref = ref.Params(*weight_gradients(self.dz_ref, self.cache), self.dW_y, self.db_y)

    def host(self, array):
        return self.L.to_host(array)

    @staticmethod
    def settings(lr, clip_norm):
        return SgdSettings(lr, 0 if clip_norm is None else 1, clip_norm or 0.0)

    # ---- the per-step launches, in the order a minibatch makes them

    def forward(self, plan):
        for t in range(self.T):
            self.L.launch(self.K.forward_kernel, plan.grid, plan.threads, self.batch, t, self.p, self.caches,
                          shared_bytes=plan.shared_bytes)

    def head(self, plan, with_grad=1):
        self.L.launch(self.K.head_kernel, plan.grid, plan.threads, self.batch, self.task_code, with_grad, self.terms,
                      self.p, self.caches, self.outputs, self.rowloss, 0)

    def loss_reduce(self, threads, stop=1):
        self.L.launch(self.shared.loss_reduce, 1, threads, self.rowloss, self.B, self.terms, self.state, 0, stop, 0)

    def backward(self, plan):
        for t in range(self.T - 1, -1, -1):
            self.L.launch(self.K.backward_kernel, plan.grid, plan.threads, self.batch, t, self.task_code, self.p,
                          self.caches, self.dc_next, shared_bytes=plan.shared_bytes)

    def grads(self, plan):
        self.L.launch(self.K.grads_kernel, plan.grid, plan.threads, self.batch, self.task_code, self.caches,
                      self.scratch, plan.parts)
        self.L.launch(self.K.gather_kernel, plan.grid, plan.threads, self.scratch, plan.parts, self.g, self.state)

    def update(self, grid, threads, n_partial, lr, clip_norm):
        self.L.launch(self.K.update_kernel, grid, threads, n_partial, self.settings(lr, clip_norm), self.p, self.g,
                      self.state)

    def cooperative(self, phase, threads, lr=0.0, clip_norm=None, parts=2):
        plan = v4.Plan(self.params.sizes[1], self.B, self.dtype, 1, 1, threads, parts)
        self.L.launch(self.K.minibatch_kernel, plan.grid, plan.threads, self.batch, self.task_code, phase, self.terms,
                      0, self.p, self.caches, self.dc_next, self.outputs, self.rowloss, 0,
                      self.settings(lr, clip_norm), self.g, self.scratch, plan.parts, self.state,
                      shared_bytes=plan.shared_bytes)

    # ---- checks against the reference

    def check_forward(self, label):
        for name in ("gates", "c", "h", "tanh_c"):
            assert_close(f"{label} {name}", self.host(getattr(self.caches, name)), getattr(self.cache, name), self.rtol)

    def check_head(self, label, with_grad=True):
        assert_close(f"{label} row losses", self.host(self.rowloss).sum() / self.terms, self.loss, self.rtol)
        if with_grad:
            assert_close(f"{label} dout", self.host(self.caches.dout), self.dout_ref, self.rtol)

    def check_dz(self, label):
        assert_close(f"{label} dz", self.host(self.caches.dz), self.dz_ref, self.rtol)

    def check_grads(self, label):
        for (name, expected), value in zip(self.grads_ref.items(), self.g):
            assert_close(f"{label} d{name}", self.host(value), expected, self.rtol)

    def expected_update(self, lr, clip_norm):
        expected = self.params.copy()
        ref.trainer.sgd_update(expected, self.grads_ref, lr, clip_norm)
        return expected

    def check_params(self, label, expected):
        for (name, want), array in zip(expected.items(), self.p):
            assert_close(f"{label} {name}", self.host(array), want, self.rtol)


# Grids (unit slices, sample groups), threads, rows and gradient parts: H=5 over 3 slices (2, 2, 1 units),
# B=7 over 2 groups (4 and 3 rows), 8 threads (rounds of items in the gradient tiles), the T*B = 28 terms
# in 2 parts; one slice of 5 units over 4 threads (forward items in 5 rounds) with B=11 in one group
# (chunks of 9 and 2), one part; 6 slices (the last two empty), 3 groups, 3 parts (the regression head's
# 7 terms as 3, 3 and 1).
GEOMETRIES = {"3x2_t8_B7": ((3, 2), 8, 7, 2), "1x1_t4_B11": ((1, 1), 4, 11, 1), "6x3_t6_B7": ((6, 3), 6, 7, 3)}


@pytest.mark.parametrize("task", ref.TASKS)
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_per_step_kernels_match_reference_float64(task, geometry):
    """Forward steps, head, loss, backward steps, gradients and the clipped update, each
    checked against the reference as soon as it has run."""
    grid, threads, B, parts = GEOMETRIES[geometry]
    case = Case(task, B, seed=len(task) + B)
    plan = v4.Plan(H_, B, case.dtype, *grid, threads, parts)
    case.forward(plan)
    case.check_forward(geometry)
    case.head(plan)
    case.check_head(geometry)
    case.loss_reduce(2 * REDUCE_THREADS + 3)                 # more threads than reduction slots
    assert_close(f"{geometry} loss", case.host(case.state.losses)[0], case.loss, case.rtol)
    case.backward(plan)
    case.check_dz(geometry)
    case.grads(plan)
    case.check_grads(geometry)
    squares = sum(float(np.sum(g * g)) for g in case.grads_ref.arrays())
    assert_close(f"{geometry} partial sums of squares", case.host(case.state.partial)[:plan.blocks].sum(), squares)
    clip_norm = 0.5 * np.sqrt(squares)                  # the clipping branch is taken
    case.update(grid, threads, plan.blocks, 0.3, clip_norm)
    case.check_params(geometry, case.expected_update(0.3, clip_norm))


@pytest.mark.parametrize("task", ref.TASKS)
def test_per_step_kernels_match_reference_float32(task):
    B = 7
    case = Case(task, B, dtype=np.float32, seed=3)
    plan = v4.Plan(H_, B, case.dtype, 3, 2, 6, 2)
    case.forward(plan)
    case.check_forward("float32")
    case.head(plan)
    case.check_head("float32")
    case.backward(plan)
    case.check_dz("float32")
    case.grads(plan)
    case.check_grads("float32")
    case.update((2, 1), REDUCE_THREADS + 3, plan.blocks, 0.3, None)   # any grid and block size applies the update
    case.check_params("float32", case.expected_update(0.3, None))


@pytest.mark.parametrize("task", ref.TASKS)
def test_one_unit_one_row_one_step_on_a_grid_of_mostly_empty_blocks(task):
    """T = D = H = Y = B = 1 on a 2 x 2 grid: three blocks own nothing and must still reach every barrier."""
    case = Case(task, 1, seed=4, T=1, D=1, H=1, Y=2 if task == "classification" else 1)
    plan = v4.Plan(1, 1, case.dtype, 2, 2, 3, 2)     # the one term in two parts: the second is empty
    case.forward(plan)
    case.check_forward("tiny")
    case.head(plan)
    case.check_head("tiny")
    case.backward(plan)
    case.check_dz("tiny")
    case.grads(plan)
    case.check_grads("tiny")
    case.update(plan.grid, 3, plan.blocks, 0.3, None)
    case.check_params("tiny", case.expected_update(0.3, None))


def test_results_do_not_depend_on_the_geometry():
    """Different grids and block sizes sum the same terms in the same order per entry: with the same
    parts the caches and gradients agree bitwise (only the global norm's block partials differ)."""
    results = []
    for grid, threads in (((2, 3), 5), ((5, 1), 7)):
        case = Case("classification", 7, seed=11)
        plan = v4.Plan(H_, 7, case.dtype, *grid, threads, 2)
        case.forward(plan)
        case.head(plan)
        case.backward(plan)
        case.grads(plan)
        results.append([case.host(a) for a in (case.caches.h, case.caches.gates, case.caches.dz, *case.g)])
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)


def test_head_without_gradients_leaves_dout():
    case = Case("classification", 7, seed=5)
    plan = v4.Plan(H_, 7, case.dtype, 2, 2, 6)
    case.forward(plan)
    case.head(plan, with_grad=0)
    case.check_head("without gradients", with_grad=False)
    assert not case.host(case.caches.dout).any()


def test_loss_kernel_stops_at_a_non_finite_loss_and_keeps_the_flag():
    case = Case("regression", 7, seed=6)
    plan = v4.Plan(H_, 7, case.dtype, 2, 2, 6)
    case.forward(plan)
    case.head(plan)
    case.L.upload(case.rowloss, np.array([1.0, np.nan, 0, 0, 0, 0, 0]))   # a NaN row loss
    case.loss_reduce(5)
    assert np.isnan(case.host(case.state.losses)[0]) and case.host(case.state.status)[0] == 1
    case.update((2, 2), 6, 0, 0.3, None)                # no update once stopped
    case.check_params("stopped", case.params)


@pytest.mark.parametrize("task,clip", [("regression", True), ("classification", False)])
def test_cooperative_kernel_one_block_matches_reference(task, clip):
    """The one-launch minibatch (grid-wide barriers between the phases) on the one block the simulator
    runs: caches, loss, gradients and the update."""
    case = Case(task, 7, seed=8)
    squares = sum(float(np.sum(g * g)) for g in case.grads_ref.arrays())
    clip_norm = 0.5 * np.sqrt(squares) if clip else None
    case.cooperative(UPDATE, 6, lr=0.2, clip_norm=clip_norm)
    case.check_forward("cooperative")
    case.check_head("cooperative")
    assert_close("cooperative loss", case.host(case.state.losses)[0], case.loss, case.rtol)
    case.check_dz("cooperative")
    case.check_grads("cooperative")
    case.check_params("cooperative", case.expected_update(0.2, clip_norm))


@pytest.mark.parametrize("phase", [v4.VALIDATE, FORWARD, BACKWARD])
def test_cooperative_kernel_stops_at_its_phase(phase):
    case = Case("classification", 5, seed=9)
    case.cooperative(phase, 4, lr=0.2)
    case.check_head(f"phase {phase}", with_grad=phase >= BACKWARD)
    loss = case.host(case.state.losses)[0]
    assert np.isnan(loss) if phase == v4.VALIDATE else np.isclose(loss, case.loss, rtol=1e-10)
    if phase == BACKWARD:
        case.check_grads("phase 1")
    else:
        assert np.isnan(case.host(case.g.W_hh)).all()
    case.check_params(f"phase {phase}", case.params)    # only phase 2 updates


# ---------------------------------------------------------------------------- the plan

def test_plan_geometry_and_shared_memory_limit():
    for dtype in (np.float64, np.float32):
        H = v4.max_hidden(dtype)
        plan = v4.plan(T_, D_, H, Y_, 100, dtype)
        assert plan.units == 1 and plan.shared_bytes + v4.static_shared_bytes(dtype) <= v4.SHARED_MEMORY_LIMIT
        with pytest.raises(ref.UserError, match=f"H <= {H} fits\\); use kernel_version 2"):
            v4.plan(T_, D_, H + 1, Y_, 100, dtype)
    plan = v4.plan(T_, D_, H_, Y_, 7, np.float64, threads=6)
    assert plan.units * plan.slices >= H_ and plan.units * v4.LANES <= 6
    assert plan.groups == 1                             # 7 rows fit in one chunk
    assert plan.blocks < v4.grad_tiles_count(D_, H_, Y_) and plan.parts == 1   # more tiles than blocks: no split


def test_plan_on_the_gpu_geometry():
    """What the GPU constants give at the heavy and gpu workloads' sizes (computed in a process with the
    simulator off, which needs no GPU: nothing is compiled or launched)."""
    import json
    import os
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(v4.__file__)))
    script = ("import json, numpy as np; from parallel_lstm.lstm_numba_cuda import v4; "
              "p = lambda *a: (lambda q: [q.units, q.slices, q.groups, q.shared_bytes, q.parts])(v4.plan(*a)); "
              "print(json.dumps({'max32': v4.max_hidden(np.float32), 'max64': v4.max_hidden(np.float64), "
              "'gpu32': p(64, 1, 512, 1, 512, np.float32), 'gpu64': p(64, 1, 512, 1, 512, np.float64), "
              "'heavy32': p(32, 1, 128, 1, 128, np.float32), 'sim': v4.SIM}))")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                          cwd=root)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert not got["sim"]
    assert (got["max32"], got["max64"]) == (2492, 1214)     # the module docstring's numbers
    assert got["gpu32"] == [4, 128, 4, 32768, 1]            # 4 units, 512 blocks, 32 KiB of W_hh each
    assert got["gpu64"] == [2, 256, 2, 32768, 1]
    assert got["heavy32"] == [1, 128, 1, 2048, 4]           # one unit per block; 27 gradient tiles x 4 parts


# ---------------------------------------------------------------------------- whole training through the version

N_TRAIN, N_VALID, BATCH = 23, 5, 11      # minibatches of 11, 11 and 1 rows: 11 rows are two chunks, two groups


def make_data(rng, task, dtype, T=3, D=2, Y=Y_):
    n = N_TRAIN + N_VALID
    X = rng.normal(size=(n, T, D)).astype(dtype)
    targets = rng.normal(size=(n, Y)).astype(dtype) if task == "regression" else rng.integers(0, Y, size=(n, T))
    return ref.Dataset(X[:N_TRAIN], targets[:N_TRAIN], X[N_TRAIN:], targets[N_TRAIN:])


def train_both(task, dtype, clip_norm, seed):
    rng = np.random.default_rng(seed)
    data = make_data(rng, task, dtype)
    params = ref.init_params(2, H_, Y_, seed=seed, dtype=dtype, forget_bias=0.5)
    config = ref.TrainConfig(task=task, epochs=2, lr=0.5, batch_size=BATCH, seed=seed, clip_norm=clip_norm,
                             kernel_version=4)
    return cu.train(params, data, config), ref.train(params, data, config)


@pytest.mark.parametrize("task,dtype,clip_norm", [("regression", np.float64, 0.05), ("classification", np.float64, 0.05),
                                                  ("regression", np.float32, 0.05), ("classification", np.float32, None)])
def test_training_matches_reference(task, dtype, clip_norm):
    """Every epoch's losses and the final parameters: float64 within 1e-10, float32 within 1e-4; a clip norm
    this small clips every minibatch."""
    got, want = train_both(task, dtype, clip_norm, seed=len(task))
    assert want.params.dtype == np.dtype(dtype)
    if clip_norm is not None:   # the clipping branch is really taken: the initial gradient norm is larger
        data = make_data(np.random.default_rng(len(task)), task, dtype)
        params = ref.init_params(2, H_, Y_, seed=len(task), dtype=dtype, forget_bias=0.5)
        _, grads = ref.loss_and_grads(params, data.X_train[:BATCH], data.Y_train[:BATCH], task)
        assert ref.trainer.clip_scale(grads, clip_norm) < 1
    assert_same_history("v4", got, want)
    assert got.stats["kernel_version"] == 4


def test_the_trainer_plans_several_blocks_per_minibatch():
    trainer = cu.CudaTrainer(ref.init_params(2, H_, Y_), make_data(np.random.default_rng(0), "regression", np.float64),
                             ref.TrainConfig(batch_size=BATCH, kernel_version=4))
    ws = trainer.version.workspace(BATCH)
    assert ws.plan.slices > 1 and ws.plan.groups == 2 and not ws.cooperative
    assert trainer.run.state.partial.shape[0] >= max(w.plan.blocks for w in trainer.version.workspaces.values())


@pytest.fixture
def cooperative_version(monkeypatch):
    """v4 as one cooperative launch per minibatch; on the simulator that needs one block, so one block
    covers every unit (15 threads: 5 units x 3 lanes)."""
    monkeypatch.setattr(UnitSlices, "cooperative", True)
    monkeypatch.setattr(UnitSlices, "threads", 15)


@pytest.mark.parametrize("task", ref.TASKS)
def test_cooperative_training_matches_reference(task, cooperative_version):
    got, want = train_both(task, np.float64, 0.05, seed=7)
    assert_same_history("v4 cooperative", got, want)
    rng = np.random.default_rng(2)
    trainer = cu.CudaTrainer(ref.init_params(2, H_, Y_), make_data(rng, task, np.float64),
                             ref.TrainConfig(task=task, batch_size=BATCH, kernel_version=4))
    assert all(ws.cooperative and ws.plan.blocks == 1 for ws in trainer.version.workspaces.values())
    trainer.run_epoch(epoch_orders(N_TRAIN, 1, 0)[0])
    assert trainer.stats["launches_per_epoch"] == 1 + 3 * 1 + 1 * 1 + 1     # one launch per minibatch and chunk
    assert UnitSlices.launches_per_minibatch(3) == 1


def test_a_hidden_size_beyond_shared_memory_is_refused_before_anything_runs():
    H = v4.max_hidden(np.float64) + 1
    params = ref.init_params(1, H, 1)
    X, Yt = np.zeros((1, 1, 1)), np.zeros((1, 1))
    with pytest.raises(ref.UserError, match="use kernel_version 2 for this H"):
        cu.CudaTrainer(params, ref.Dataset(X, Yt, X, Yt), ref.TrainConfig(kernel_version=4))
