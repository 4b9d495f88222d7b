"""The peer baseline: PyTorch's ``nn.LSTM`` trained exactly as our backends train, for a side-by-side row.

PyTorch is optional (``pip install torch==2.13.0`` gives the CPU build); nothing else in the project
needs it. This module has the surface of a backend package (``make_trainer``, ``train``,
``loss_and_grads``, ``predict``, ``is_available``, ``describe``), so the harness runs it like one and
checks its losses against the reference by the same rule:

- the same initial weights: our layout is PyTorch's (``W_ih`` = ``weight_ih_l0``, ``W_hh`` =
  ``weight_hh_l0``, gate blocks i, f, g, o); our one bias ``b`` is ``bias_ih_l0``, and ``bias_hh_l0``
  is held at zero (not trained), so that SGD moves one bias, as ours does;
- the same minibatch order (the shared epoch loop hands it over), the same heads and loss means,
  the same SGD ``p -= lr * scale * g`` with the same global-norm clipping (computed here, because
  ``clip_grad_norm_`` adds 1e-6 to the norm);
- on a GPU: cuDNN's LSTM with TF32 disabled (full float32/float64 products, for parity); on a CPU:
  PyTorch's own kernels (oneDNN/MKL), on ``config.threads`` threads when given, else on PyTorch's
  default count. PyTorch's thread count is global to the process, so each trainer sets its own at the
  start of every epoch (as numba_cpu does): trainers on different counts can take turns.

Letters: B batch, T time steps, D input features, H hidden units, Y outputs.
"""
from __future__ import annotations

import numpy as np

from parallel_lstm.lstm_numpy.contract import (FORWARD, REGRESSION, UPDATE, Dataset, TrainConfig, batch_bounds, check_batch,
                                 check_phase, check_task, train_with)
from parallel_lstm.lstm_numpy.params import Params

INSTALL_HINT = "PyTorch is not installed; install the CPU build with `pip install torch==2.13.0` to add the torch row."


def _torch():
    import torch
    return torch


def is_available() -> str | None:
    """None when PyTorch can be imported, else why not and how to fix it."""
    try:
        _torch()
    except ImportError:
        return INSTALL_HINT
    return None


_DEFAULT_THREADS: list[int] = []


def default_threads() -> int:
    """PyTorch's thread count before any trainer changed it."""
    if not _DEFAULT_THREADS:
        _DEFAULT_THREADS.append(_torch().get_num_threads())
    return _DEFAULT_THREADS[0]


def _device():
    torch = _torch()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe() -> dict:
    """Facts for results files: versions, device, and the numeric settings that matter for parity."""
    torch = _torch()
    device = _device()
    facts = {"backend": "torch", "torch": torch.__version__, "device": str(device),
             "threads": default_threads()}
    if device.type == "cuda":
        facts.update(gpu=torch.cuda.get_device_name(device), cudnn=torch.backends.cudnn.version(),
                     tf32="disabled")
    else:
        facts["mkldnn"] = bool(torch.backends.mkldnn.is_available())
    return facts


class TorchModel:
    """nn.LSTM (one layer, batch first) and nn.Linear holding a copy of ``params`` on the device."""

    def __init__(self, params: Params):
        torch = _torch()
        torch.backends.cuda.matmul.allow_tf32 = False      # parity: no reduced-precision products
        torch.backends.cudnn.allow_tf32 = False
        D, H, Y = params.sizes
        self.device = _device()
        self.dtype = torch.float64 if params.dtype == np.float64 else torch.float32
        self.lstm = torch.nn.LSTM(D, H, batch_first=True).to(self.device, self.dtype)
        self.head = torch.nn.Linear(H, Y).to(self.device, self.dtype)
        with torch.no_grad():
            for target, value in ((self.lstm.weight_ih_l0, params.W_ih), (self.lstm.weight_hh_l0, params.W_hh),
                                  (self.lstm.bias_ih_l0, params.b), (self.head.weight, params.W_y),
                                  (self.head.bias, params.b_y)):
                target.copy_(self.tensor(value))
            self.lstm.bias_hh_l0.zero_()
        self.lstm.bias_hh_l0.requires_grad_(False)
        # in Params order: W_ih, W_hh, b, W_y, b_y
        self.trained = [self.lstm.weight_ih_l0, self.lstm.weight_hh_l0, self.lstm.bias_ih_l0,
                        self.head.weight, self.head.bias]

    def tensor(self, array, dtype=None):
        return _torch().as_tensor(np.ascontiguousarray(array), device=self.device, dtype=dtype or self.dtype)

    def loss(self, X, targets, task_code: int):
        """X (B, T, D) tensor; targets (B, Y) float or (B, T) int64 -> the mean loss (a 0-d tensor)."""
        torch = _torch()
        h, _ = self.lstm(X)                                      # (B, T, H)
        if task_code == REGRESSION:
            return torch.nn.functional.mse_loss(self.head(h[:, -1]), targets)
        logits = self.head(h)                                    # (B, T, Y)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def sgd_step(self, lr: float, clip_norm: float | None) -> None:
        """p -= lr * scale * g, scale = clip_norm / global norm when the norm exceeds clip_norm."""
        torch = _torch()
        with torch.no_grad():
            scale = 1.0
            if clip_norm is not None:
                norm = float(torch.sqrt(sum(torch.sum(p.grad.double() ** 2) for p in self.trained)))
                if norm > clip_norm:
                    scale = clip_norm / norm
            for p in self.trained:
                p -= (lr * scale) * p.grad

    def host_params(self) -> Params:
        return Params(*(p.detach().cpu().numpy().copy() for p in self.trained))


