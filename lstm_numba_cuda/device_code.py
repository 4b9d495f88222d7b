"""CUDA device code every kernel version shares, compiled per float type, and the launch geometry.

Letters: B rows of the current minibatch (``nrows``), T time steps, D input features, H hidden
units, Y outputs; FT the float type. Argument groups (ParamArrays, Batch, Caches, EpochState,
SgdSettings) and their shapes: ``arguments.py``. The equations are those of lstm_numpy/model.py.

``device_functions(dtype)``: the cell (activations, the state update and its backward mirror),
the heads (outputs, squared error, softmax cross-entropy, their backward), block reductions,
the loss record and the clip scale, and flat indexing over the five parameter arrays.
``shared_kernels(dtype)``: the kernels every version launches (epoch start, zero fill, minibatch
gather, the row-per-thread head, predictions, loss reduction, clip scale, SGD).

Shared and local arrays and typed constants need the float type at compile time, so each file's
device code is written inside a factory of FT (here ``device_functions`` and ``shared_kernels``,
``kernels`` in each version file) decorated with ``per_dtype``, which builds it once per dtype. Rules kept everywhere so that the kernels also run on the simulator and do not depend on
the launch configuration: every global access guarded, no early return before ``syncthreads``,
each shared array declared on its own line, loop counts from the problem size, reductions in a
fixed order, no float atomics, and the reference's formulas in the reference's association order
(sigmoid = 0.5*tanh(0.5x)+0.5, head outputs = (sum of products) + bias).
"""
from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numba
import numpy as np
from numba import cuda
from numba.np.numpy_support import as_dtype

from parallel_lstm.lstm_numpy.contract import CLASSIFICATION, REGRESSION

from .arguments import BATCH, CACHES, EPOCH, FLOATS_1D, FLOATS_3D, INT, PARAMS, REAL, SGD
from .device import simulator_enabled

# Launch geometry. The simulator runs every thread as a Python thread, so it gets small blocks;
# correctness never depends on these (loops are derived from problem sizes; tests use sizes
# that are not multiples of them), only speed does.
SIM = simulator_enabled()
TILE = 4 if SIM else 16                # matmul tile edge (v1): TILE*TILE threads per block
BLOCK = 8 if SIM else 128               # threads per block of elementwise kernels
REDUCE_THREADS = 8 if SIM else 256      # threads of one-block reductions; a power of two
PERSISTENT_THREADS = 8 if SIM else 256  # default threads per sample block of the v3 persistent kernel

NAN = float("nan")

FLOAT_TYPES = {np.dtype(np.float64): numba.float64, np.dtype(np.float32): numba.float32}


