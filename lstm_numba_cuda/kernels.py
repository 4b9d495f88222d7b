"""Hand-written CUDA kernels of the LSTM, one source compiled per dtype.

Letters: B batch rows of the current minibatch (``nrows``), T time steps, D input
features, H hidden units, Y outputs. Device arrays (time-major, like the reference Cache):

    X (N, T, D), targets (N, Y) float or (N, T) int, order (N,) int64: sample rows, read through order[off + b]
    gates (T, B, 4H) activated i, f, g, o   h, c (T+1, B, H) with h[0] = c[0] = 0   tanh_c (T, B, H)
    dz (T, B, 4H) gradient on the pre-activations   dout (T, B, Y) gradient on the head outputs
    dh_head (T, B, H) the head's gradient on h       rowloss (rows,) loss summed over one sample's terms

``build_kernels(numba.float64)`` returns a namespace with every kernel for that
dtype: shared and local arrays need their dtype at compile time, so the kernels
are written once inside a factory and the dtype is a closure constant.

Rules kept everywhere so that the kernels also run on the simulator and do not
depend on the launch configuration: every global access guarded, shared tiles
loaded with zero padding (no early return before ``syncthreads``), loop counts
from the problem size, reductions in a fixed order, no float atomics, and the
reference's formulas in the reference's association order (sigmoid = 0.5*tanh(0.5x)+0.5).
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numba
from numba import cuda

from .device import simulator_enabled

# Launch geometry. The simulator runs every thread as a Python thread, so it gets small blocks;
# correctness never depends on these (loops are derived from problem sizes; tests use sizes
# that are not multiples of them), only speed does.
SIM = simulator_enabled()
TILE = 4 if SIM else 16                # matmul tile edge (v1): TILE*TILE threads per block
BLOCK = 8 if SIM else 128               # threads per block of elementwise kernels
REDUCE_THREADS = 8 if SIM else 256      # threads of one-block reductions; a power of two
PERSISTENT_THREADS = 8 if SIM else 256  # default threads per sample block of the v3 persistent kernel

REGRESSION, CLASSIFICATION = 0, 1
PHASE_FORWARD, PHASE_BACKWARD, PHASE_UPDATE = 0, 1, 2
NAN = float("nan")
INF = float("inf")

_CACHE: dict = {}


def build_kernels(float_t) -> SimpleNamespace:
    """Every kernel compiled for one float type (numba.float64 or numba.float32), cached."""
    key = str(float_t)
    if key not in _CACHE:
        _CACHE[key] = _build(float_t)
    return _CACHE[key]


def _build(FT):  # noqa: C901 - one factory keeps the kernels in one readable file
    ZERO, HALF, ONE, TWO = FT(0.0), FT(0.5), FT(1.0), FT(2.0)
    NEG_INF = FT(-INF)   # typed constants keep float32 kernels free of float64 arithmetic

    # ------------------------------------------------------------------ device helpers

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
    def is_finite(x):
        return not (math.isnan(x) or math.isinf(x))

    @cuda.jit(device=True)
    def block_sum(buf, value):
        """Tree sum of one value per thread over a block of REDUCE_THREADS threads (fixed order)."""
        tid = cuda.threadIdx.x
        buf[tid] = value
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
    def n_params(D, H, Y):
        return 4 * H * D + 4 * H * H + 4 * H + Y * H + Y

    @cuda.jit(device=True)
    def locate(idx, D, H, Y):
        """Flat index over (W_ih, W_hh, b, W_y, b_y) -> (which array 0..4, row, column)."""
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
    def read_flat(which, r, col, a0, a1, a2, a3, a4):
        if which == 0:
            return a0[r, col]
        if which == 1:
            return a1[r, col]
        if which == 2:
            return a2[r]
        if which == 3:
            return a3[r, col]
        return a4[r]

    @cuda.jit(device=True)
    def write_flat(which, r, col, value, a0, a1, a2, a3, a4):
        if which == 0:
            a0[r, col] = value
        elif which == 1:
            a1[r, col] = value
        elif which == 2:
            a2[r] = value
        elif which == 3:
            a3[r, col] = value
        else:
            a4[r] = value

    @cuda.jit(device=True)
    def sgd_flat(which, r, col, step, p0, p1, p2, p3, p4, g0, g1, g2, g3, g4):
        """params -= step * grads for one element (step = lr * clip scale)."""
        if which == 0:
            p0[r, col] -= step * g0[r, col]
        elif which == 1:
            p1[r, col] -= step * g1[r, col]
        elif which == 2:
            p2[r] -= step * g2[r]
        elif which == 3:
            p3[r, col] -= step * g3[r, col]
        else:
            p4[r] -= step * g4[r]

    @cuda.jit(device=True)
    def grad_element(which, r, col, X, order, off, nrows, T, task, dz, h, dout):
        """One weight-gradient entry, summed over t then b in a fixed order.

        W_ih[j, d]: sum dz[t,b,j] x[t,b,d]; W_hh[j, k]: sum dz[t,b,j] h[t,b,k] (h_{t-1});
        b[j]: sum dz[t,b,j]; W_y[y, k] and b_y[y]: dout against h_T (regression) or every h_t.
        """
        acc = ZERO
        if which <= 2:
            for t in range(T):
                for b in range(nrows):
                    if which == 0:
                        acc += dz[t, b, r] * X[order[off + b], t, col]
                    elif which == 1:
                        acc += dz[t, b, r] * h[t, b, col]
                    else:
                        acc += dz[t, b, r]
            return acc
        t_first = T - 1 if task == REGRESSION else 0
        for t in range(t_first, T):
            for b in range(nrows):
                if which == 3:
                    acc += dout[t, b, r] * h[t + 1, b, col]
                else:
                    acc += dout[t, b, r]
        return acc

    @cuda.jit(device=True)
    def loss_and_scale(buf, rowloss, row_count, denom, out, k, status, stop_on_nonfinite, sumsq,
                       has_clip, clip_norm, scale):
        """Block-wide: minibatch loss into out[k] (unless already stopped), the stop flag, the clip scale.

        Called by every thread of one block with its own partial ``sumsq``; thread 0 writes.
        """
        tid = cuda.threadIdx.x
        part = ZERO
        for i in range(tid, row_count, REDUCE_THREADS):
            part += rowloss[i]
        total_loss = block_sum(buf, part)
        total_sq = block_sum(buf, sumsq)
        if tid == 0:
            loss = total_loss / FT(denom)
            if status[0] == 0:
                out[k] = loss
                if stop_on_nonfinite != 0 and not is_finite(loss):
                    status[0] = 1
            norm = math.sqrt(total_sq)
            s = ONE
            if has_clip != 0 and norm > FT(clip_norm):
                s = FT(clip_norm) / norm
            scale[0] = s
        cuda.syncthreads()

    # ------------------------------------------------------------------ shared by all versions

    @cuda.jit
    def epoch_begin(out, status, counter):
        """Every loss slot to NaN (so entries after a stop stay NaN), the stop flag and v3's ticket counter to 0."""
        i = cuda.grid(1)
        if i < out.shape[0]:
            out[i] = NAN
        if i == 0:
            status[0] = 0
            counter[0] = 0

    @cuda.jit
    def fill(a, value):
        """a[:] = value for a 1-D array (caches are zeroed once, on the device)."""
        i = cuda.grid(1)
        if i < a.shape[0]:
            a[i] = FT(value)

    @cuda.jit
    def head_rows(h, W_y, b_y, targets, order, off, nrows, T, task, with_grad, dout, dh_head, rowloss, row_off):
        """Head forward, loss and backward, one thread per sample row b (v1, v2).

        regression: yhat = W_y h_T + b_y, rowloss = sum_y (yhat - y)^2, dout[T-1] = 2 (yhat - y) / (B Y).
        classification: at every t, log-softmax of W_y h_t + b_y, rowloss = -sum_t logp[class],
        dout[t] = (softmax - one_hot) / (B T). dh_head[t, b] = dout[t, b] @ W_y (zero where no head).
        """
        b = cuda.grid(1)
        if b < nrows:
            n = order[off + b]
            H = h.shape[2]
            Y = W_y.shape[0]
            loss = ZERO
            if task == REGRESSION:
                for y in range(Y):
                    out_y = ZERO
                    for k in range(H):
                        out_y += h[T, b, k] * W_y[y, k]
                    out_y += b_y[y]
                    diff = out_y - targets[n, y]
                    loss += diff * diff
                    if with_grad != 0:
                        dout[T - 1, b, y] = (TWO / FT(nrows * Y)) * diff
            else:
                for t in range(T):
                    cls = int(targets[n, t])
                    biggest = NEG_INF
                    for y in range(Y):
                        logit = b_y[y]
                        for k in range(H):
                            logit += h[t + 1, b, k] * W_y[y, k]
                        biggest = max(biggest, logit)
                    expsum = ZERO
                    for y in range(Y):
                        logit = b_y[y]
                        for k in range(H):
                            logit += h[t + 1, b, k] * W_y[y, k]
                        expsum += math.exp(logit - biggest)
                    log_norm = math.log(expsum)
                    for y in range(Y):
                        logit = b_y[y]
                        for k in range(H):
                            logit += h[t + 1, b, k] * W_y[y, k]
                        logp = (logit - biggest) - log_norm
                        if y == cls:
                            loss -= logp
                        if with_grad != 0:
                            # backprop softmax cross-entropy: softmax - one_hot, over the B*T terms of the mean
                            grad = math.exp(logp)
                            if y == cls:
                                grad -= ONE
                            dout[t, b, y] = grad / FT(nrows * T)
            rowloss[row_off + b] = loss
            if with_grad != 0:
                for t in range(T):
                    has_head = task == CLASSIFICATION or t == T - 1
                    for k in range(H):
                        acc = ZERO
                        if has_head:
                            for y in range(Y):
                                acc += dout[t, b, y] * W_y[y, k]
                        dh_head[t, b, k] = acc

    @cuda.jit
    def head_predict(h, W_y, b_y, nrows, T, task, pred):
        """Predictions: regression pred[b, 0, y] = W_y h_T + b_y; classification pred[b, t] = softmax."""
        b = cuda.grid(1)
        if b < nrows:
            H = h.shape[2]
            Y = W_y.shape[0]
            t_first = T - 1 if task == REGRESSION else 0
            for t in range(t_first, T):
                slot = 0 if task == REGRESSION else t
                biggest = NEG_INF
                for y in range(Y):
                    logit = ZERO
                    for k in range(H):
                        logit += h[t + 1, b, k] * W_y[y, k]
                    logit += b_y[y]
                    pred[b, slot, y] = logit
                    biggest = max(biggest, logit)
                if task == CLASSIFICATION:
                    expsum = ZERO
                    for y in range(Y):
                        expsum += math.exp(pred[b, slot, y] - biggest)
                    log_norm = math.log(expsum)
                    for y in range(Y):
                        pred[b, slot, y] = math.exp((pred[b, slot, y] - biggest) - log_norm)

    @cuda.jit
    def loss_reduce(rowloss, row_count, denom, out, k, status, stop_on_nonfinite, always):
        """One block: out[k] = sum(rowloss[:row_count]) / denom in a fixed order; sets the stop flag.

        ``always`` writes even after a stop (the validation loss is computed after a stop too).
        """
        buf = cuda.shared.array(REDUCE_THREADS, FT)
        tid = cuda.threadIdx.x
        part = ZERO
        for i in range(tid, row_count, REDUCE_THREADS):
            part += rowloss[i]
        total = block_sum(buf, part)
        if tid == 0:
            loss = total / FT(denom)
            if status[0] == 0 or always != 0:
                out[k] = loss
            if status[0] == 0 and stop_on_nonfinite != 0 and not is_finite(loss):
                status[0] = 1

    @cuda.jit
    def clip_scale(g0, g1, g2, g3, g4, has_clip, clip_norm, scale):
        """One block: the global gradient norm and scale[0] = clip_norm / norm if norm > clip_norm else 1."""
        buf = cuda.shared.array(REDUCE_THREADS, FT)
        tid = cuda.threadIdx.x
        D = g0.shape[1]
        H = g1.shape[1]
        Y = g3.shape[0]
        part = ZERO
        for idx in range(tid, n_params(D, H, Y), REDUCE_THREADS):
            which, r, col = locate(idx, D, H, Y)
            value = read_flat(which, r, col, g0, g1, g2, g3, g4)
            part += value * value
        total = block_sum(buf, part)
        if tid == 0:
            norm = math.sqrt(total)
            s = ONE
            if has_clip != 0 and norm > FT(clip_norm):
                s = FT(clip_norm) / norm
            scale[0] = s

    @cuda.jit
    def sgd(p0, p1, p2, p3, p4, g0, g1, g2, g3, g4, lr, scale, status):
        """params -= lr * scale * grads, one thread per parameter; nothing after a non-finite loss."""
        idx = cuda.grid(1)
        D = p0.shape[1]
        H = p1.shape[1]
        Y = p3.shape[0]
        if idx < n_params(D, H, Y) and status[0] == 0:
            which, r, col = locate(idx, D, H, Y)
            sgd_flat(which, r, col, FT(lr * scale[0]), p0, p1, p2, p3, p4, g0, g1, g2, g3, g4)

    # ------------------------------------------------------------------ v1: one kernel per operation

    @cuda.jit
    def gather_x(X, order, off, nrows, Xb):
        """Xb[t, b, :] = X[order[off + b], t, :]: the minibatch, time-major (T, B, D)."""
        i = cuda.grid(1)
        T = Xb.shape[0]
        D = Xb.shape[2]
        if i < T * nrows * D:
            t = i // (nrows * D)
            b = (i // D) % nrows
            d = i % D
            Xb[t, b, d] = X[order[off + b], t, d]

    @cuda.jit
    def matmul(A, trans_a, Bm, trans_b, C, bias, use_bias, addend, use_addend):
        """C (M, N) = op(A) (M, K) @ op(B) (K, N) [+ bias (N,)] [+ addend (M, N)], tiled in shared memory.

        op transposes when trans_* is 1. Tiles are loaded with zero padding, so every
        thread reaches every syncthreads whatever M, N, K are.
        """
        tile_a = cuda.shared.array((TILE, TILE), FT)
        tile_b = cuda.shared.array((TILE, TILE), FT)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        n, m = cuda.grid(2)
        M = C.shape[0]
        N = C.shape[1]
        K = A.shape[0] if trans_a != 0 else A.shape[1]
        acc = ZERO
        for k0 in range(0, K, TILE):
            ka = k0 + tx          # column of op(A) this thread loads
            kb = k0 + ty          # row of op(B) this thread loads
            value_a = ZERO
            if m < M and ka < K:
                value_a = A[ka, m] if trans_a != 0 else A[m, ka]
            tile_a[ty, tx] = value_a
            value_b = ZERO
            if kb < K and n < N:
                value_b = Bm[n, kb] if trans_b != 0 else Bm[kb, n]
            tile_b[ty, tx] = value_b
            cuda.syncthreads()
            for kk in range(TILE):
                acc += tile_a[ty, kk] * tile_b[kk, tx]
            cuda.syncthreads()
        if m < M and n < N:
            if use_bias != 0:
                acc += bias[n]
            if use_addend != 0:
                acc += addend[m, n]
            C[m, n] = acc

    @cuda.jit
    def colsum(A, out):
        """out[n] = sum over rows m of A[m, n], rows in order (db, db_y)."""
        n = cuda.grid(1)
        if n < out.shape[0]:
            acc = ZERO
            for m in range(A.shape[0]):
                acc += A[m, n]
            out[n] = acc

    @cuda.jit(device=True)
    def cell_forward(gates, c, h, tanh_c, t, b, k, H, z_i, z_f, z_g, z_o):
        """One unit k of step t from its pre-activations: gates[t, b, :] activated, c[t+1], tanh_c[t], h[t+1]."""
        gi = sigmoid(z_i)
        gf = sigmoid(z_f)
        gg = math.tanh(z_g)
        go = sigmoid(z_o)
        gates[t, b, k] = gi
        gates[t, b, H + k] = gf
        gates[t, b, 2 * H + k] = gg
        gates[t, b, 3 * H + k] = go
        c_new = gf * c[t, b, k] + gi * gg
        c[t + 1, b, k] = c_new
        tc = math.tanh(c_new)
        tanh_c[t, b, k] = tc
        h[t + 1, b, k] = go * tc

    @cuda.jit
    def gates_forward(gates, c, h, tanh_c, t, nrows):
        """Step t: activate the pre-activations in gates[t] in place, then c[t+1], tanh_c[t], h[t+1]."""
        i = cuda.grid(1)
        H = h.shape[2]
        if i < nrows * H:
            b = i // H
            k = i % H
            cell_forward(gates, c, h, tanh_c, t, b, k, H, gates[t, b, k], gates[t, b, H + k],
                         gates[t, b, 2 * H + k], gates[t, b, 3 * H + k])

    @cuda.jit(device=True)
    def cell_backward(gates, c, tanh_c, dz, dc_next, t, b, k, H, dh_t):
        """Backprop one unit k of step t given dh_t; writes dz[t, b, :] for unit k and dc_next[b, k]."""
        gi = gates[t, b, k]
        gf = gates[t, b, H + k]
        gg = gates[t, b, 2 * H + k]
        go = gates[t, b, 3 * H + k]
        tc = tanh_c[t, b, k]
        # backprop h = o * tanh(c)
        d_o = dh_t * tc
        dc = dc_next[b, k] + dh_t * go * (ONE - tc * tc)
        # backprop c = f * c_prev + i * g
        d_i = dc * gg
        d_g = dc * gi
        d_f = dc * c[t, b, k]
        dc_next[b, k] = dc * gf
        # backprop the activations: sigma' = s(1-s), tanh' = 1-g^2
        dz[t, b, k] = d_i * gi * (ONE - gi)
        dz[t, b, H + k] = d_f * gf * (ONE - gf)
        dz[t, b, 2 * H + k] = d_g * (ONE - gg * gg)
        dz[t, b, 3 * H + k] = d_o * go * (ONE - go)

    @cuda.jit
    def gates_backward(gates, c, tanh_c, dh_head, dh_next, dc_next, dz, t, T, nrows):
        """Step t of BPTT: dh_t = dh_head[t] + dh_next (zero at t = T-1), then dz[t] and dc_next."""
        i = cuda.grid(1)
        H = c.shape[2]
        if i < nrows * H:
            b = i // H
            k = i % H
            if t == T - 1:
                dc_next[b, k] = ZERO
                dh_t = dh_head[t, b, k]
            else:
                dh_t = dh_head[t, b, k] + dh_next[b, k]
            cell_backward(gates, c, tanh_c, dz, dc_next, t, b, k, H, dh_t)

    # ------------------------------------------------------------------ v2: fused step kernels

    @cuda.jit
    def step_forward(X, order, off, nrows, t, W_ih, W_hh, bias, gates, c, h, tanh_c):
        """One launch per step: z = (W_ih x_t + b) + W_hh h_{t-1}, activations and state update.

        Grid (ceil(H / BLOCK), B): a thread owns unit k of row b and computes its four gates,
        so c and h need no second pass; h_{t-1}[b] is staged through shared memory in chunks.
        """
        h_chunk = cuda.shared.array(BLOCK, FT)
        k = cuda.blockIdx.x * BLOCK + cuda.threadIdx.x
        b = cuda.blockIdx.y
        H = h.shape[2]
        D = X.shape[2]
        active = k < H and b < nrows
        z_i = ZERO
        z_f = ZERO
        z_g = ZERO
        z_o = ZERO
        if active:
            n = order[off + b]
            for d in range(D):
                x = X[n, t, d]
                z_i += W_ih[k, d] * x
                z_f += W_ih[H + k, d] * x
                z_g += W_ih[2 * H + k, d] * x
                z_o += W_ih[3 * H + k, d] * x
            z_i += bias[k]
            z_f += bias[H + k]
            z_g += bias[2 * H + k]
            z_o += bias[3 * H + k]
        r_i = ZERO
        r_f = ZERO
        r_g = ZERO
        r_o = ZERO
        for m0 in range(0, H, BLOCK):
            m_load = m0 + cuda.threadIdx.x
            h_chunk[cuda.threadIdx.x] = h[t, b, m_load] if (m_load < H and b < nrows) else ZERO
            cuda.syncthreads()
            if active:
                for mm in range(min(BLOCK, H - m0)):
                    hv = h_chunk[mm]
                    m = m0 + mm
                    r_i += W_hh[k, m] * hv
                    r_f += W_hh[H + k, m] * hv
                    r_g += W_hh[2 * H + k, m] * hv
                    r_o += W_hh[3 * H + k, m] * hv
            cuda.syncthreads()
        if active:
            cell_forward(gates, c, h, tanh_c, t, b, k, H, z_i + r_i, z_f + r_f, z_g + r_g, z_o + r_o)

    @cuda.jit
    def step_backward(gates, c, tanh_c, dh_head, W_hh, dz, dc_next, t, T, nrows):
        """One launch per BPTT step: dh_t = dh_head[t] + dz[t+1] @ W_hh, then the cell backward.

        Grid (ceil(H / BLOCK), B); dz[t+1, b] is staged through shared memory in chunks.
        """
        dz_chunk = cuda.shared.array(BLOCK, FT)
        k = cuda.blockIdx.x * BLOCK + cuda.threadIdx.x
        b = cuda.blockIdx.y
        H = c.shape[2]
        active = k < H and b < nrows
        dh_next = ZERO
        if t < T - 1:
            for j0 in range(0, 4 * H, BLOCK):
                j_load = j0 + cuda.threadIdx.x
                dz_chunk[cuda.threadIdx.x] = dz[t + 1, b, j_load] if (j_load < 4 * H and b < nrows) else ZERO
                cuda.syncthreads()
                if active:
                    for jj in range(min(BLOCK, 4 * H - j0)):
                        dh_next += dz_chunk[jj] * W_hh[j0 + jj, k]
                cuda.syncthreads()
        if active:
            if t == T - 1:
                dc_next[b, k] = ZERO
                dh_t = dh_head[t, b, k]
            else:
                dh_t = dh_head[t, b, k] + dh_next
            cell_backward(gates, c, tanh_c, dz, dc_next, t, b, k, H, dh_t)

    @cuda.jit
    def weight_grads(X, order, off, nrows, T, task, dz, h, dout, g0, g1, g2, g3, g4):
        """All five gradients in one pass after the time loop, one thread per parameter entry."""
        idx = cuda.grid(1)
        D = g0.shape[1]
        H = g1.shape[1]
        Y = g3.shape[0]
        if idx < n_params(D, H, Y):
            which, r, col = locate(idx, D, H, Y)
            value = grad_element(which, r, col, X, order, off, nrows, T, task, dz, h, dout)
            write_flat(which, r, col, value, g0, g1, g2, g3, g4)

    # ------------------------------------------------------------------ v3: persistent kernels

    @cuda.jit
    def persistent(X, targets, order, off, nrows, T, task, mode, W_ih, W_hh, bias, W_y, b_y,
                   gates, c, h, tanh_c, dz, dout, rowloss, row_off):
        """One block per sample row b runs the whole forward pass, the head and (mode 2) BPTT.

        Rows are independent in the recurrence, so no block ever waits for another.
        Dynamic shared memory (6H + Y floats): h_t, c_t and the step's gates (forward);
        the same space holds dh, dc and dz of step t+1 (backward).
        mode 0: loss only (validation, nothing cached); 1: also cache gates/c/h/tanh_c and
        write dout (predict); 2: also BPTT, writing dz for the gradient pass.
        """
        shared = cuda.shared.array(0, FT)
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        nthreads = cuda.blockDim.x   # any block size is correct; loops stride by it
        H = W_hh.shape[1]
        D = W_ih.shape[1]
        Y = W_y.shape[0]
        hs = shared[0:H]
        cs = shared[H:2 * H]
        gs = shared[2 * H:6 * H]
        ls = shared[6 * H:6 * H + Y]
        keep = mode >= 1
        valid_row = b < nrows
        n = order[off + b] if valid_row else 0
        for k in range(tid, H, nthreads):
            hs[k] = ZERO
            cs[k] = ZERO
        loss = ZERO        # meaningful in thread 0
        cuda.syncthreads()
        for t in range(T):
            for j in range(tid, 4 * H, nthreads):
                zx = ZERO
                for d in range(D):
                    zx += W_ih[j, d] * X[n, t, d]
                zx += bias[j]
                zh = ZERO
                for m in range(H):
                    zh += W_hh[j, m] * hs[m]
                value = activate(zx + zh, j // H)
                gs[j] = value
                if keep and valid_row:
                    gates[t, b, j] = value
            cuda.syncthreads()
            for k in range(tid, H, nthreads):
                c_new = gs[H + k] * cs[k] + gs[k] * gs[2 * H + k]
                tc = math.tanh(c_new)
                h_new = gs[3 * H + k] * tc
                cs[k] = c_new
                hs[k] = h_new
                if keep and valid_row:
                    c[t + 1, b, k] = c_new
                    tanh_c[t, b, k] = tc
                    h[t + 1, b, k] = h_new
            cuda.syncthreads()
            if task == CLASSIFICATION or t == T - 1:
                for y in range(tid, Y, nthreads):
                    out_y = ZERO
                    for k in range(H):
                        out_y += hs[k] * W_y[y, k]
                    ls[y] = out_y + b_y[y]
                cuda.syncthreads()
                if tid == 0 and valid_row:
                    if task == REGRESSION:
                        for y in range(Y):
                            diff = ls[y] - targets[n, y]
                            loss += diff * diff
                            if keep:
                                dout[t, b, y] = (TWO / FT(nrows * Y)) * diff
                    else:
                        cls = int(targets[n, t])
                        biggest = NEG_INF
                        for y in range(Y):
                            biggest = max(biggest, ls[y])
                        expsum = ZERO
                        for y in range(Y):
                            expsum += math.exp(ls[y] - biggest)
                        log_norm = math.log(expsum)
                        for y in range(Y):
                            logp = (ls[y] - biggest) - log_norm
                            if y == cls:
                                loss -= logp
                            if keep:
                                grad = math.exp(logp)
                                if y == cls:
                                    grad -= ONE
                                dout[t, b, y] = grad / FT(nrows * T)
                cuda.syncthreads()
        if tid == 0 and valid_row:
            rowloss[row_off + b] = loss
        if mode == 2:
            # BPTT: dhs = dh_next (from step t+1 through W_hh), dcs = dc_next, dzs = dz[t+1].
            dhs = hs
            dcs = cs
            dzs = gs
            for k in range(tid, H, nthreads):
                dcs[k] = ZERO
            cuda.syncthreads()
            for t in range(T - 1, -1, -1):
                has_head = task == CLASSIFICATION or t == T - 1
                for k in range(tid, H, nthreads):
                    head = ZERO
                    if has_head and valid_row:
                        for y in range(Y):
                            head += dout[t, b, y] * W_y[y, k]
                    if t == T - 1:
                        dhs[k] = head
                    else:
                        recurrent = ZERO
                        for j in range(4 * H):
                            recurrent += dzs[j] * W_hh[j, k]
                        dhs[k] = head + recurrent
                cuda.syncthreads()   # every thread has read dz[t+1] before it is overwritten
                for k in range(tid, H, nthreads):
                    dh_t = dhs[k]
                    if valid_row:
                        gi = gates[t, b, k]
                        gf = gates[t, b, H + k]
                        gg = gates[t, b, 2 * H + k]
                        go = gates[t, b, 3 * H + k]
                        tc = tanh_c[t, b, k]
                        c_prev = c[t, b, k]
                    else:
                        gi = ZERO
                        gf = ZERO
                        gg = ZERO
                        go = ZERO
                        tc = ZERO
                        c_prev = ZERO
                    d_o = dh_t * tc
                    dc = dcs[k] + dh_t * go * (ONE - tc * tc)
                    d_i = dc * gg
                    d_g = dc * gi
                    d_f = dc * c_prev
                    dcs[k] = dc * gf
                    dzs[k] = d_i * gi * (ONE - gi)
                    dzs[H + k] = d_f * gf * (ONE - gf)
                    dzs[2 * H + k] = d_g * (ONE - gg * gg)
                    dzs[3 * H + k] = d_o * go * (ONE - go)
                    if valid_row:
                        dz[t, b, k] = dzs[k]
                        dz[t, b, H + k] = dzs[H + k]
                        dz[t, b, 2 * H + k] = dzs[2 * H + k]
                        dz[t, b, 3 * H + k] = dzs[3 * H + k]
                cuda.syncthreads()

    @cuda.jit
    def finish(X, order, off, nrows, T, task, dz, h, dout, rowloss, denom, out, k, status, phase,
               has_clip, clip_norm, lr, p0, p1, p2, p3, p4, g0, g1, g2, g3, g4, partial, counter, scale):
        """v3's second launch: gradients, loss, global norm, clip scale and SGD in one kernel.

        Each block computes a slice of the gradients and its partial sum of squares; the last
        block to finish (an integer ticket, never a float atomic) reduces the partials in block
        order, writes the loss and the stop flag, and applies the update to every parameter.
        phase 0: loss only; 1: + gradients; 2: + update.
        """
        buf = cuda.shared.array(REDUCE_THREADS, FT)
        last = cuda.shared.array(1, numba.int32)
        tid = cuda.threadIdx.x
        D = g0.shape[1]
        H = g1.shape[1]
        Y = g3.shape[0]
        total = n_params(D, H, Y)
        idx = cuda.grid(1)
        square = ZERO
        if phase >= PHASE_BACKWARD and idx < total:
            which, r, col = locate(idx, D, H, Y)
            value = grad_element(which, r, col, X, order, off, nrows, T, task, dz, h, dout)
            square = value * value
            write_flat(which, r, col, value, g0, g1, g2, g3, g4)
        cuda.threadfence()   # this thread's gradient entry visible to the last block before any ticket is taken
        block_total = block_sum(buf, square)
        if tid == 0:
            partial[cuda.blockIdx.x] = block_total
            cuda.threadfence()
            ticket = cuda.atomic.add(counter, 0, 1)
            last[0] = 1 if ticket == cuda.gridDim.x - 1 else 0
        cuda.syncthreads()
        if last[0] == 1:
            cuda.threadfence()
            sumsq = ZERO
            for i in range(tid, cuda.gridDim.x, REDUCE_THREADS):
                sumsq += partial[i]
            loss_and_scale(buf, rowloss, nrows, denom, out, k, status, 1 if phase >= PHASE_BACKWARD else 0,
                           sumsq, has_clip, clip_norm, scale)
            if phase == PHASE_UPDATE and status[0] == 0:
                step = FT(lr * scale[0])
                for i in range(tid, total, REDUCE_THREADS):
                    which, r, col = locate(i, D, H, Y)
                    sgd_flat(which, r, col, step, p0, p1, p2, p3, p4, g0, g1, g2, g3, g4)
            if tid == 0:
                counter[0] = 0   # ready for the next launch

    return SimpleNamespace(
        epoch_begin=epoch_begin, fill=fill, head_rows=head_rows, head_predict=head_predict,
        loss_reduce=loss_reduce, clip_scale=clip_scale, sgd=sgd,
        gather_x=gather_x, matmul=matmul, colsum=colsum, gates_forward=gates_forward, gates_backward=gates_backward,
        step_forward=step_forward, step_backward=step_backward, weight_grads=weight_grads,
        persistent=persistent, finish=finish)
