"""The host side every kernel version shares: the device-resident run, workspaces, and the version interface.

Letters: N samples, B minibatch rows (``nrows``), T time steps, D input features, H hidden units, Y outputs.

A kernel version is one file (``v1.py``, ``v2.py``, ...) holding its kernels and a subclass of
``KernelVersion``; the trainer picks the class from its registry (``trainer.KERNEL_VERSIONS``)
and calls only this surface:

    cls.number, cls.description        its number for life and one line for results files
    cls.kernels_for(dtype)             its own kernels compiled for dtype (ptx_check compiles them all)
    cls.check_sizes(D, H, Y, dtype)    UserError before anything is allocated when the model cannot run
    cls.launches_per_minibatch(T)      the launches it documents: those of one ``minibatch`` call and of
    cls.launches_per_validation(T, n_valid, batch_size)     one ``validate`` call (tests hold it to them)
    version = cls(run)                 allocates every workspace it will use (an epoch allocates nothing)
    version.minibatch(k, off, nrows, phase)   forward, loss into losses[k], BPTT (phase >= BACKWARD),
                                              SGD (phase UPDATE), for the rows order[off:off + nrows]
    version.validate()                 the validation loss into losses[-1]; never updates parameters
    version.forward(batch) -> Workspace   forward and head of ``batch``'s rows, caches filled (predict)
    version.workspace(nrows)           the caches of nrows-row minibatches (tests read them)

Adding a version: write ``vN.py`` with its kernels and a ``KernelVersion`` subclass, then add one
entry to ``trainer.KERNEL_VERSIONS`` (and its line to the package docstring).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from numba import cuda

from parallel_lstm.lstm_numpy.contract import BACKWARD, UPDATE, Dataset, TrainConfig, batch_bounds, check_task, loss_terms
from parallel_lstm.lstm_numpy.params import Params

from .arguments import Batch, Caches, EpochState, ParamArrays, SgdSettings
from .device import Launcher
from .device_code import BLOCK, REDUCE_THREADS, blocks, shared_kernels


class DeviceRun:
    """Everything the kernels work on, resident on the device from construction on (one per trainer).

    params, grads (ParamArrays); train, valid (Batch over each split; ``train.order`` is uploaded
    once per epoch); state (EpochState); settings (SgdSettings); valid_rowloss (N_valid,);
    sizes T, D, H, Y, the task code, the minibatch bounds and the shared kernels for the dtype.
    """

    def __init__(self, params: Params, data: Dataset, config: TrainConfig, launcher: Launcher):
        L = self.launcher = launcher
        self.dtype = params.dtype
        self.D, self.H, self.Y = params.sizes
        self.T = data.X_train.shape[1]
        self.task_name = config.task
        self.task = check_task(config.task)
        self.batch_size = config.batch_size
        self.n_train, self.n_valid = data.X_train.shape[0], data.X_valid.shape[0]
        self.n_params = sum(a.size for a in params.arrays())
        self.bounds = batch_bounds(self.n_train, config.batch_size)
        self.n_batches = self.bounds.size - 1
        self.shared = shared_kernels(self.dtype)

        self.params = ParamArrays(*(L.to_device(a) for a in params.arrays()))
        self.grads = ParamArrays(*(cuda.device_array(a.shape, self.dtype) for a in params.arrays()))
        X_train, Y_train = L.to_device(data.X_train), L.to_device(data.Y_train)
        X_valid, Y_valid = L.to_device(data.X_valid), L.to_device(data.Y_valid)
        self.valid = Batch(X_valid, Y_valid, L.to_device(np.arange(self.n_valid, dtype=np.int64)), 0, self.n_valid)
        self.train = Batch(X_train, Y_train, cuda.device_array(self.n_train, np.int64), 0, self.n_train)
        self.state = EpochState(losses=cuda.device_array(self.n_batches + 1, np.float64),
                                status=cuda.device_array(1, np.int32), counter=cuda.device_array(1, np.int32),
                                scale=cuda.device_array(1, self.dtype),
                                partial=cuda.device_array(blocks(self.n_params, REDUCE_THREADS), self.dtype))
        clip = config.clip_norm
        self.settings = SgdSettings(float(config.lr), 0 if clip is None else 1, 0.0 if clip is None else float(clip))
        self.valid_rowloss = cuda.device_array(self.n_valid, self.dtype)

    def loss_terms(self, nrows: int) -> int:
        """The loss denominator of nrows rows (contract.loss_terms): how many terms the mean runs over."""
        return loss_terms(self.task_name, nrows, self.T, self.Y)

    def zeros(self, *shape):
        """A device array of zeros, filled on the device (one launch)."""
        array = cuda.device_array(shape, self.dtype)
        flat = array.reshape(-1)
        self.launcher.launch(self.shared.fill, blocks(flat.shape[0], BLOCK), BLOCK, flat, 0.0)
        return array

    def epoch_begin(self) -> None:
        """Losses to NaN, stop flag and ticket counter to 0 (one launch)."""
        self.launcher.launch(self.shared.epoch_begin, blocks(self.n_batches + 1, BLOCK), BLOCK, self.state)


class Workspace:
    """Device caches for minibatches of ``nrows`` rows (shapes: arguments.Caches); versions add their own."""

    def __init__(self, run: DeviceRun, nrows: int):
        T, H, Y = run.T, run.H, run.Y
        zeros = run.zeros
        self.nrows = nrows
        self.caches = Caches(gates=zeros(T, nrows, 4 * H),
                             c=zeros(T + 1, nrows, H),      # c[0] = 0 stays zero: no kernel writes it
                             h=zeros(T + 1, nrows, H),      # h[0] likewise
                             tanh_c=zeros(T, nrows, H),
                             dz=zeros(T, nrows, 4 * H),
                             dout=zeros(T, nrows, Y))       # regression uses dout[T-1] only
        self.rowloss = zeros(nrows)
        self.dc_next = zeros(nrows, H)

    def compared(self) -> dict:
        """The device arrays tests compare with the reference, by name."""
        return {**self.caches._asdict(), "rowloss": self.rowloss}


class KernelVersion:
    """Base of every kernel version; the surface the trainer calls is in the module docstring."""

    number = 0
    description = ""
    workspace_class = Workspace

    @staticmethod
    def kernels_for(dtype) -> SimpleNamespace:
        raise NotImplementedError

    @classmethod
    def check_sizes(cls, D: int, H: int, Y: int, dtype) -> None:
        """Raise UserError when this version cannot run these sizes; most versions run any."""

    @staticmethod
    def launches_per_minibatch(T: int) -> int:
        raise NotImplementedError

    @staticmethod
    def launches_per_validation(T: int, n_valid: int, batch_size: int) -> int:
        raise NotImplementedError

    def __init__(self, run: DeviceRun):
        self.run = run
        self.kernels = self.kernels_for(run.dtype)   # this version's own kernels; run.shared has the rest
        self.workspaces: dict[int, Workspace] = {}
        for nrows in sorted(self.workspace_rows()):   # all allocated now, so no epoch pays for (or counts) one
            self.workspace(nrows)

    def workspace_rows(self) -> set[int]:
        """The minibatch sizes this version needs workspaces for: the training minibatches'."""
        return set(np.diff(self.run.bounds).tolist())

    def workspace(self, nrows: int) -> Workspace:
        if nrows not in self.workspaces:
            self.workspaces[nrows] = self.workspace_class(self.run, nrows)
        return self.workspaces[nrows]

    def minibatch(self, k: int, off: int, nrows: int, phase: int) -> None:
        raise NotImplementedError

    def forward_rows(self, ws, batch: Batch, rowloss, row_off: int) -> None:
        """The forward pass and loss of batch's rows without gradients, into ws and rowloss[row_off:]."""
        raise NotImplementedError

    def validate(self) -> None:
        """Every validation chunk of batch_size rows into valid_rowloss, then the validation loss."""
        run = self.run
        for off in range(0, run.n_valid, run.batch_size):
            batch = run.valid.rows(off, min(run.batch_size, run.n_valid - off))
            self.forward_rows(self.workspace(batch.nrows), batch, run.valid_rowloss, off)
        self.validation_loss()

    def forward(self, batch: Batch) -> Workspace:
        ws = self.workspace(batch.nrows)
        self.forward_rows(ws, batch, ws.rowloss, 0)
        return ws

    def validation_loss(self) -> None:
        """losses[-1] = the mean of valid_rowloss, written even after a stop (one launch)."""
        run = self.run
        run.launcher.launch(run.shared.loss_reduce, 1, REDUCE_THREADS, run.valid_rowloss, run.n_valid,
                            run.loss_terms(run.n_valid), run.state, run.n_batches, 0, 1)