class TorchTrainer:
    """The Trainer of lstm_numpy.contract on PyTorch: data on the device, one autograd step per minibatch."""

    def __init__(self, params: Params, data: Dataset, config: TrainConfig):
        torch = _torch()
        self.threads = config.threads or default_threads()
        torch.set_num_threads(self.threads)
        self.config = config
        self.task = check_task(config.task)
        self.model = TorchModel(params)
        target_dtype = self.model.dtype if self.task == REGRESSION else torch.int64
        m = self.model
        self.X, self.Y = m.tensor(data.X_train), m.tensor(data.Y_train, target_dtype)
        self.X_valid, self.Y_valid = m.tensor(data.X_valid), m.tensor(data.Y_valid, target_dtype)
        self.stats = describe()

    def run_epoch(self, order: np.ndarray, upto: str = "update") -> tuple[np.ndarray, float]:
        torch = _torch()
        phase = check_phase(upto)
        torch.set_num_threads(self.threads)
        self.stats["threads"] = self.threads
        bounds = batch_bounds(order.size, self.config.batch_size)
        rows_all = torch.as_tensor(order, device=self.model.device)
        losses = np.full(bounds.size - 1, np.nan)
        for k in range(bounds.size - 1):
            rows = rows_all[bounds[k]:bounds[k + 1]]
            for p in self.model.trained:
                p.grad = None
            with torch.set_grad_enabled(phase != FORWARD):
                loss = self.model.loss(self.X[rows], self.Y[rows], self.task)
            losses[k] = float(loss.detach())     # a host copy: also synchronises a GPU
            if phase == FORWARD:
                continue
            if not np.isfinite(losses[k]):
                break
            loss.backward()
            if phase == UPDATE:
                self.model.sgd_step(self.config.lr, self.config.clip_norm)
        with torch.no_grad():
            valid = float(self.model.loss(self.X_valid, self.Y_valid, self.task))
        return losses, valid

    def host_params(self) -> Params:
        return self.model.host_params()


make_trainer = TorchTrainer


def train(params: Params, data: Dataset, config: TrainConfig, progress=None):
    """Train nn.LSTM in the shared epoch loop; see lstm_numpy.contract.train_with."""
    return train_with(make_trainer, params, data, config, progress)


def loss_and_grads(params: Params, X, Y, task: str) -> tuple[float, Params]:
    """Loss and gradients of one batch by autograd. X (B, T, D); Y (B, Y) or (B, T) int."""
    torch = _torch()
    code = check_task(task)
    X, Y = check_batch(params, X, Y, task)
    model = TorchModel(params)
    loss = model.loss(model.tensor(X), model.tensor(Y, model.dtype if code == REGRESSION else torch.int64), code)
    loss.backward()
    return float(loss.detach()), Params(*(p.grad.detach().cpu().numpy().copy() for p in model.trained))


def predict(params: Params, X, task: str = "regression") -> np.ndarray:
    """Regression: predictions (B, Y). Classification: class probabilities (B, T, Y)."""
    torch = _torch()
    code = check_task(task)
    X, _ = check_batch(params, X, None, task)
    model = TorchModel(params)
    with torch.no_grad():
        h, _ = model.lstm(model.tensor(X))
        if code == REGRESSION:
            return model.head(h[:, -1]).cpu().numpy()
        return torch.softmax(model.head(h), dim=-1).cpu().numpy()
