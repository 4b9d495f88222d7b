"""The named workloads (the table below; the README repeats it): data, model sizes and training defaults.

    seed   AirPassengers, the original project's pipeline    T=11, D=Y=3, H=50, B=7, lr 0.1   classification
    light  AirPassengers one-step forecast                   T=12, D=Y=1, H=16, B=16, lr 0.1  regression
           (300 epochs, forget-gate bias 2; not the backtest's best: see DEFAULTS)
    heavy  synthetic, N=4096 training windows                T=32, D=Y=1, H=128, B=128        regression
    gpu    synthetic, sized for an H200                      N=65536, T=64, H=512, B=512      regression

Any univariate series (``--data FILE --column NAME``) can replace AirPassengers in
``seed`` and ``light``; ``heavy`` and ``gpu`` always use the synthetic generator.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from parallel_lstm.lstm_numpy.errors import UserError
from parallel_lstm.lstm_numpy.memory import check_fits, training_bytes
from parallel_lstm.lstm_numpy.params import Params, check_sizes, init_params
from parallel_lstm.lstm_numpy.contract import Dataset, TrainConfig

from .light import DIFFERENCE, LightPipeline
from .seed import seed_dataset
from .series import airpassengers
from .synthetic import synthetic_windows, valid_count

WORKLOADS = ("seed", "light", "heavy", "gpu")

# name: (task, hidden, batch, lr, epochs, samples, seq_len, forget_bias);
# samples/seq_len None = fixed by the data. The light settings predate the backtest (parallel-lstm
# backtest, inside the months before the test period) and are kept because the recorded timing results
# use them; many settings score better on the backtest's months.
# The 10-seed backtest of 2026-11-23 scored lr 0.2, B=8 with early stopping best (reports/backtest.py),
# but that setting trains chaotically: for 4 of 10 seeds the backends' float64 trajectories separate
# beyond the 1e-10 rule, which is what this workload exists to show. The workload keeps B=16, lr 0.1.
# Its second search's winner, differencing at lags 1 and 12 (difference=(1, 12)), failed its one test-month
# evaluation at 24 steps (reports/backtest.py); the workload keeps monthly changes.
DEFAULTS = {
    "seed": ("classification", 50, 7, 0.1, 6, None, None, 0.0),
    "light": ("regression", 16, 16, 0.1, 300, None, 12, 2.0),
    "heavy": ("regression", 128, 128, 0.1, 3, 4096, 32, 0.0),
    "gpu": ("regression", 512, 512, 0.1, 3, 65536, 64, 0.0),
}


@dataclass
class Workload:
    """Everything needed to train on one workload.

    data: training and validation arrays; test: (X_test, Y_test) where the workload has a test split;
    sizes: (D, H, Y); config: training defaults; pipeline: the fitted transform (light) or series (seed).
    """

    name: str
    data: Dataset
    sizes: tuple[int, int, int]
    config: TrainConfig
    test: tuple[np.ndarray, np.ndarray] | None = None
    pipeline: object = None
    forget_bias: float = 0.0

    def initial_params(self, dtype=np.float64) -> Params:
        """The parameters every backend starts from: seeded by the config's seed."""
        return init_params(*self.sizes, seed=self.config.seed, dtype=dtype, forget_bias=self.forget_bias)

    @property
    def shapes(self) -> dict:
        """Sizes in the project's letters, for results files."""
        N, T, D = self.data.X_train.shape
        return {"N_train": N, "N_valid": self.data.X_valid.shape[0], "T": T, "D": D,
                "H": self.sizes[1], "Y": self.sizes[2], "B": self.config.batch_size}


def make_workload(name: str, *, hidden: int | None = None, batch_size: int | None = None,
                  lr: float | None = None, epochs: int | None = None, samples: int | None = None,
                  seq_len: int | None = None, seed: int = 0, series: np.ndarray | None = None,
                  forget_bias: float | None = None, transform: str | None = None, difference=None,
                  **config_options) -> Workload:
    """Build workload ``name``, any default overridden by the keyword of the same name.

    ``series`` replaces AirPassengers (seed, light); ``transform`` (light only: auto, log or
    none, default auto; see data/light.py) is recorded in ``pipeline.transform``; ``difference``
    (light only: the lags of the changes, 1 (the default), 12 or (1, 12); see data/light.py) in
    ``pipeline.difference``; ``config_options`` go to TrainConfig (clip_norm, threads, kernel_version).
    """
    if name not in DEFAULTS:
        raise UserError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}.")
    task, *defaults = DEFAULTS[name]
    given = (hidden, batch_size, lr, epochs, samples, seq_len, forget_bias)
    H, B, lr, n_epochs, N, T, forget_bias = (d if g is None else g for g, d in zip(given, defaults))
    check_sizes(hidden=H, batch_size=B, epochs=n_epochs)
    if transform is not None and name != "light":
        raise UserError(f"the {name} workload has no transform; --transform applies to light only.")
    if difference is not None and name != "light":
        raise UserError(f"the {name} workload takes no difference lag; difference applies to light only.")
    test, pipeline = None, None
    if name in ("heavy", "gpu"):
        if series is not None:
            raise UserError(f"the {name} workload uses the synthetic series; use --data with seed or light.")
        check_sizes(samples=N, seq_len=T)
        check_memory(name, N, valid_count(N), T, 1, H, 1, B)      # before the windows are generated
        arrays = synthetic_windows(N, T, seed=seed)
    else:
        values = airpassengers() if series is None else series
        if samples is not None:
            raise UserError(f"the {name} workload's size is fixed by its series; --samples applies to heavy and gpu.")
        if name == "seed":
            if seq_len is not None:
                raise UserError("the seed workload's windows are fixed at 12 tokens (T=11); --seq-len applies to light, heavy and gpu.")
            parts, pipeline = seed_dataset(values)
            arrays, test = parts[:4], parts[4:]
        else:
            check_sizes(seq_len=T)
            pipeline = LightPipeline.fit(values, window=T, transform=transform or "auto",
                                         difference=DIFFERENCE if difference is None else difference)
            parts = pipeline.split()
            arrays, test = parts[:4], parts[4:]
    data = Dataset(*arrays)
    (n_train, T, D), n_valid = data.X_train.shape, data.X_valid.shape[0]
    Y = 3 if task == "classification" else data.Y_train.shape[1]
    check_memory(name, n_train, n_valid, T, D, H, Y, B)
    config = TrainConfig(task=task, epochs=n_epochs, lr=lr, batch_size=B, seed=seed, **config_options)
    return Workload(name, data, (D, H, Y), config, test, pipeline, forget_bias)


def check_memory(name: str, n_train: int, n_valid: int, T: int, D: int, H: int, Y: int, B: int) -> None:
    """One sentence, before anything that size is allocated, when training this workload cannot fit in memory."""
    check_fits(training_bytes(n_train, n_valid, T, D, H, Y, B),
               f"the {name} workload with N={n_train}, T={T}, H={H}, B={min(B, n_train)}",
               "use a smaller --samples, --seq-len, --hidden or --batch-size")


def with_config(workload: Workload, **changes) -> Workload:
    """The same workload with some TrainConfig fields changed."""
    return replace(workload, config=replace(workload.config, **changes))
