"""The reference LSTM: readable, vectorised NumPy. Never tuned at the cost of clarity.

Letters: B batch, T time steps, D input features, H hidden units, Y outputs.

Cell, for each step t (sigma = logistic sigmoid), gate blocks in the order i, f, g, o:

    z_t = W_ih x_t + W_hh h_{t-1} + b                    (B, 4H)
    i, f, g, o = sigma(z_i), sigma(z_f), tanh(z_g), sigma(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)                                  h_0 = c_0 = 0

Heads on top of h:
    regression      many-to-one:  yhat = W_y h_T + b_y (B, Y), loss = mean over B, Y of (yhat - y)^2
    classification  many-to-many: logits_t = W_y h_t + b_y (B, T, Y),
                    loss = softmax cross-entropy, mean over B and T

Every backend computes exactly these functions; the fast ones are checked against this file.

The public entry points (``loss_and_grads``, ``loss_only``, ``predict``) validate their input with
``contract.check_batch``; the reference trainer calls the unchecked ``batch_loss_and_grads`` and
``batch_loss``, its data having been checked once by ``train_with``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .contract import REGRESSION, check_batch, check_task
from .params import Params


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic sigmoid written with tanh: same values as 1/(1+exp(-x)), never overflows."""
    return 0.5 * np.tanh(0.5 * x) + 0.5


class Cache(NamedTuple):
    """What the backward pass needs from the forward pass (time-major, fixed shapes).

    X (B, T, D); h (T+1, B, H) with h[0] = 0; c (T+1, B, H) with c[0] = 0;
    gates (T, B, 4H) holding the activated i, f, g, o; tanh_c (T, B, H) = tanh(c[1:]).
    """

    X: np.ndarray
    h: np.ndarray
    c: np.ndarray
    gates: np.ndarray
    tanh_c: np.ndarray


