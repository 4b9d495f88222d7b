"""Kernel version 4, "a version that scales": hidden units split over the blocks, W_hh on chip.

Letters: B rows of the minibatch (``nrows``), T time steps, D input features, H hidden units,
Y outputs, J hidden units per block. Device arrays as in kernels.py (time-major caches
gates (T, B, 4H), c and h (T+1, B, H), tanh_c (T, B, H), dz (T, B, 4H), dout (T, B, Y),
dc_next (B, H), rowloss (rows,)).

Partition. The grid is (S, G) blocks: block (s, g) owns the J = ceil(H / S) hidden units
k in [s*J, s*J + J) -- all four gate rows k, H+k, 2H+k, 3H+k of each -- for the samples of
group g (B split into G contiguous groups). Its slice of W_hh lives in dynamic shared memory
for the whole step: the rows (4J, H) in the forward, the columns (4H, J) in the backward,
4*J*H values either way. h_{t-1} (forward) and dz_{t+1} (backward) come from global memory,
where every block has left its units at the end of the previous step, through a
zero-padded shared tile of CHUNK samples x K_TILE values, read coalesced along H.

Products. A thread owns one unit and ROWS samples (strided by LANES, so a warp reads a tile
row without bank conflicts and the W_hh slice by broadcast): its 4 x ROWS gate sums reuse
every W_hh value ROWS times and every h value 4 times from registers (the backward: UNITS
units x ROWS samples). The weight gradients are one tiled product

    [dW_ih | dW_hh | db] (4H, D+H+1) = sum over the T*B terms q = (t, b) of dz[q]^T [x_q | h_{t-1,q} | 1]
    [dW_y | db_y]        (Y, H+1)    = sum over the head's terms of dout[q]^T [h_{t,q} | 1]

cut into GRAD_ROWS x GRAD_COLS output tiles, each over ``parts`` equal ranges of the terms
(parts > 1 only when there are fewer tiles than blocks, as at H=128), the (tile, part) items
dealt to the blocks in turn; a thread owns TILE_R x TILE_C entries and sums its terms in
ascending order into a scratch row per part (no atomics). A grid-wide gather adds the parts
in part order into the gradients and leaves each block's sum of squares (a fixed-order tree);
the global norm is the sum of those per-block partials in block order, computed alike by
every block of the update, which applies the clip scale and SGD grid-wide.

Barriers between steps. Two ways to run the same phase functions (``forward_step``,
``head_rows``, ``backward_step``, ``grad_tiles``, ``gather_parts``, ``update_params``):
  - per-step launches (a launch boundary is the grid-wide barrier): T forward steps, the head,
    the loss, T backward steps, the gradient tiles, the gather, the update: 2T + 5 launches
    per minibatch;
  - one cooperative launch per minibatch (``minibatch_kernel``) that keeps the W_hh slice in shared
    memory across steps and separates them with ``cuda.cg.this_grid().sync()``. The simulator
    runs cooperative grids of one block only, so the multi-block partition is tested through
    the per-step launches, which call the very same phase functions.

Shared memory: 4*J*H values of W_hh plus a K_TILE x (CHUNK+1) tile and a REDUCE-value
buffer, under the 48 KiB a block gets without opting in (Numba cannot opt in). With J >= 1
this holds for H <= ``max_hidden(dtype)``: 2,492 in float32 and 1,214 in float64 on a GPU;
beyond it ``plan`` raises a UserError that names kernel_version 2 (W_hh streamed from L2).

Kernels run unchanged on the simulator: every global access guarded, tiles zero-padded, no
return before a barrier, loops derived from the problem size and the launch geometry, so the
result does not depend on the grid or block shape (tests vary both).
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numba
import numpy as np
from numba import cuda

from lstm_numpy.errors import UserError

from .device import simulator_enabled

# Geometry constants, compiled in (shared and local arrays need their sizes at compile time).
# The simulator runs every thread as a Python thread, so it gets tiny ones; results never depend
# on them, and the tests use sizes that are multiples of none.
SIM = simulator_enabled()
LANES = 3 if SIM else 32             # threads along the samples of a chunk, per unit
ROWS = 3 if SIM else 4               # samples per thread in the step products
CHUNK = LANES * ROWS                 # samples per shared tile
UNITS = 2                            # hidden units per thread in the backward product
GRAD_ROWS = 6 if SIM else 64         # gradient output tile: rows (gate or head rows) ...
GRAD_COLS = 4 if SIM else 64         # ... and columns (inputs, h, the bias column); GRAD_ROWS + GRAD_COLS <= CHUNK + 1
TILE_R = 2 if SIM else 4             # gradient entries per thread: rows ...
TILE_C = 2 if SIM else 8             # ... and columns; (GRAD_ROWS / TILE_R) * (GRAD_COLS / TILE_C) threads cover a tile
REDUCE = 8 if SIM else 256           # slots of the block reduction buffer; a power of two
THREADS = 6 if SIM else 128          # default threads per block
MIN_PART_TERMS = 4 if SIM else 256   # fewest terms (t, b) per part of a split gradient tile
K_TILE = {"float64": 3 if SIM else 8, "float32": 3 if SIM else 16}   # tile depth along H, 4H or the terms
SHARED_MEMORY_LIMIT = 48 * 1024      # bytes a block gets without opting in

REGRESSION, CLASSIFICATION = 0, 1
PHASE_VALIDATE, PHASE_FORWARD, PHASE_BACKWARD, PHASE_UPDATE = -1, 0, 1, 2
NAN = float("nan")
INF = float("inf")

assert GRAD_ROWS + GRAD_COLS <= CHUNK + 1 and GRAD_ROWS % TILE_R == 0 and GRAD_COLS % TILE_C == 0


# ---------------------------------------------------------------------------- host-side plan

def static_shared_bytes(dtype) -> int:
    """The tile and the reduction buffer of every v4 kernel."""
    return (K_TILE[np.dtype(dtype).name] * (CHUNK + 1) + REDUCE) * np.dtype(dtype).itemsize


def slice_bytes(units: int, H: int, dtype) -> int:
    """Dynamic shared memory of a block owning ``units`` hidden units: their W_hh slice, 4*J*H values."""
    return 4 * units * H * np.dtype(dtype).itemsize


def max_hidden(dtype) -> int:
    """The largest H whose one-unit W_hh slice fits beside the static arrays."""
    return (SHARED_MEMORY_LIMIT - static_shared_bytes(dtype)) // slice_bytes(1, 1, dtype)


def grad_tiles_count(D: int, H: int, Y: int) -> int:
    """Output tiles of the gradient product: (4H, D+H+1) and the head's (Y, H+1)."""
    def tiles(rows, cols):
        return -(-rows // GRAD_ROWS) * -(-cols // GRAD_COLS)
    return tiles(4 * H, D + H + 1) + tiles(Y, H + 1)


class Plan:
    """The launch geometry of one minibatch size: grid (slices, groups), threads, dynamic shared bytes,
    and ``parts``, the ranges of terms the gradient tiles are split into (more work items than tiles
    when the tiles alone would leave blocks idle; their sums are added in part order).

    ``units`` hidden units per block (J); a block holds its W_hh slice in ``shared_bytes``.
    """

    def __init__(self, H: int, nrows: int, dtype, slices: int, groups: int, threads: int, parts: int = 1):
        self.H, self.nrows = H, nrows
        self.slices, self.groups, self.threads, self.parts = int(slices), int(groups), int(threads), int(parts)
        self.units = -(-H // self.slices)
        self.shared_bytes = slice_bytes(self.units, H, dtype)
        if self.shared_bytes + static_shared_bytes(dtype) > SHARED_MEMORY_LIMIT:
            raise UserError(f"kernel_version 4 keeps each block's rows of W_hh in shared memory: H={H} in "
                            f"{np.dtype(dtype).name} needs {self.shared_bytes + static_shared_bytes(dtype)} bytes "
                            f"with {self.units} units per block, over the {SHARED_MEMORY_LIMIT}-byte limit "
                            f"(H <= {max_hidden(dtype)} fits); use kernel_version 2 for this H.")

    @property
    def grid(self) -> tuple[int, int]:
        return self.slices, self.groups

    @property
    def blocks(self) -> int:
        return self.slices * self.groups


def plan(T: int, D: int, H: int, Y: int, nrows: int, dtype, target_blocks: int = 512,
         threads: int = THREADS) -> Plan:
    """The default geometry for about ``target_blocks`` blocks: sample groups of at least a chunk,
    as few units per block as that many blocks allow (at most what the threads cover and shared
    memory holds), so that small problems still spread over the whole GPU, and the gradient
    terms split into parts of at least MIN_PART_TERMS until every block has a tile."""
    if H > max_hidden(dtype):
        Plan(H, nrows, dtype, 1, 1, threads)   # raises the UserError with the numbers
    most = max(1, min(threads // LANES, (SHARED_MEMORY_LIMIT - static_shared_bytes(dtype)) // slice_bytes(1, H, dtype)))
    chunks = -(-nrows // CHUNK)
    per_block = max(1, min(most, -(-H * chunks // target_blocks)))
    slices = -(-H // per_block)
    groups = max(1, min(chunks, target_blocks // slices))
    parts = max(1, min(slices * groups // grad_tiles_count(D, H, Y), T * nrows // MIN_PART_TERMS))
    return Plan(H, nrows, dtype, slices, groups, threads, parts)


# ---------------------------------------------------------------------------- kernels

_CACHE: dict = {}


def build(float_t) -> SimpleNamespace:
    """Every v4 kernel compiled for one float type (numba.float64 or numba.float32), cached."""
    key = str(float_t)
    if key not in _CACHE:
        _CACHE[key] = _build(float_t)
    return _CACHE[key]


def _build(FT):  # noqa: C901 - one factory: shared and local arrays need the dtype at compile time
    ZERO, HALF, ONE, TWO = FT(0.0), FT(0.5), FT(1.0), FT(2.0)
    NEG_INF = FT(-INF)
    KT = K_TILE[str(FT)]
    TILE_WIDTH = CHUNK + 1               # padded: transposed stores free of bank conflicts
    ACC_FORWARD = 4 * ROWS               # gate sums per thread
    ACC_BACKWARD = UNITS * ROWS          # dh sums per thread
    ACC_GRAD = TILE_R * TILE_C           # gradient entries per thread
    GRAD_WIDTH = GRAD_ROWS + GRAD_COLS   # the tile holds the left operand's rows, then the right's columns
    TR = GRAD_ROWS // TILE_R             # threads along a gradient tile's rows
    TC = GRAD_COLS // TILE_C             # and along its columns

    # ------------------------------------------------------------------ small helpers

    @cuda.jit(device=True)
    def sigmoid(x):
        return HALF * math.tanh(HALF * x) + HALF

    @cuda.jit(device=True)
    def is_finite(x):
        return not (math.isnan(x) or math.isinf(x))

    @cuda.jit(device=True)
    def block_id():
        return cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x

    @cuda.jit(device=True)
    def block_units(H):
        """This block's hidden units [u0, u0 + J) of the J = ceil(H / gridDim.x) per block column."""
        J = (H + cuda.gridDim.x - 1) // cuda.gridDim.x
        return cuda.blockIdx.x * J, J

    @cuda.jit(device=True)
    def block_samples(nrows):
        """This block's samples [lo, hi): group blockIdx.y of gridDim.y contiguous groups."""
        per = (nrows + cuda.gridDim.y - 1) // cuda.gridDim.y
        lo = cuda.blockIdx.y * per
        return lo, min(nrows, lo + per)

    @cuda.jit(device=True)
    def block_sum(red, value):
        """Sum of one value per thread, any block size, in a fixed order: thread i lands in slot
        i % REDUCE (slots filled in thread order), then a tree over the slots."""
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for slot in range(tid, REDUCE, nt):        # fewer threads than slots: the rest are zero
            red[slot] = value if slot == tid else ZERO
        cuda.syncthreads()
        for first in range(REDUCE, nt, REDUCE):
            if first <= tid < first + REDUCE:
                red[tid - first] += value
            cuda.syncthreads()
        stride = REDUCE // 2
        while stride > 0:
            if tid < stride:
                red[tid] += red[tid + stride]
            cuda.syncthreads()
            stride //= 2
        total = red[0]
        cuda.syncthreads()   # red may be reused right after
        return total

    @cuda.jit(device=True)
    def stage(tile, src, t, s0, s_end, k0, K):
        """tile[kk, s] = src[t, s0 + s, k0 + kk] for a chunk of samples, zero outside [s0, s_end) x [k0, K).

        Consecutive threads read consecutive k of one sample row (coalesced); the tile's
        padded row length CHUNK + 1 keeps the transposed stores free of bank conflicts.
        """
        for e in range(cuda.threadIdx.x, KT * CHUNK, cuda.blockDim.x):
            s = e // KT
            kk = e % KT
            b = s0 + s
            k = k0 + kk
            tile[kk, s] = src[t, b, k] if (b < s_end and k < K) else ZERO

    # ------------------------------------------------------------------ W_hh slices

    @cuda.jit(device=True)
    def load_gate_rows(wsh, W_hh):
        """wsh[(g*J + j)*H + m] = W_hh[g*H + u0 + j, m]: the block's four gate rows per unit (4J, H)."""
        H = W_hh.shape[1]
        u0, J = block_units(H)
        for e in range(cuda.threadIdx.x, 4 * J * H, cuda.blockDim.x):
            row = e // H
            m = e % H
            g = row // J
            k = u0 + row % J
            wsh[e] = W_hh[g * H + k, m] if k < H else ZERO
        cuda.syncthreads()

    @cuda.jit(device=True)
    def load_unit_columns(wsh, W_hh):
        """wsh[r*J + j] = W_hh[r, u0 + j]: the block's columns (4H, J), what dh_{t-1} needs."""
        H = W_hh.shape[1]
        u0, J = block_units(H)
        for e in range(cuda.threadIdx.x, 4 * H * J, cuda.blockDim.x):
            r = e // J
            k = u0 + e % J
            wsh[e] = W_hh[r, k] if k < H else ZERO
        cuda.syncthreads()

    # ------------------------------------------------------------------ one forward step

    @cuda.jit(device=True)
    def cell_update(t, b, k, H, z_i, z_f, z_g, z_o, keep, gates, c, h, tanh_c):
        """One unit of step t from its pre-activations: c[t+1], h[t+1] (and gates[t], tanh_c[t] with keep)."""
        gi = sigmoid(z_i)
        gf = sigmoid(z_f)
        gg = math.tanh(z_g)
        go = sigmoid(z_o)
        c_new = gf * c[t, b, k] + gi * gg
        tc = math.tanh(c_new)
        c[t + 1, b, k] = c_new
        h[t + 1, b, k] = go * tc
        if keep != 0:
            gates[t, b, k] = gi
            gates[t, b, H + k] = gf
            gates[t, b, 2 * H + k] = gg
            gates[t, b, 3 * H + k] = go
            tanh_c[t, b, k] = tc

    @cuda.jit(device=True)
    def forward_step(t, keep, wsh, tile, X, order, off, nrows, W_ih, bias, gates, c, h, tanh_c):
        """Step t for the block's units and samples: z = (W_ih x_t + b) + W_hh h_{t-1}, the
        W_hh rows from wsh (``load_gate_rows``), h_{t-1} = h[t] from global memory; then the cell."""
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        H = h.shape[2]
        D = X.shape[2]
        u0, J = block_units(H)
        lo, hi = block_samples(nrows)
        items = J * LANES
        acc = cuda.local.array(ACC_FORWARD, FT)
        for s0 in range(lo, hi, CHUNK):
            for first in range(0, items, nt):        # more items than threads: rounds
                item = first + tid
                j = item // LANES
                lane = item % LANES
                active = item < items and u0 + j < H
                for a in range(ACC_FORWARD):
                    acc[a] = ZERO
                for m0 in range(0, H, KT):
                    stage(tile, h, t, s0, hi, m0, H)
                    cuda.syncthreads()
                    if active:
                        for mm in range(min(KT, H - m0)):
                            at = j * H + m0 + mm
                            w_i = wsh[at]
                            w_f = wsh[J * H + at]
                            w_g = wsh[2 * J * H + at]
                            w_o = wsh[3 * J * H + at]
                            for i in range(ROWS):
                                hv = tile[mm, lane + LANES * i]
                                acc[4 * i] += w_i * hv
                                acc[4 * i + 1] += w_f * hv
                                acc[4 * i + 2] += w_g * hv
                                acc[4 * i + 3] += w_o * hv
                    cuda.syncthreads()
                if active:
                    k = u0 + j
                    for i in range(ROWS):
                        b = s0 + lane + LANES * i
                        if b < hi:
                            n = order[off + b]
                            x_i = ZERO
                            x_f = ZERO
                            x_g = ZERO
                            x_o = ZERO
                            for d in range(D):
                                x = X[n, t, d]
                                x_i += W_ih[k, d] * x
                                x_f += W_ih[H + k, d] * x
                                x_g += W_ih[2 * H + k, d] * x
                                x_o += W_ih[3 * H + k, d] * x
                            # the reference's order: (W_ih x + b) + W_hh h
                            cell_update(t, b, k, H, (x_i + bias[k]) + acc[0], (x_f + bias[H + k]) + acc[1],
                                        (x_g + bias[2 * H + k]) + acc[2], (x_o + bias[3 * H + k]) + acc[3],
                                        keep, gates, c, h, tanh_c)
                        # the next sample's sums to the front: constant indices keep acc in registers
                        for a in range(ACC_FORWARD - 4):
                            acc[a] = acc[a + 4]

    # ------------------------------------------------------------------ the head

    @cuda.jit(device=True)
    def head_sample(b, n, T, task, with_grad, h, W_y, b_y, targets, nrows, dout):
        """Loss of sample row b (summed over its terms) and, with_grad, dout[t, b, :].

        regression: yhat = W_y h_T + b_y, loss = sum_y (yhat - y)^2, dout[T-1] = 2 (yhat - y) / (B Y).
        classification: at every t, log-softmax of W_y h_t + b_y, loss = -sum_t logp[class],
        dout[t] = (softmax - one_hot) / (B T).
        """
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
                    dout[T - 1, b, y] = (TWO / FT(nrows * Y)) * diff   # backprop the mean of squares
            return loss
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
        return loss

    @cuda.jit(device=True)
    def head_rows(targets, order, off, nrows, T, task, with_grad, h, W_y, b_y, dout, rowloss, row_off):
        """The head of every sample row, one thread per row over the whole grid."""
        stride = cuda.gridDim.x * cuda.gridDim.y * cuda.blockDim.x
        for b in range(block_id() * cuda.blockDim.x + cuda.threadIdx.x, nrows, stride):
            rowloss[row_off + b] = head_sample(b, order[off + b], T, task, with_grad, h, W_y, b_y, targets,
                                               nrows, dout)

    @cuda.jit(device=True)
    def loss_rows(red, rowloss, row_count, denom, out, k, status, stop_on_nonfinite, always):
        """One block: out[k] = sum(rowloss[:row_count]) / denom (fixed order); sets the stop flag.

        Writes only while no earlier minibatch stopped, unless ``always`` (validation).
        """
        part = ZERO
        for i in range(cuda.threadIdx.x, row_count, cuda.blockDim.x):
            part += rowloss[i]
        total = block_sum(red, part)
        if cuda.threadIdx.x == 0:
            loss = total / FT(denom)
            if status[0] == 0 or always != 0:
                out[k] = loss
            if status[0] == 0 and stop_on_nonfinite != 0 and not is_finite(loss):
                status[0] = 1

    # ------------------------------------------------------------------ one backward step

    @cuda.jit(device=True)
    def cell_backward(t, b, k, H, dh_t, gates, c, tanh_c, dz, dc_next):
        """Backprop one unit of step t given dh_t: dz[t, b, gate rows of k] and dc_next[b, k]."""
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

    @cuda.jit(device=True)
    def backward_step(t, T, task, wsh, tile, nrows, W_y, gates, c, tanh_c, dout, dz, dc_next):
        """BPTT step t for the block's units and samples, the mirror of ``forward_step``:
        dh_t = dout[t] W_y + dz[t+1] W_hh (the W_hh columns from wsh, ``load_unit_columns``;
        no recurrent term at t = T-1), then the cell backward into dz[t] and dc_next."""
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        H = c.shape[2]
        Y = W_y.shape[0]
        u0, J = block_units(H)
        lo, hi = block_samples(nrows)
        items = ((J + UNITS - 1) // UNITS) * LANES
        has_head = task == CLASSIFICATION or t == T - 1
        acc = cuda.local.array(ACC_BACKWARD, FT)
        for s0 in range(lo, hi, CHUNK):
            for first in range(0, items, nt):
                item = first + tid
                j0 = (item // LANES) * UNITS
                lane = item % LANES
                active = item < items
                for a in range(ACC_BACKWARD):
                    acc[a] = ZERO
                if t < T - 1:
                    # backprop z = ... + W_hh h_{t-1} (of step t+1): dh_next = dz[t+1] @ W_hh[:, own units]
                    for r0 in range(0, 4 * H, KT):
                        stage(tile, dz, t + 1, s0, hi, r0, 4 * H)
                        cuda.syncthreads()
                        if active:
                            for rr in range(min(KT, 4 * H - r0)):
                                row = (r0 + rr) * J
                                for u in range(UNITS):
                                    w = wsh[row + j0 + u] if j0 + u < J else ZERO
                                    for i in range(ROWS):
                                        acc[u * ROWS + i] += tile[rr, lane + LANES * i] * w
                        cuda.syncthreads()
                if active:
                    for u in range(UNITS):
                        k = u0 + j0 + u
                        for i in range(ROWS):
                            b = s0 + lane + LANES * i
                            if j0 + u < J and k < H and b < hi:
                                if t == T - 1:
                                    dc_next[b, k] = ZERO
                                # backprop the head: dh[t] = dout[t] @ W_y
                                head = ZERO
                                if has_head:
                                    for y in range(Y):
                                        head += dout[t, b, y] * W_y[y, k]
                                dh_t = head + acc[0] if t < T - 1 else head
                                cell_backward(t, b, k, H, dh_t, gates, c, tanh_c, dz, dc_next)
                            for a in range(ACC_BACKWARD - 1):   # the next sum to the front (registers)
                                acc[a] = acc[a + 1]

    # ------------------------------------------------------------------ weight gradients

    @cuda.jit(device=True)
    def left_term(kind, q, r, T, task, nrows, dz, dout):
        """Term q's left operand at output row r: dz[t, b, r] (kind 0) or dout[t, b, r] (kind 1)."""
        if kind == 0:
            return dz[q // nrows, q % nrows, r]
        if task == REGRESSION:
            return dout[T - 1, q, r]
        return dout[q // nrows, q % nrows, r]

    @cuda.jit(device=True)
    def right_term(kind, q, col, T, task, nrows, X, order, off, h):
        """Term q's right operand at column col: [x_t | h_{t-1} | 1] (kind 0) or [h_t | 1] (kind 1)."""
        H = h.shape[2]
        D = X.shape[2]
        if kind == 0:
            t = q // nrows
            b = q % nrows
            if col < D:
                return X[order[off + b], t, col]
            if col < D + H:
                return h[t, b, col - D]
            return ONE
        if task == REGRESSION:
            t = T - 1
            b = q
        else:
            t = q // nrows
            b = q % nrows
        if col < H:
            return h[t + 1, b, col]
        return ONE

    @cuda.jit(device=True)
    def flat_index(kind, r, col, D, H, Y):
        """Position of a gradient entry in the flat order W_ih, W_hh, b, W_y, b_y (the scratch's columns)."""
        if kind == 0:
            if col < D:
                return r * D + col
            if col < D + H:
                return 4 * H * D + r * H + col - D
            return 4 * H * (D + H) + r
        head = 4 * H * (D + H + 1)
        if col < H:
            return head + r * H + col
        return head + Y * H + r

    @cuda.jit(device=True)
    def grad_tile(kind, r0, c0, part, parts, tile, X, order, off, nrows, T, task, dz, h, dout, scratch):
        """One GRAD_ROWS x GRAD_COLS tile of the gradient product (see the module docstring) over the
        terms of ``part`` (of ``parts`` equal ranges), into scratch[part]."""
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        D = X.shape[2]
        H = h.shape[2]
        Y = dout.shape[2]
        M = 4 * H if kind == 0 else Y
        N = D + H + 1 if kind == 0 else H + 1
        Q = nrows if (kind == 1 and task == REGRESSION) else T * nrows
        per_part = (Q + parts - 1) // parts
        q_lo = part * per_part
        q_hi = min(Q, q_lo + per_part)
        acc = cuda.local.array(ACC_GRAD, FT)
        left = cuda.local.array(TILE_R, FT)
        for first in range(0, TR * TC, nt):
            item = first + tid
            ir = item % TR
            ic = item // TR
            active = item < TR * TC
            for a in range(ACC_GRAD):
                acc[a] = ZERO
            for q0 in range(q_lo, q_hi, KT):
                for e in range(tid, KT * GRAD_WIDTH, nt):
                    qq = e // GRAD_WIDTH
                    x = e % GRAD_WIDTH
                    q = q0 + qq
                    value = ZERO
                    if x < GRAD_ROWS:
                        if q < q_hi and r0 + x < M:
                            value = left_term(kind, q, r0 + x, T, task, nrows, dz, dout)
                    elif q < q_hi and c0 + x - GRAD_ROWS < N:
                        value = right_term(kind, q, c0 + x - GRAD_ROWS, T, task, nrows, X, order, off, h)
                    tile[qq, x] = value
                cuda.syncthreads()
                if active:
                    for qq in range(min(KT, q_hi - q0)):
                        for a in range(TILE_R):
                            left[a] = tile[qq, ir + TR * a]
                        for cc in range(TILE_C):
                            right = tile[qq, GRAD_ROWS + ic + TC * cc]
                            for a in range(TILE_R):
                                acc[a * TILE_C + cc] += left[a] * right
                cuda.syncthreads()
            if active:
                for a in range(TILE_R):
                    for cc in range(TILE_C):
                        r = r0 + ir + TR * a
                        col = c0 + ic + TC * cc
                        if r < M and col < N:
                            scratch[part, flat_index(kind, r, col, D, H, Y)] = acc[a * TILE_C + cc]

    @cuda.jit(device=True)
    def grad_tiles(tile, X, order, off, nrows, T, task, dz, h, dout, scratch, parts):
        """Every (tile, part) of the gradient product, dealt to the blocks in turn, into scratch (parts, P)."""
        D = X.shape[2]
        H = h.shape[2]
        Y = dout.shape[2]
        col_tiles = (D + H + 1 + GRAD_COLS - 1) // GRAD_COLS
        gate_tiles = ((4 * H + GRAD_ROWS - 1) // GRAD_ROWS) * col_tiles
        head_col_tiles = (H + 1 + GRAD_COLS - 1) // GRAD_COLS
        head_tiles = ((Y + GRAD_ROWS - 1) // GRAD_ROWS) * head_col_tiles
        for item in range(block_id(), (gate_tiles + head_tiles) * parts, cuda.gridDim.x * cuda.gridDim.y):
            tile_id = item // parts
            part = item % parts
            if tile_id < gate_tiles:
                grad_tile(0, (tile_id // col_tiles) * GRAD_ROWS, (tile_id % col_tiles) * GRAD_COLS, part, parts,
                          tile, X, order, off, nrows, T, task, dz, h, dout, scratch)
            else:
                i = tile_id - gate_tiles
                grad_tile(1, (i // head_col_tiles) * GRAD_ROWS, (i % head_col_tiles) * GRAD_COLS, part, parts,
                          tile, X, order, off, nrows, T, task, dz, h, dout, scratch)

    @cuda.jit(device=True)
    def locate(idx, D, H, Y):
        """Flat index over (W_ih, W_hh, b, W_y, b_y) -> (which array 0..4, row, column)."""
        if idx < 4 * H * D:
            return 0, idx // D, idx % D
        idx -= 4 * H * D
        if idx < 4 * H * H:
            return 1, idx // H, idx % H
        idx -= 4 * H * H
        if idx < 4 * H:
            return 2, idx, 0
        idx -= 4 * H
        if idx < Y * H:
            return 3, idx // H, idx % H
        return 4, idx - Y * H, 0

    @cuda.jit(device=True)
    def gather_parts(red, scratch, parts, g0, g1, g2, g3, g4, partial):
        """grads = the sum of the parts in part order, grid-wide; partial[block] = the block's sum of squares."""
        D = g0.shape[1]
        H = g1.shape[1]
        Y = g3.shape[0]
        total = 4 * H * D + 4 * H * H + 4 * H + Y * H + Y
        stride = cuda.gridDim.x * cuda.gridDim.y * cuda.blockDim.x
        sumsq = ZERO
        for idx in range(block_id() * cuda.blockDim.x + cuda.threadIdx.x, total, stride):
            value = ZERO
            for p in range(parts):
                value += scratch[p, idx]
            which, r, col = locate(idx, D, H, Y)
            if which == 0:
                g0[r, col] = value
            elif which == 1:
                g1[r, col] = value
            elif which == 2:
                g2[r] = value
            elif which == 3:
                g3[r, col] = value
            else:
                g4[r] = value
            sumsq += value * value
        block_total = block_sum(red, sumsq)
        if cuda.threadIdx.x == 0:
            partial[block_id()] = block_total

    # ------------------------------------------------------------------ clip and SGD over the grid

    @cuda.jit(device=True)
    def sgd_one(idx, step, D, H, Y, p0, p1, p2, p3, p4, g0, g1, g2, g3, g4):
        """params -= step * grads for flat index idx over (W_ih, W_hh, b, W_y, b_y)."""
        if idx < 4 * H * D:
            p0[idx // D, idx % D] -= step * g0[idx // D, idx % D]
            return
        idx -= 4 * H * D
        if idx < 4 * H * H:
            p1[idx // H, idx % H] -= step * g1[idx // H, idx % H]
            return
        idx -= 4 * H * H
        if idx < 4 * H:
            p2[idx] -= step * g2[idx]
            return
        idx -= 4 * H
        if idx < Y * H:
            p3[idx // H, idx % H] -= step * g3[idx // H, idx % H]
            return
        idx -= Y * H
        if idx < Y:
            p4[idx] -= step * g4[idx]

    @cuda.jit(device=True)
    def update_params(red, partial, n_partial, has_clip, clip_norm, lr, status,
                      p0, p1, p2, p3, p4, g0, g1, g2, g3, g4):
        """Every block: the global norm from the per-block partials (block order, the same sum in
        every block), the clip scale, then its share of params -= lr * scale * grads; nothing after a stop."""
        part = ZERO
        for i in range(cuda.threadIdx.x, n_partial, cuda.blockDim.x):
            part += partial[i]
        norm = math.sqrt(block_sum(red, part))
        scale = ONE
        if has_clip != 0 and norm > FT(clip_norm):
            scale = FT(clip_norm) / norm
        if status[0] == 0:
            D = p0.shape[1]
            H = p1.shape[1]
            Y = p3.shape[0]
            total = 4 * H * D + 4 * H * H + 4 * H + Y * H + Y
            step = FT(lr * scale)
            stride = cuda.gridDim.x * cuda.gridDim.y * cuda.blockDim.x
            for idx in range(block_id() * cuda.blockDim.x + cuda.threadIdx.x, total, stride):
                sgd_one(idx, step, D, H, Y, p0, p1, p2, p3, p4, g0, g1, g2, g3, g4)

    # ------------------------------------------------------------------ per-step launches

    @cuda.jit
    def forward_kernel(t, keep, X, order, off, nrows, W_ih, W_hh, bias, gates, c, h, tanh_c):
        """One forward step (grid: unit slices x sample groups; dynamic shared: the W_hh rows)."""
        wsh = cuda.shared.array(0, FT)
        tile = cuda.shared.array((KT, TILE_WIDTH), FT)
        load_gate_rows(wsh, W_hh)
        forward_step(t, keep, wsh, tile, X, order, off, nrows, W_ih, bias, gates, c, h, tanh_c)

    @cuda.jit
    def head_kernel(targets, order, off, nrows, T, task, with_grad, h, W_y, b_y, dout, rowloss, row_off):
        head_rows(targets, order, off, nrows, T, task, with_grad, h, W_y, b_y, dout, rowloss, row_off)

    @cuda.jit
    def loss_kernel(rowloss, row_count, denom, out, k, status, stop_on_nonfinite, always):
        """One block: the loss of ``row_count`` rows into out[k] and the stop flag."""
        red = cuda.shared.array(REDUCE, FT)
        loss_rows(red, rowloss, row_count, denom, out, k, status, stop_on_nonfinite, always)

    @cuda.jit
    def backward_kernel(t, T, task, nrows, W_hh, W_y, gates, c, tanh_c, dout, dz, dc_next):
        """One BPTT step (grid as forward_kernel; dynamic shared: the W_hh columns)."""
        wsh = cuda.shared.array(0, FT)
        tile = cuda.shared.array((KT, TILE_WIDTH), FT)
        load_unit_columns(wsh, W_hh)
        backward_step(t, T, task, wsh, tile, nrows, W_y, gates, c, tanh_c, dout, dz, dc_next)

    @cuda.jit
    def grads_kernel(X, order, off, nrows, T, task, dz, h, dout, scratch, parts):
        """The gradient product's tiles, each over ``parts`` ranges of terms, into scratch."""
        tile = cuda.shared.array((KT, TILE_WIDTH), FT)
        grad_tiles(tile, X, order, off, nrows, T, task, dz, h, dout, scratch, parts)

    @cuda.jit
    def gather_kernel(scratch, parts, g0, g1, g2, g3, g4, partial):
        """The five gradients from the parts, and the per-block sums of squares."""
        red = cuda.shared.array(REDUCE, FT)
        gather_parts(red, scratch, parts, g0, g1, g2, g3, g4, partial)

    @cuda.jit
    def update_kernel(partial, n_partial, has_clip, clip_norm, lr, status, p0, p1, p2, p3, p4,
                      g0, g1, g2, g3, g4):
        red = cuda.shared.array(REDUCE, FT)
        update_params(red, partial, n_partial, has_clip, clip_norm, lr, status, p0, p1, p2, p3, p4,
                      g0, g1, g2, g3, g4)

    # ------------------------------------------------------------------ one cooperative launch

    @cuda.jit
    def minibatch_kernel(X, targets, order, off, nrows, T, task, phase, W_ih, W_hh, bias, W_y, b_y,
                         gates, c, h, tanh_c, dz, dc_next, dout, rowloss, row_off, denom, out, k, status,
                         has_clip, clip_norm, lr, g0, g1, g2, g3, g4, scratch, parts, partial):
        """A whole minibatch in one cooperative launch: the same phases as the per-step kernels,
        grid-wide barriers between them, the W_hh slice kept in shared memory across the steps.

        phase -1: forward and head, row losses only (validation); 0: + the loss into out[k];
        1: + BPTT and gradients; 2: + clip and SGD.
        """
        wsh = cuda.shared.array(0, FT)
        tile = cuda.shared.array((KT, TILE_WIDTH), FT)
        red = cuda.shared.array(REDUCE, FT)
        grid = cuda.cg.this_grid()
        train = phase >= PHASE_BACKWARD
        load_gate_rows(wsh, W_hh)
        for t in range(T):
            forward_step(t, 1 if train else 0, wsh, tile, X, order, off, nrows, W_ih, bias, gates, c, h, tanh_c)
            grid.sync()
        head_rows(targets, order, off, nrows, T, task, 1 if train else 0, h, W_y, b_y, dout, rowloss, row_off)
        grid.sync()
        if phase >= PHASE_FORWARD and block_id() == 0:
            loss_rows(red, rowloss, nrows, denom, out, k, status, 1 if train else 0, 0)
        if train:
            cuda.syncthreads()   # wsh now gets the columns
            load_unit_columns(wsh, W_hh)
            for t in range(T - 1, -1, -1):
                backward_step(t, T, task, wsh, tile, nrows, W_y, gates, c, tanh_c, dout, dz, dc_next)
                grid.sync()
            grad_tiles(tile, X, order, off, nrows, T, task, dz, h, dout, scratch, parts)
            grid.sync()
            gather_parts(red, scratch, parts, g0, g1, g2, g3, g4, partial)
        if phase == PHASE_UPDATE:
            grid.sync()
            update_params(red, partial, cuda.gridDim.x * cuda.gridDim.y, has_clip, clip_norm, lr, status,
                          W_ih, W_hh, bias, W_y, b_y, g0, g1, g2, g3, g4)

    return SimpleNamespace(
        forward_kernel=forward_kernel, head_kernel=head_kernel, loss_kernel=loss_kernel,
        backward_kernel=backward_kernel, grads_kernel=grads_kernel, gather_kernel=gather_kernel,
        update_kernel=update_kernel,
        minibatch_kernel=minibatch_kernel)
