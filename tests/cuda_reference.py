"""What the CUDA tests compare device buffers with, derived from the reference (shared by the CUDA test files)."""
from __future__ import annotations

import numpy as np

from parallel_lstm import lstm_numpy as ref
def reference_dout(params, h, Y, task):
    """The head's gradient on its outputs, time-major (T, B, Y) as the device stores it."""
    out = ref.head_forward(params, h, task)
    T, B = h.shape[0] - 1, h.shape[1]
    dout = np.zeros((T, B, params.W_y.shape[0]))
    if task == "regression":
        dout[-1] = 2.0 / out.size * (out - Y)
    else:
        p = np.exp(ref.model.log_softmax(out))
        p[np.arange(B)[:, None], np.arange(T)[None, :], Y] -= 1.0
        dout[:] = (p / (B * T)).transpose(1, 0, 2)
    return dout