def lstm_forward(params: Params, X: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Run the cell over all T steps.

    X (B, T, D) -> h (T+1, B, H) (h[0] is the zero initial state), cache.
    """
    B, T, _ = X.shape
    H = params.W_hh.shape[1]
    dtype = params.dtype
    # The input projection does not depend on h, so it is done for all T at once.
    x_proj = X @ params.W_ih.T + params.b                       # (B, T, 4H)
    h = np.zeros((T + 1, B, H), dtype)
    c = np.zeros((T + 1, B, H), dtype)
    gates = np.empty((T, B, 4 * H), dtype)
    tanh_c = np.empty((T, B, H), dtype)
    for t in range(T):
        z = x_proj[:, t] + h[t] @ params.W_hh.T                 # (B, 4H)
        gates[t, :, :2 * H] = sigmoid(z[:, :2 * H])             # i, f
        gates[t, :, 2 * H:3 * H] = np.tanh(z[:, 2 * H:3 * H])   # g
        gates[t, :, 3 * H:] = sigmoid(z[:, 3 * H:])             # o
        i, f, g, o = np.split(gates[t], 4, axis=1)              # each (B, H)
        c[t + 1] = f * c[t] + i * g
        tanh_c[t] = np.tanh(c[t + 1])
        h[t + 1] = o * tanh_c[t]
    return h, Cache(X, h, c, gates, tanh_c)


def gate_gradients(params: Params, dh: np.ndarray, cache: Cache) -> np.ndarray:
    """Backpropagation through time, step by step the mirror of ``lstm_forward``.

    dh (T, B, H): the head's gradient on h_1..h_T.
    Returns dz (T, B, 4H): the gradient on the gate pre-activations z_t.
    """
    _, h, c, gates, tanh_c = cache
    T, B, H = dh.shape
    dz = np.empty((T, B, 4 * H), params.dtype)
    dh_next = np.zeros((B, H), params.dtype)                    # from step t+1 through W_hh
    dc_next = np.zeros((B, H), params.dtype)                    # from step t+1 through f
    for t in reversed(range(T)):
        i, f, g, o = np.split(gates[t], 4, axis=1)
        dh_t = dh[t] + dh_next
        # backprop h = o * tanh(c)
        do = dh_t * tanh_c[t]
        dc = dc_next + dh_t * o * (1.0 - tanh_c[t] ** 2)
        # backprop c = f * c_prev + i * g
        di = dc * g
        dg = dc * i
        df = dc * c[t]
        dc_next = dc * f
        # backprop the activations: sigma' = s(1-s), tanh' = 1-g^2
        dz[t, :, :H] = di * i * (1.0 - i)
        dz[t, :, H:2 * H] = df * f * (1.0 - f)
        dz[t, :, 2 * H:3 * H] = dg * (1.0 - g * g)
        dz[t, :, 3 * H:] = do * o * (1.0 - o)
        # backprop z = ... + W_hh h_prev
        dh_next = dz[t] @ params.W_hh                           # (B, H)
    return dz


def weight_gradients(dz: np.ndarray, cache: Cache):
    """Sum the per-step gradients over T and B.

    dz (T, B, 4H) -> dW_ih (4H, D), dW_hh (4H, H), db (4H,).
    """
    T, B, H4 = dz.shape
    dz_rows = dz.reshape(T * B, H4)
    dW_ih = dz_rows.T @ cache.X.transpose(1, 0, 2).reshape(T * B, -1)  # (4H, D)
    dW_hh = dz_rows.T @ cache.h[:-1].reshape(T * B, H4 // 4)            # (4H, H)
    db = dz_rows.sum(axis=0)                                             # (4H,)
    return dW_ih, dW_hh, db


def lstm_backward(params: Params, dh: np.ndarray, cache: Cache):
    """BPTT: dh (T, B, H) -> dW_ih (4H, D), dW_hh (4H, H), db (4H,)."""
    return weight_gradients(gate_gradients(params, dh, cache), cache)


def head_forward(params: Params, h: np.ndarray, task: str) -> np.ndarray:
    """Outputs of the head. h (T+1, B, H) -> regression (B, Y); classification logits (B, T, Y)."""
    if check_task(task) == REGRESSION:
        return h[-1] @ params.W_y.T + params.b_y
    return (h[1:] @ params.W_y.T + params.b_y).transpose(1, 0, 2)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Stable log-softmax over the last axis."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def head_loss(out: np.ndarray, Y: np.ndarray, task: str) -> tuple[float, np.ndarray]:
    """The loss of the head's outputs, and what its gradient starts from.

    regression: out, Y (B, Y); mean of squares over B and Y; returns diff = out - Y (B, Y).
    classification: logits out (B, T, Y), class ids Y (B, T); mean cross-entropy over B and T;
    returns the log-probabilities (B, T, Y).
    """
    if check_task(task) == REGRESSION:
        diff = out - Y
        return float(np.mean(diff * diff)), diff
    logp = log_softmax(out)
    return float(-np.take_along_axis(logp, Y[..., None], axis=-1).mean()), logp


def head_loss_and_grads(params: Params, h: np.ndarray, Y: np.ndarray, task: str):
    """Loss and the head's gradients.

    h (T+1, B, H); Y: regression (B, Y) float, classification (B, T) int class ids.
    Returns loss, dh (T, B, H), dW_y (Y, H), db_y (Y,).
    """
    out = head_forward(params, h, task)
    loss, start = head_loss(out, Y, task)
    T1, B, H = h.shape
    dh = np.zeros((T1 - 1, B, H), params.dtype)
    if task == "regression":
        dout = (2.0 / start.size) * start                       # backprop the mean of squares
        dW_y = dout.T @ h[-1]
        db_y = dout.sum(axis=0)
        dh[-1] = dout @ params.W_y
        return loss, dh, dW_y, db_y
    one_hot = np.eye(out.shape[-1], dtype=params.dtype)[Y]      # (B, T, Y)
    # backprop softmax cross-entropy: softmax - one_hot, over the B*T terms of the mean
    dout = (np.exp(start) - one_hot) / (B * (T1 - 1))
    dout_tm = dout.transpose(1, 0, 2)                           # (T, B, Y)
    dW_y = dout_tm.reshape(-1, dout.shape[-1]).T @ h[1:].reshape(-1, H)
    db_y = dout_tm.reshape(-1, dout.shape[-1]).sum(axis=0)
    dh[:] = dout_tm @ params.W_y
    return loss, dh, dW_y, db_y


def batch_loss_and_grads(params: Params, X: np.ndarray, Y: np.ndarray, task: str) -> tuple[float, Params]:
    """``loss_and_grads`` without the input check, for data already checked."""
    h, cache = lstm_forward(params, X)
    loss, dh, dW_y, db_y = head_loss_and_grads(params, h, Y, task)
    dW_ih, dW_hh, db = lstm_backward(params, dh, cache)
    return loss, Params(dW_ih, dW_hh, db, dW_y, db_y)


def batch_loss(params: Params, X: np.ndarray, Y: np.ndarray, task: str) -> float:
    """``loss_only`` without the input check, for data already checked."""
    h, _ = lstm_forward(params, X)
    return head_loss(head_forward(params, h, task), Y, task)[0]


def loss_and_grads(params: Params, X: np.ndarray, Y: np.ndarray, task: str) -> tuple[float, Params]:
    """Loss and gradients of every parameter for one batch.

    X (B, T, D); Y (B, Y) for regression, (B, T) int for classification.
    """
    X, Y = check_batch(params, X, Y, task)
    return batch_loss_and_grads(params, X, Y, task)


def loss_only(params: Params, X: np.ndarray, Y: np.ndarray, task: str) -> float:
    """The loss without gradients (validation)."""
    X, Y = check_batch(params, X, Y, task)
    return batch_loss(params, X, Y, task)


def predict(params: Params, X: np.ndarray, task: str = "regression") -> np.ndarray:
    """Regression: predictions (B, Y). Classification: class probabilities (B, T, Y)."""
    X, _ = check_batch(params, X, None, task)
    h, _ = lstm_forward(params, X)
    out = head_forward(params, h, task)
    return out if task == "regression" else np.exp(log_softmax(out))