class StepwiseWorkspace(Workspace):
    """Adds what the row-per-thread head writes: outputs (T, B, Y) and dh_head (T, B, H)."""

    def __init__(self, run: DeviceRun, nrows: int):
        super().__init__(run, nrows)
        self.dh_head = run.zeros(run.T, nrows, run.H)
        self.outputs = run.zeros(run.T, nrows, run.Y)

    def compared(self) -> dict:
        return {**super().compared(), "dh_head": self.dh_head}


class StepwiseVersion(KernelVersion):
    """Versions whose forward and BPTT launch per time step (v1, v2): the minibatch and validation
    sequences they share. A subclass provides ``forward_steps`` and ``backward``."""

    workspace_class = StepwiseWorkspace

    def workspace_rows(self) -> set[int]:
        """Training minibatches and the validation chunks of batch_size rows."""
        return super().workspace_rows() | set(np.diff(batch_bounds(self.run.n_valid, self.run.batch_size)).tolist())

    def forward_steps(self, ws, batch: Batch) -> None:
        """The recurrence over T steps for batch's rows, into ws.caches."""
        raise NotImplementedError

    def backward(self, ws, batch: Batch) -> None:
        """BPTT after ``head`` wrote dout and dh_head: dz, then every gradient into run.grads."""
        raise NotImplementedError

    def head(self, ws, batch: Batch, rowloss, row_off: int, with_grad: bool) -> None:
        """The row-per-thread head: outputs, rowloss[row_off:], and with_grad dout and dh_head (one launch)."""
        run = self.run
        run.launcher.launch(run.shared.head_rows, blocks(batch.nrows, BLOCK), BLOCK, batch, run.task,
                            1 if with_grad else 0, run.loss_terms(batch.nrows), run.params, ws.caches,
                            ws.outputs, ws.dh_head, rowloss, row_off)

    def forward_rows(self, ws, batch: Batch, rowloss, row_off: int) -> None:
        self.forward_steps(ws, batch)
        self.head(ws, batch, rowloss, row_off, with_grad=False)

    def minibatch(self, k: int, off: int, nrows: int, phase: int) -> None:
        run = self.run
        launch, shared = run.launcher.launch, run.shared
        ws, batch = self.workspace(nrows), run.train.rows(off, nrows)
        self.forward_steps(ws, batch)
        self.head(ws, batch, ws.rowloss, 0, with_grad=phase >= BACKWARD)
        if phase >= BACKWARD:
            self.backward(ws, batch)
        stop = 1 if phase >= BACKWARD else 0   # the reference stops at a non-finite loss only when it trains
        launch(shared.loss_reduce, 1, REDUCE_THREADS, ws.rowloss, nrows, run.loss_terms(nrows), run.state, k, stop, 0)
        if phase == UPDATE:
            launch(shared.clip_scale, 1, REDUCE_THREADS, run.grads, run.settings, run.state)
            launch(shared.sgd, blocks(run.n_params, BLOCK), BLOCK, run.params, run.grads, run.settings, run.state)