def blocks(n: int, per_block: int) -> int:
    """Blocks of ``per_block`` threads that cover n items (at least one)."""
    return max(1, -(-n // per_block))


def per_dtype(build):
    """Decorator: ``build(FT)`` runs once per float type; call the result with a NumPy dtype or a Numba float type."""
    cache: dict[np.dtype, SimpleNamespace] = {}

    @functools.wraps(build)
    def built_for(dtype) -> SimpleNamespace:
        key = as_dtype(dtype) if isinstance(dtype, numba.types.Type) else np.dtype(dtype)
        if key not in cache:
            cache[key] = build(FLOAT_TYPES[key])
        return cache[key]
    return built_for


@per_dtype
def device_functions(FT) -> SimpleNamespace:
    """The device functions of every version for float type FT (see the module docstring)."""
    ZERO, HALF, ONE, TWO = FT(0.0), FT(0.5), FT(1.0), FT(2.0)
    NEG_INF = FT(-math.inf)   # typed constants keep float32 code free of float64 arithmetic

    # ------------------------------------------------------------------ the cell

    @cuda.jit(device=True)
    def sigmoid(x):
        return HALF * math.tanh(HALF * x) + HALF

    @cuda.jit(device=True)
    def activate(z, gate):
        """Gate order i, f, g, o: tanh for g (gate 2), sigmoid for the others."""
        if gate == 2:
            return math.tanh(z)
        return sigmoid(z)

    @cuda.jit(device=True)
    def cell_state(gi, gf, gg, go, c_prev):
        """One unit's state update from its activated gates: (c_t, tanh(c_t), h_t)."""
        c_new = gf * c_prev + gi * gg          # c_t = f * c_{t-1} + i * g
        tc = math.tanh(c_new)
        return c_new, tc, go * tc              # h_t = o * tanh(c_t)

    @cuda.jit(device=True)
    def cell_backward(dh_t, dc_next, gi, gf, gg, go, tc, c_prev):
        """The mirror of ``cell_state`` and the activations for one unit: (dz_i, dz_f, dz_g, dz_o, dc_prev).

        dh_t: gradient on h_t (head + next step); dc_next: gradient on c_t from step t+1.
        """
        # backprop h = o * tanh(c)
        d_o = dh_t * tc
        dc = dc_next + dh_t * go * (ONE - tc * tc)
        # backprop c = f * c_prev + i * g
        d_i = dc * gg
        d_g = dc * gi
        d_f = dc * c_prev
        # backprop the activations: sigma' = s(1-s), tanh' = 1-g^2
        return (d_i * gi * (ONE - gi), d_f * gf * (ONE - gf), d_g * (ONE - gg * gg), d_o * go * (ONE - go),
                dc * gf)

    @cuda.jit(device=True)
    def input_gates(X, n, t, k, W_ih, H):
        """(W_ih x)[k] of each gate for input row n at step t (X (N, T, D), W_ih (4H, D)), the bias left out:
        (x_i, x_f, x_g, x_o), each summed over d in order."""
        x_i = ZERO
        x_f = ZERO
        x_g = ZERO
        x_o = ZERO
        for d in range(X.shape[2]):
            x = X[n, t, d]
            x_i += W_ih[k, d] * x
            x_f += W_ih[H + k, d] * x
            x_g += W_ih[2 * H + k, d] * x
            x_o += W_ih[3 * H + k, d] * x
        return x_i, x_f, x_g, x_o

    @cuda.jit(device=True)
    def cell_forward_at(caches, t, b, k, z_i, z_f, z_g, z_o):
        """Unit k of row b at step t from its pre-activations, into the caches: gates[t], c[t+1], tanh_c[t], h[t+1]."""
        H = caches.h.shape[2]
        gi = sigmoid(z_i)
        gf = sigmoid(z_f)
        gg = math.tanh(z_g)
        go = sigmoid(z_o)
        caches.gates[t, b, k] = gi
        caches.gates[t, b, H + k] = gf
        caches.gates[t, b, 2 * H + k] = gg
        caches.gates[t, b, 3 * H + k] = go
        c_new, tc, h_new = cell_state(gi, gf, gg, go, caches.c[t, b, k])
        caches.c[t + 1, b, k] = c_new
        caches.tanh_c[t, b, k] = tc
        caches.h[t + 1, b, k] = h_new

    @cuda.jit(device=True)
    def cell_cache(caches, t, b, k):
        """What the backward step of unit k of row b at step t reads: (i, f, g, o, tanh(c_t), c_{t-1})."""
        H = caches.c.shape[2]
        return (caches.gates[t, b, k], caches.gates[t, b, H + k], caches.gates[t, b, 2 * H + k],
                caches.gates[t, b, 3 * H + k], caches.tanh_c[t, b, k], caches.c[t, b, k])

    @cuda.jit(device=True)
    def cell_backward_at(caches, dc_next, t, b, k, dh_t):
        """Backprop unit k of row b at step t given dh_t: dz[t, b] for unit k and dc_next[b, k] (in place)."""
        H = caches.c.shape[2]
        gi, gf, gg, go, tc, c_prev = cell_cache(caches, t, b, k)
        dz_i, dz_f, dz_g, dz_o, dc_prev = cell_backward(dh_t, dc_next[b, k], gi, gf, gg, go, tc, c_prev)
        dc_next[b, k] = dc_prev
        caches.dz[t, b, k] = dz_i
        caches.dz[t, b, H + k] = dz_f
        caches.dz[t, b, 2 * H + k] = dz_g
        caches.dz[t, b, 3 * H + k] = dz_o

    # ------------------------------------------------------------------ the heads

    @cuda.jit(device=True)
    def head_output(h_t, W_y, b_y, y):
        """Output y of the head for hidden state h_t (H,): W_y[y] . h_t + b_y[y], products summed first."""
        acc = ZERO
        for k in range(W_y.shape[1]):
            acc += h_t[k] * W_y[y, k]
        return acc + b_y[y]

    @cuda.jit(device=True)
    def log_softmax_shift(out):
        """(max, log sum exp(out - max)) of a row of logits: log softmax(out)[y] = (out[y] - max) - log_norm."""
        biggest = NEG_INF
        for y in range(out.shape[0]):
            biggest = max(biggest, out[y])
        expsum = ZERO
        for y in range(out.shape[0]):
            expsum += math.exp(out[y] - biggest)
        return biggest, math.log(expsum)

    @cuda.jit(device=True)
    def squared_error(out, target, with_grad, terms, dout, t, b):
        """sum_y (out_y - target_y)^2; with_grad: dout[t, b] = 2 (out - target) / terms (backprop the mean)."""
        loss = ZERO
        for y in range(out.shape[0]):
            diff = out[y] - target[y]
            loss += diff * diff
            if with_grad:
                dout[t, b, y] = (TWO / FT(terms)) * diff
        return loss

    @cuda.jit(device=True)
    def cross_entropy(out, cls, with_grad, terms, dout, t, b):
        """-log softmax(out)[cls]; with_grad: dout[t, b] = (softmax - one_hot) / terms."""
        biggest, log_norm = log_softmax_shift(out)
        loss = ZERO
        for y in range(out.shape[0]):
            logp = (out[y] - biggest) - log_norm
            if y == cls:
                loss -= logp
            if with_grad:
                # backprop softmax cross-entropy: softmax - one_hot, over the B*T terms of the mean
                grad = math.exp(logp)
                if y == cls:
                    grad -= ONE
                dout[t, b, y] = grad / FT(terms)
        return loss

    @cuda.jit(device=True)
    def head_loss(task, out, targets, n, t, with_grad, terms, dout, b):
        """Sample n's loss term at step t from its head outputs ``out`` (Y,); with_grad also dout[t, b].

        regression (called at t = T-1): squared error against targets[n]; classification:
        cross-entropy against class targets[n, t]. terms: the loss denominator (contract.loss_terms).
        """
        if task == REGRESSION:
            return squared_error(out, targets[n], with_grad, terms, dout, t, b)
        return cross_entropy(out, int(targets[n, t]), with_grad, terms, dout, t, b)

    @cuda.jit(device=True)
    def head_row(b, batch, task, with_grad, terms, params, caches, outputs):
        """Row b's summed loss terms from caches.h; outputs (T, B, Y) receives its head outputs (regression:
        at T-1 only) and, with_grad, caches.dout its gradient (one thread per row)."""
        n = batch.order[batch.off + b]
        T = caches.h.shape[0] - 1
        loss = ZERO
        for t in range(T):
            if task == CLASSIFICATION or t == T - 1:
                out = outputs[t, b]
                h_t = caches.h[t + 1, b]
                for y in range(out.shape[0]):
                    out[y] = head_output(h_t, params.W_y, params.b_y, y)
                loss += head_loss(task, out, batch.targets, n, t, with_grad != 0, terms, caches.dout, b)
        return loss

    @cuda.jit(device=True)
    def head_backward(dout, t, b, W_y, k):
        """backprop out = W_y h + b_y: the head's gradient on unit k of h_t of row b, dout[t, b] @ W_y[:, k]."""
        acc = ZERO
        for y in range(W_y.shape[0]):
            acc += dout[t, b, y] * W_y[y, k]
        return acc

    # ------------------------------------------------------------------ reductions, loss, clip scale

    @cuda.jit(device=True)
    def is_finite(x):
        return not (math.isnan(x) or math.isinf(x))

    @cuda.jit(device=True)
    def block_sum(buf, value):
        """Sum of one value per thread over a block of any size, in a fixed order: buf (REDUCE_THREADS,)
        gets thread i's value in slot i % REDUCE_THREADS (slots filled in thread order), then a tree.
        With REDUCE_THREADS threads this is the plain tree."""
        tid = cuda.threadIdx.x
        nthreads = cuda.blockDim.x
        for slot in range(tid, REDUCE_THREADS, nthreads):   # fewer threads than slots: the rest are zero
            buf[slot] = value if slot == tid else ZERO
        cuda.syncthreads()
        for first in range(REDUCE_THREADS, nthreads, REDUCE_THREADS):
            if first <= tid < first + REDUCE_THREADS:
                buf[tid - first] += value
            cuda.syncthreads()
        stride = REDUCE_THREADS // 2
        while stride > 0:
            if tid < stride:
                buf[tid] += buf[tid + stride]
            cuda.syncthreads()
            stride //= 2
        total = buf[0]
        cuda.syncthreads()   # buf may be reused right after
        return total

    @cuda.jit(device=True)
    def strided_block_sum(buf, values, count):
        """sum(values[:count]) by one block: each thread sums a stride, then ``block_sum`` (fixed order)."""
        part = ZERO
        for i in range(cuda.threadIdx.x, count, cuda.blockDim.x):
            part += values[i]
        return block_sum(buf, part)

    @cuda.jit(device=True)
    def record_loss(total, terms, state, k, stop_on_nonfinite, always):
        """One thread: losses[k] = total / terms unless training already stopped (``always`` writes anyway,
        as the validation loss does); a non-finite loss sets the stop flag when ``stop_on_nonfinite``."""
        loss = total / FT(terms)
        if state.status[0] == 0 or always != 0:
            state.losses[k] = loss
        if state.status[0] == 0 and stop_on_nonfinite != 0 and not is_finite(loss):
            state.status[0] = 1

    @cuda.jit(device=True)
    def clip_factor(sumsq, settings):
        """The clip scale from the gradients' sum of squares: clip_norm / norm when norm > clip_norm, else 1."""
        norm = math.sqrt(sumsq)
        s = ONE
        if settings.has_clip != 0 and norm > FT(settings.clip_norm):
            s = FT(settings.clip_norm) / norm
        return s

    # ------------------------------------------------------------------ flat index over the five parameters

    @cuda.jit(device=True)
    def param_count(arrays):
        D = arrays.W_ih.shape[1]
        H = arrays.W_hh.shape[1]
        Y = arrays.W_y.shape[0]
        return 4 * H * D + 4 * H * H + 4 * H + Y * H + Y

    @cuda.jit(device=True)
    def locate(idx, arrays):
        """Flat index over (W_ih, W_hh, b, W_y, b_y) -> (which array 0..4, row, column)."""
        D = arrays.W_ih.shape[1]
        H = arrays.W_hh.shape[1]
        Y = arrays.W_y.shape[0]
        n_ih = 4 * H * D
        n_hh = 4 * H * H
        if idx < n_ih:
            return 0, idx // D, idx % D
        idx -= n_ih
        if idx < n_hh:
            return 1, idx // H, idx % H
        idx -= n_hh
        if idx < 4 * H:
            return 2, idx, 0
        idx -= 4 * H
        if idx < Y * H:
            return 3, idx // H, idx % H
        return 4, idx - Y * H, 0

    @cuda.jit(device=True)
    def read_flat(which, r, col, arrays):
        if which == 0:
            return arrays.W_ih[r, col]
        if which == 1:
            return arrays.W_hh[r, col]
        if which == 2:
            return arrays.b[r]
        if which == 3:
            return arrays.W_y[r, col]
        return arrays.b_y[r]

    @cuda.jit(device=True)
    def write_flat(which, r, col, value, arrays):
        if which == 0:
            arrays.W_ih[r, col] = value
        elif which == 1:
            arrays.W_hh[r, col] = value
        elif which == 2:
            arrays.b[r] = value
        elif which == 3:
            arrays.W_y[r, col] = value
        else:
            arrays.b_y[r] = value

    @cuda.jit(device=True)
    def sgd_flat(which, r, col, step, params, grads):
        """params -= step * grads for one element (step = lr * clip scale)."""
        if which == 0:
            params.W_ih[r, col] -= step * grads.W_ih[r, col]
        elif which == 1:
            params.W_hh[r, col] -= step * grads.W_hh[r, col]
        elif which == 2:
            params.b[r] -= step * grads.b[r]
        elif which == 3:
            params.W_y[r, col] -= step * grads.W_y[r, col]
        else:
            params.b_y[r] -= step * grads.b_y[r]

    @cuda.jit(device=True)
    def grad_element(which, r, col, batch, task, caches):
        """One weight-gradient entry, summed over t then b in a fixed order.

        W_ih[j, d]: sum dz[t,b,j] x[t,b,d]; W_hh[j, k]: sum dz[t,b,j] h[t,b,k] (h_{t-1});
        b[j]: sum dz[t,b,j]; W_y[y, k] and b_y[y]: dout against h_T (regression) or every h_t.
        """
        T = caches.dz.shape[0]
        acc = ZERO
        if which <= 2:
            for t in range(T):
                for b in range(batch.nrows):
                    if which == 0:
                        acc += caches.dz[t, b, r] * batch.X[batch.order[batch.off + b], t, col]
                    elif which == 1:
                        acc += caches.dz[t, b, r] * caches.h[t, b, col]
                    else:
                        acc += caches.dz[t, b, r]
            return acc
        t_first = T - 1 if task == REGRESSION else 0
        for t in range(t_first, T):
            for b in range(batch.nrows):
                if which == 3:
                    acc += caches.dout[t, b, r] * caches.h[t + 1, b, col]
                else:
                    acc += caches.dout[t, b, r]
        return acc

    return SimpleNamespace(
        sigmoid=sigmoid, activate=activate, cell_state=cell_state, cell_backward=cell_backward,
        input_gates=input_gates, cell_forward_at=cell_forward_at, cell_cache=cell_cache, cell_backward_at=cell_backward_at,
        head_output=head_output, log_softmax_shift=log_softmax_shift, head_loss=head_loss, head_row=head_row,
        head_backward=head_backward, block_sum=block_sum, strided_block_sum=strided_block_sum,
        record_loss=record_loss, clip_factor=clip_factor, param_count=param_count, locate=locate,
        read_flat=read_flat, write_flat=write_flat, sgd_flat=sgd_flat, grad_element=grad_element)


@per_dtype
def shared_kernels(FT) -> SimpleNamespace:
    """The kernels every version launches, for float type FT; arguments declared by kind (arguments.py)."""
    ZERO = FT(0.0)
    F = device_functions(FT)
    head_output, head_row, head_backward = F.head_output, F.head_row, F.head_backward
    log_softmax_shift, strided_block_sum, block_sum = F.log_softmax_shift, F.strided_block_sum, F.block_sum
    record_loss, clip_factor, param_count, locate = F.record_loss, F.clip_factor, F.param_count, F.locate
    read_flat, sgd_flat = F.read_flat, F.sgd_flat

    @cuda.jit
    def epoch_begin(state: EPOCH):
        """Every loss slot to NaN (so entries after a stop stay NaN), the stop flag and the ticket counter to 0."""
        i = cuda.grid(1)
        if i < state.losses.shape[0]:
            state.losses[i] = NAN
        if i == 0:
            state.status[0] = 0
            state.counter[0] = 0

    @cuda.jit
    def fill(a: FLOATS_1D, value: REAL):
        """a[:] = value for a 1-D array (caches are zeroed once, on the device)."""
        i = cuda.grid(1)
        if i < a.shape[0]:
            a[i] = FT(value)

    @cuda.jit
    def gather_x(batch: BATCH, Xb: FLOATS_3D):
        """Xb[t, b, :] = X[order[off + b], t, :]: the minibatch, time-major (T, B, D)."""
        i = cuda.grid(1)
        T = Xb.shape[0]
        D = Xb.shape[2]
        nrows = batch.nrows
        if i < T * nrows * D:
            t = i // (nrows * D)
            b = (i // D) % nrows
            d = i % D
            Xb[t, b, d] = batch.X[batch.order[batch.off + b], t, d]

    @cuda.jit
    def head_rows(batch: BATCH, task: INT, with_grad: INT, terms: INT, params: PARAMS, caches: CACHES,
                  outputs: FLOATS_3D, dh_head: FLOATS_3D, rowloss: FLOATS_1D, row_off: INT):
        """Head forward, loss and backward, one thread per sample row b (after a forward that filled caches.h).

        outputs (T, B, Y) receives the head outputs (regression: at T-1 only); rowloss[row_off + b] the
        row's summed loss terms; with_grad: caches.dout and dh_head (T, B, H) = dout @ W_y, zero where no head.
        """
        b = cuda.grid(1)
        if b < batch.nrows:
            T = caches.h.shape[0] - 1
            H = caches.h.shape[2]
            rowloss[row_off + b] = head_row(b, batch, task, with_grad, terms, params, caches, outputs)
            if with_grad != 0:
                for t in range(T):
                    has_head = task == CLASSIFICATION or t == T - 1
                    for k in range(H):
                        dh_head[t, b, k] = head_backward(caches.dout, t, b, params.W_y, k) if has_head else ZERO

    @cuda.jit
    def head_predict(task: INT, params: PARAMS, h: FLOATS_3D, pred: FLOATS_3D):
        """Predictions of row b from h (T+1, B, H): regression pred[b, 0] = W_y h_T + b_y; classification
        pred[b, t] = softmax(W_y h_t + b_y) for every t. pred (B, T, Y)."""
        b = cuda.grid(1)
        if b < pred.shape[0]:
            T = h.shape[0] - 1
            t_first = T - 1 if task == REGRESSION else 0
            for t in range(t_first, T):
                row = pred[b, 0] if task == REGRESSION else pred[b, t]
                for y in range(row.shape[0]):
                    row[y] = head_output(h[t + 1, b], params.W_y, params.b_y, y)
                if task == CLASSIFICATION:
                    biggest, log_norm = log_softmax_shift(row)
                    for y in range(row.shape[0]):
                        row[y] = math.exp((row[y] - biggest) - log_norm)

    @cuda.jit
    def loss_reduce(rowloss: FLOATS_1D, row_count: INT, terms: INT, state: EPOCH, k: INT,
                    stop_on_nonfinite: INT, always: INT):
        """One block: losses[k] = sum(rowloss[:row_count]) / terms in a fixed order; sets the stop flag."""
        buf = cuda.shared.array(REDUCE_THREADS, FT)
        total = strided_block_sum(buf, rowloss, row_count)
        if cuda.threadIdx.x == 0:
            record_loss(total, terms, state, k, stop_on_nonfinite, always)

    @cuda.jit
    def clip_scale(grads: PARAMS, settings: SGD, state: EPOCH):
        """One block: the global gradient norm and scale[0] = clip_norm / norm if norm > clip_norm else 1."""
        buf = cuda.shared.array(REDUCE_THREADS, FT)
        part = ZERO
        for idx in range(cuda.threadIdx.x, param_count(grads), REDUCE_THREADS):
            which, r, col = locate(idx, grads)
            value = read_flat(which, r, col, grads)
            part += value * value
        total = block_sum(buf, part)
        if cuda.threadIdx.x == 0:
            state.scale[0] = clip_factor(total, settings)

    @cuda.jit
    def sgd(params: PARAMS, grads: PARAMS, settings: SGD, state: EPOCH):
        """params -= lr * scale * grads, one thread per parameter; nothing after a non-finite loss."""
        idx = cuda.grid(1)
        if idx < param_count(params) and state.status[0] == 0:
            which, r, col = locate(idx, params)
            sgd_flat(which, r, col, FT(settings.lr * state.scale[0]), params, grads)

    return SimpleNamespace(epoch_begin=epoch_begin, fill=fill, gather_x=gather_x, head_rows=head_rows,
                           head_predict=head_predict, loss_reduce=loss_reduce, clip_scale=clip_scale, sgd=sgd)
