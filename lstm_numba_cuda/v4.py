"""Kernel version 4, "a version that scales": hidden units split over the blocks, W_hh on chip.

Letters: B rows of the minibatch (``nrows``), T time steps, D input features, H hidden units,
Y outputs, J hidden units per block. Argument groups and cache shapes: arguments.py; v4's
workspace adds dc_next (B, H), outputs (T, B, Y) (the head's) and scratch (parts, n_params).

Partition. The grid is (S, G) blocks: block (s, g) owns the J = ceil(H / S) hidden units
k in [s*J, s*J + J) -- all four gate rows k, H+k, 2H+k, 3H+k of each -- for the samples of
group g (B split into G contiguous groups). Its slice of W_hh lives in dynamic shared memory:
the rows (4J, H) in the forward, the columns (4H, J) in the backward, 4*J*H values either way.
h_{t-1} (forward) and dz_{t+1} (backward) come from global memory, where every block has left
its units at the end of the previous step, through a zero-padded shared tile of CHUNK samples
x K_TILE values, read coalesced along H.

Products. A thread owns one unit and ROWS samples (strided by LANES, so a warp reads a tile row
without bank conflicts and the W_hh slice by broadcast): its 4 x ROWS gate sums reuse every
W_hh value ROWS times and every h value 4 times from registers (the backward: UNITS units x
ROWS samples). The weight gradients are one tiled product

    [dW_ih | dW_hh | db] (4H, D+H+1) = sum over the T*B terms q = (t, b) of dz[q]^T [x_q | h_{t-1,q} | 1]
    [dW_y | db_y]        (Y, H+1)    = sum over the head's terms of dout[q]^T [h_{t,q} | 1]

cut into GRAD_ROWS x GRAD_COLS output tiles, each over ``parts`` equal ranges of the terms
(parts > 1 only when there are fewer tiles than blocks, as at H=128), the (tile, part) items
dealt to the blocks in turn; a thread owns TILE_R x TILE_C entries and sums its terms in
ascending order into a scratch row per part (no atomics). A grid-wide gather adds the parts in
part order into the gradients and leaves each block's sum of squares (a fixed-order tree); the
global norm is the sum of those per-block partials in block order, computed alike by every
block of the update, which applies the clip scale and SGD grid-wide.

Barriers between steps. Two ways to run the same phase functions (``forward_step``,
``head_rows``, ``backward_step``, ``grad_tiles``, ``gather_parts``, ``update_params``):
  - cooperative (the default on a GPU): one launch per minibatch, ``minibatch_kernel``, keeps
    the W_hh slice in shared memory across the steps and separates them with
    ``cuda.cg.this_grid().sync()`` (2T + 3 grid barriers); the plan is cut to the blocks that
    can be resident at once, and a grid that cannot be is run per step instead;
  - per step (the simulator's default, which runs cooperative grids of one block only): a
    launch boundary is the barrier: T forward steps, the head, the loss, T backward steps, the
    gradient tiles, the gather, the update: 2T + 5 launches per minibatch.
The multi-block partition is tested through the per-step launches, which call the very same
phase functions as the cooperative kernel (tests/test_cuda_v4.py).

Launches per minibatch: 1 (cooperative) or 2T + 5 (per step); validation: per chunk of
batch_size rows 1 (cooperative) or T + 1 (per step), then 1 for the loss.

Shared memory: 4*J*H values of W_hh plus a K_TILE x (CHUNK+1) tile and a REDUCE_THREADS buffer,
under the 48 KiB a block gets without opting in (Numba cannot opt in). With J >= 1 this holds
for H <= ``max_hidden(dtype)``: 2,492 in float32 and 1,214 in float64 on a GPU; beyond it the
version refuses with a UserError that names kernel_version 2 (W_hh streamed from L2).

    train(params, data, TrainConfig(..., kernel_version=4))
"""
from __future__ import annotations

import inspect
from types import SimpleNamespace

import numpy as np
from numba import cuda

from parallel_lstm.lstm_numpy.contract import BACKWARD, CLASSIFICATION, REGRESSION, UPDATE, batch_bounds
from parallel_lstm.lstm_numpy.errors import UserError

from .arguments import BATCH, CACHES, EPOCH, FLOATS_2D, FLOATS_3D, FLOATS_1D, INT, PARAMS, SGD, Batch
from .device import gpu_present
from .device_code import REDUCE_THREADS, SIM, device_functions, per_dtype
from .version_base import KernelVersion, Workspace

# Geometry constants, compiled in (shared and local arrays need their sizes at compile time).
# The simulator runs every thread as a Python thread, so it gets tiny ones; results never depend
# on them, and the tests use sizes that are multiples of none.
LANES = 3 if SIM else 32             # threads along the samples of a chunk, per unit
ROWS = 3 if SIM else 4               # samples per thread in the step products
CHUNK = LANES * ROWS                 # samples per shared tile
UNITS = 2                            # hidden units per thread in the backward product
GRAD_ROWS = 6 if SIM else 64         # gradient output tile: rows (gate or head rows) ...
GRAD_COLS = 4 if SIM else 64         # ... and columns (inputs, h, the bias column); GRAD_ROWS + GRAD_COLS <= CHUNK + 1
TILE_R = 2 if SIM else 4             # gradient entries per thread: rows ...
TILE_C = 2 if SIM else 8             # ... and columns; (GRAD_ROWS / TILE_R) * (GRAD_COLS / TILE_C) threads cover a tile
THREADS = 6 if SIM else 128          # default threads per block
MIN_PART_TERMS = 4 if SIM else 256   # fewest terms (t, b) per part of a split gradient tile
K_TILE = {"float64": 3 if SIM else 8, "float32": 3 if SIM else 16}   # tile depth along H, 4H or the terms
SHARED_MEMORY_LIMIT = 48 * 1024      # bytes a block gets without opting in
VALIDATE = -1                        # cooperative kernel phase below FORWARD: row losses only, no loss record

assert GRAD_ROWS + GRAD_COLS <= CHUNK + 1 and GRAD_ROWS % TILE_R == 0 and GRAD_COLS % TILE_C == 0


# ---------------------------------------------------------------------------- host-side plan

def static_shared_bytes(dtype) -> int:
    """The tile and the reduction buffer of every v4 kernel."""
    return (K_TILE[np.dtype(dtype).name] * (CHUNK + 1) + REDUCE_THREADS) * np.dtype(dtype).itemsize


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


def resident_plan(T: int, D: int, H: int, Y: int, nrows: int, dtype, resident, target_blocks: int = 512,
                  threads: int = THREADS) -> tuple[Plan, bool]:
    """The plan of a cooperative launch and whether it can run as one: the default plan, cut to the blocks
    that ``resident(plan)`` says can be resident at once (more units per block, fewer groups); False when
    even the cut plan cannot be resident (the version then launches per step)."""
    sizes = (T, D, H, Y, nrows, dtype)
    geometry = plan(*sizes, target_blocks=target_blocks, threads=threads)
    capacity = resident(geometry)
    if capacity < 1:
        return geometry, False
    if geometry.blocks > capacity:
        geometry = plan(*sizes, target_blocks=capacity, threads=threads)
    return geometry, geometry.blocks <= resident(geometry)


def cooperative_capacity(dtype, task: str, geometry: Plan) -> int:
    """How many blocks of the cooperative kernel can be resident at once on this GPU (the simulator runs one)."""
    if SIM:
        return 1
    kernel = kernels(dtype).minibatch_kernel
    parameters = inspect.signature(kernel.py_func, eval_str=True).parameters.values()
    compiled = kernel.compile(tuple(p.annotation.numba_type(dtype, task) for p in parameters))
    return compiled.max_cooperative_grid_blocks(geometry.threads, geometry.shared_bytes)


def cudadevrt_found() -> bool:
    """Whether CUDA's device runtime library is there: grid sync links it (numba-cuda's own check)."""
    from numba.cuda.cudadrv import libs
    try:
        libs.check_static_lib(libs.get_cudalib("cudadevrt", static=True))
    except FileNotFoundError:
        return False
    return True


# ---------------------------------------------------------------------------- kernels

@per_dtype
def kernels(FT) -> SimpleNamespace:  # noqa: C901 - one factory: shared and local arrays need the dtype
    """v4's kernels for float type FT (the phases as device functions, the kernels that run them)."""
    ZERO, ONE = FT(0.0), FT(1.0)
    KT = K_TILE[str(FT)]
    TILE_WIDTH = CHUNK + 1               # padded: transposed stores free of bank conflicts
    ACC_FORWARD = 4 * ROWS               # gate sums per thread
    ACC_BACKWARD = UNITS * ROWS          # dh sums per thread
    ACC_GRAD = TILE_R * TILE_C           # gradient entries per thread
    GRAD_WIDTH = GRAD_ROWS + GRAD_COLS   # the tile holds the left operand's rows, then the right's columns
    TR = GRAD_ROWS // TILE_R             # threads along a gradient tile's rows
    TC = GRAD_COLS // TILE_C             # and along its columns
    F = device_functions(FT)
    cell_forward_at, cell_backward_at, head_row, head_backward = (F.cell_forward_at, F.cell_backward_at,
                                                                  F.head_row, F.head_backward)
    input_gates = F.input_gates
    block_sum, strided_block_sum, record_loss, clip_factor = (F.block_sum, F.strided_block_sum, F.record_loss,
                                                              F.clip_factor)
    param_count, locate, write_flat, sgd_flat = F.param_count, F.locate, F.write_flat, F.sgd_flat

    # ------------------------------------------------------------------ where a block works

    @cuda.jit(device=True)
    def block_id():
        return cuda.blockIdx.y * cuda.gridDim.x + cuda.blockIdx.x

    @cuda.jit(device=True)
    def grid_threads():
        """(this thread's index over the grid, the grid's thread count): grid-stride loops."""
        return block_id() * cuda.blockDim.x + cuda.threadIdx.x, cuda.gridDim.x * cuda.gridDim.y * cuda.blockDim.x

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

    @cuda.jit(device=True)
    def load_gate_rows(wsh, W_hh):
        """wsh[(g*J + j)*H + m] = W_hh[g*H + u0 + j, m]: the block's four gate rows per unit (4J, H)."""
        H = W_hh.shape[1]
        u0, J = block_units(H)
        for e in range(cuda.threadIdx.x, 4 * J * H, cuda.blockDim.x):
            row = e // H
            k = u0 + row % J
            wsh[e] = W_hh[(row // J) * H + k, e % H] if k < H else ZERO
        cuda.syncthreads()

    @cuda.jit(device=True)
    def load_unit_columns(wsh, W_hh):
        """wsh[r*J + j] = W_hh[r, u0 + j]: the block's columns (4H, J), what dh_{t-1} needs."""
        H = W_hh.shape[1]
        u0, J = block_units(H)
        for e in range(cuda.threadIdx.x, 4 * H * J, cuda.blockDim.x):
            k = u0 + e % J
            wsh[e] = W_hh[e // J, k] if k < H else ZERO
        cuda.syncthreads()

    # ------------------------------------------------------------------ one forward step, the head

    @cuda.jit(device=True)
    def forward_step(t, wsh, tile, batch, params, caches):
        """Step t for the block's units and samples: z = (W_ih x_t + b) + W_hh h_{t-1}, the W_hh
        rows from wsh (``load_gate_rows``), h_{t-1} = h[t] from global memory; then the cell."""
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        W_ih = params.W_ih
        bias = params.b
        H = caches.h.shape[2]
        u0, J = block_units(H)
        lo, hi = block_samples(batch.nrows)
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
                    stage(tile, caches.h, t, s0, hi, m0, H)
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
                            x_i, x_f, x_g, x_o = input_gates(batch.X, batch.order[batch.off + b], t, k, W_ih, H)
                            # the reference's order: (W_ih x + b) + W_hh h
                            cell_forward_at(caches, t, b, k, (x_i + bias[k]) + acc[0], (x_f + bias[H + k]) + acc[1],
                                            (x_g + bias[2 * H + k]) + acc[2], (x_o + bias[3 * H + k]) + acc[3])
                        # the next sample's sums to the front: constant indices keep acc in registers
                        for a in range(ACC_FORWARD - 4):
                            acc[a] = acc[a + 4]

    @cuda.jit(device=True)
    def head_rows(batch, task, with_grad, terms, params, caches, outputs, rowloss, row_off):
        """The head of every sample row (device_code's ``head_row``), one thread per row over the whole grid."""
        first, stride = grid_threads()
        for b in range(first, batch.nrows, stride):
            rowloss[row_off + b] = head_row(b, batch, task, with_grad, terms, params, caches, outputs)

    # ------------------------------------------------------------------ one backward step

    @cuda.jit(device=True)
    def backward_step(t, task, wsh, tile, nrows, params, caches, dc_next):
        """BPTT step t for the block's units and samples, the mirror of ``forward_step``:
        dh_t = dout[t] W_y + dz[t+1] W_hh (the W_hh columns from wsh, ``load_unit_columns``;
        no recurrent term at t = T-1), then the cell backward into dz[t] and dc_next."""
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        dz = caches.dz
        T = dz.shape[0]
        H = caches.c.shape[2]
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
                    # backprop z = ... + W_hh h_{t-1} of step t+1: dh_next = dz[t+1] @ W_hh[:, own units]
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
                                head = head_backward(caches.dout, t, b, params.W_y, k) if has_head else ZERO
                                dh_t = head + acc[0] if t < T - 1 else head
                                cell_backward_at(caches, dc_next, t, b, k, dh_t)
                            for a in range(ACC_BACKWARD - 1):   # the next sum to the front (registers)
                                acc[a] = acc[a + 1]

    # ------------------------------------------------------------------ weight gradients

    @cuda.jit(device=True)
    def left_term(kind, q, r, task, nrows, caches):
        """Term q's left operand at output row r: dz[t, b, r] (kind 0) or dout[t, b, r] (kind 1)."""
        if kind == 0:
            return caches.dz[q // nrows, q % nrows, r]
        if task == REGRESSION:
            return caches.dout[caches.dout.shape[0] - 1, q, r]
        return caches.dout[q // nrows, q % nrows, r]

    @cuda.jit(device=True)
    def right_term(kind, q, col, task, nrows, batch, caches):
        """Term q's right operand at column col: [x_t | h_{t-1} | 1] (kind 0) or [h_t | 1] (kind 1)."""
        h = caches.h
        H = h.shape[2]
        D = batch.X.shape[2]
        if kind == 0:
            t = q // nrows
            b = q % nrows
            if col < D:
                return batch.X[batch.order[batch.off + b], t, col]
            if col < D + H:
                return h[t, b, col - D]
            return ONE
        t = h.shape[0] - 2 if task == REGRESSION else q // nrows
        b = q if task == REGRESSION else q % nrows
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
    def grad_tile(kind, r0, c0, part, parts, tile, batch, task, caches, scratch):
        """One GRAD_ROWS x GRAD_COLS tile of the gradient product (see the module docstring) over the
        terms of ``part`` (of ``parts`` equal ranges), into scratch[part]."""
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        nrows = batch.nrows
        T = caches.dz.shape[0]
        D = batch.X.shape[2]
        H = caches.h.shape[2]
        Y = caches.dout.shape[2]
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
                            value = left_term(kind, q, r0 + x, task, nrows, caches)
                    elif q < q_hi and c0 + x - GRAD_ROWS < N:
                        value = right_term(kind, q, c0 + x - GRAD_ROWS, task, nrows, batch, caches)
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
    def grad_tiles(tile, batch, task, caches, scratch, parts):
        """Every (tile, part) of the gradient product, dealt to the blocks in turn, into scratch (parts, n_params)."""
        D = batch.X.shape[2]
        H = caches.h.shape[2]
        Y = caches.dout.shape[2]
        col_tiles = (D + H + 1 + GRAD_COLS - 1) // GRAD_COLS
        gate_tiles = ((4 * H + GRAD_ROWS - 1) // GRAD_ROWS) * col_tiles
        head_col_tiles = (H + 1 + GRAD_COLS - 1) // GRAD_COLS
        head_tiles = ((Y + GRAD_ROWS - 1) // GRAD_ROWS) * head_col_tiles
        for item in range(block_id(), (gate_tiles + head_tiles) * parts, cuda.gridDim.x * cuda.gridDim.y):
            tile_id = item // parts
            part = item % parts
            if tile_id < gate_tiles:
                grad_tile(0, (tile_id // col_tiles) * GRAD_ROWS, (tile_id % col_tiles) * GRAD_COLS, part, parts,
                          tile, batch, task, caches, scratch)
            else:
                i = tile_id - gate_tiles
                grad_tile(1, (i // head_col_tiles) * GRAD_ROWS, (i % head_col_tiles) * GRAD_COLS, part, parts,
                          tile, batch, task, caches, scratch)

    @cuda.jit(device=True)
    def gather_parts(buf, scratch, parts, grads, state):
        """grads = the sum of the parts in part order, grid-wide; state.partial[block] = the block's sum of squares."""
        first, stride = grid_threads()
        sumsq = ZERO
        for idx in range(first, param_count(grads), stride):
            value = ZERO
            for p in range(parts):
                value += scratch[p, idx]
            which, r, col = locate(idx, grads)
            write_flat(which, r, col, value, grads)
            sumsq += value * value
        block_total = block_sum(buf, sumsq)
        if cuda.threadIdx.x == 0:
            state.partial[block_id()] = block_total

    # ------------------------------------------------------------------ clip and SGD over the grid

    @cuda.jit(device=True)
    def update_params(buf, n_partial, settings, params, grads, state):
        """Every block: the global norm from the per-block partials (block order, the same sum in every
        block), the clip scale, then its share of params -= lr * scale * grads; nothing after a stop."""
        scale = clip_factor(strided_block_sum(buf, state.partial, n_partial), settings)
        if state.status[0] == 0:
            step = FT(settings.lr * scale)
            first, stride = grid_threads()
            for idx in range(first, param_count(params), stride):
                which, r, col = locate(idx, params)
                sgd_flat(which, r, col, step, params, grads)

    # ------------------------------------------------------------------ per-step launches

    @cuda.jit
    def forward_kernel(batch: BATCH, t: INT, params: PARAMS, caches: CACHES):
        """One forward step (grid: unit slices x sample groups; dynamic shared memory: the W_hh rows)."""
        wsh = cuda.shared.array(0, FT)
        tile = cuda.shared.array((KT, TILE_WIDTH), FT)
        load_gate_rows(wsh, params.W_hh)
        forward_step(t, wsh, tile, batch, params, caches)

    @cuda.jit
    def head_kernel(batch: BATCH, task: INT, with_grad: INT, terms: INT, params: PARAMS, caches: CACHES,
                    outputs: FLOATS_3D, rowloss: FLOATS_1D, row_off: INT):
        head_rows(batch, task, with_grad, terms, params, caches, outputs, rowloss, row_off)

    @cuda.jit
    def backward_kernel(batch: BATCH, t: INT, task: INT, params: PARAMS, caches: CACHES, dc_next: FLOATS_2D):
        """One BPTT step (grid as forward_kernel; dynamic shared memory: the W_hh columns)."""
        wsh = cuda.shared.array(0, FT)
        tile = cuda.shared.array((KT, TILE_WIDTH), FT)
        load_unit_columns(wsh, params.W_hh)
        backward_step(t, task, wsh, tile, batch.nrows, params, caches, dc_next)

    @cuda.jit
    def grads_kernel(batch: BATCH, task: INT, caches: CACHES, scratch: FLOATS_2D, parts: INT):
        """The gradient product's tiles, each over ``parts`` ranges of terms, into scratch."""
        tile = cuda.shared.array((KT, TILE_WIDTH), FT)
        grad_tiles(tile, batch, task, caches, scratch, parts)

    @cuda.jit
    def gather_kernel(scratch: FLOATS_2D, parts: INT, grads: PARAMS, state: EPOCH):
        """The five gradients from the parts, and the per-block sums of squares."""
        buf = cuda.shared.array(REDUCE_THREADS, FT)
        gather_parts(buf, scratch, parts, grads, state)

    @cuda.jit
    def update_kernel(n_partial: INT, settings: SGD, params: PARAMS, grads: PARAMS, state: EPOCH):
        buf = cuda.shared.array(REDUCE_THREADS, FT)
        update_params(buf, n_partial, settings, params, grads, state)

    # ------------------------------------------------------------------ one cooperative launch

    @cuda.jit
    def minibatch_kernel(batch: BATCH, task: INT, phase: INT, terms: INT, k: INT, params: PARAMS, caches: CACHES,
                         dc_next: FLOATS_2D, outputs: FLOATS_3D, rowloss: FLOATS_1D, row_off: INT, settings: SGD,
                         grads: PARAMS, scratch: FLOATS_2D, parts: INT, state: EPOCH):
        """A whole minibatch in one cooperative launch: the phases of the per-step kernels, grid-wide
        barriers between them, the W_hh slice kept in shared memory across the steps.

        phase VALIDATE: forward and head, row losses only; FORWARD: + the loss into losses[k];
        BACKWARD: + BPTT and the gradients; UPDATE: + clip and SGD.
        """
        wsh = cuda.shared.array(0, FT)
        tile = cuda.shared.array((KT, TILE_WIDTH), FT)
        buf = cuda.shared.array(REDUCE_THREADS, FT)
        grid = cuda.cg.this_grid()
        train = phase >= BACKWARD
        T = caches.dz.shape[0]
        load_gate_rows(wsh, params.W_hh)
        for t in range(T):
            forward_step(t, wsh, tile, batch, params, caches)
            grid.sync()
        head_rows(batch, task, 1 if train else 0, terms, params, caches, outputs, rowloss, row_off)
        grid.sync()
        if phase >= 0 and block_id() == 0:
            # the reference stops at a non-finite loss only when it trains
            total = strided_block_sum(buf, rowloss, batch.nrows)
            if cuda.threadIdx.x == 0:
                record_loss(total, terms, state, k, 1 if train else 0, 0)
        if train:
            cuda.syncthreads()   # wsh now gets the columns
            load_unit_columns(wsh, params.W_hh)
            for t in range(T - 1, -1, -1):
                backward_step(t, task, wsh, tile, batch.nrows, params, caches, dc_next)
                grid.sync()
            grad_tiles(tile, batch, task, caches, scratch, parts)
            grid.sync()
            gather_parts(buf, scratch, parts, grads, state)
        if phase == UPDATE:
            grid.sync()
            update_params(buf, cuda.gridDim.x * cuda.gridDim.y, settings, params, grads, state)

    return SimpleNamespace(forward_kernel=forward_kernel, head_kernel=head_kernel, backward_kernel=backward_kernel,
                           grads_kernel=grads_kernel, gather_kernel=gather_kernel, update_kernel=update_kernel,
                           minibatch_kernel=minibatch_kernel)


# ---------------------------------------------------------------------------- the version

class UnitSliceWorkspace(Workspace):
    """Adds the head outputs (T, B, Y), the gradient parts' scratch (parts, n_params) and the plan."""

    def __init__(self, run, nrows: int, geometry: Plan, cooperative: bool):
        super().__init__(run, nrows)
        self.plan = geometry
        self.cooperative = cooperative
        self.outputs = run.zeros(run.T, nrows, run.Y)
        self.scratch = run.zeros(geometry.parts, run.n_params)


class UnitSlices(KernelVersion):
    """Version 4 (see the module docstring).

    ``cooperative``: None runs one cooperative launch per minibatch on a GPU whenever the grid can
    be resident at once and per-step launches otherwise (and on the simulator, and without CUDA's
    device runtime library, which grid sync links); True or False forces
    one way (the simulator runs cooperative grids of one block only, so True there means one block).
    ``threads`` and ``target_blocks`` set the plan; results do not depend on them.
    """

    number = 4
    description = ("hidden units split over blocks with their W_hh slice in shared memory, several samples per "
                   "block, tiled fixed-order gradients, grid-wide clip and SGD; one cooperative launch per minibatch")
    kernels_for = staticmethod(kernels)
    workspace_class = UnitSliceWorkspace
    cooperative: bool | None = None
    threads = THREADS
    target_blocks = 512

    def __init__(self, run):
        super().__init__(run)
        most = max(ws.plan.blocks for ws in self.workspaces.values())
        if run.state.partial.shape[0] < most:   # one sum of squares per block of the largest grid
            run.state = run.state._replace(partial=cuda.device_array(most, run.dtype))

    @classmethod
    def check_sizes(cls, D: int, H: int, Y: int, dtype) -> None:
        if H > max_hidden(dtype):
            Plan(H, 1, dtype, 1, 1, cls.threads)   # raises the UserError that names the limit and kernel_version 2

    @classmethod
    def runs_cooperative(cls) -> bool:
        """The launch mode the documented counts describe (a GPU grid too large to be resident runs per step)."""
        if cls.cooperative is None:
            return gpu_present() and cudadevrt_found()
        return cls.cooperative

    @classmethod
    def launches_per_minibatch(cls, T: int) -> int:
        return 1 if cls.runs_cooperative() else 2 * T + 5

    @classmethod
    def launches_per_validation(cls, T: int, n_valid: int, batch_size: int) -> int:
        chunks = batch_bounds(n_valid, batch_size).size - 1
        return chunks * (1 if cls.runs_cooperative() else T + 1) + 1

    def workspace_rows(self) -> set[int]:
        """Training minibatches and the validation chunks of batch_size rows."""
        return super().workspace_rows() | set(np.diff(batch_bounds(self.run.n_valid, self.run.batch_size)).tolist())

    def workspace(self, nrows: int) -> UnitSliceWorkspace:
        if nrows not in self.workspaces:
            geometry, cooperative = self.geometry(nrows)
            self.workspaces[nrows] = UnitSliceWorkspace(self.run, nrows, geometry, cooperative)
        return self.workspaces[nrows]

    def geometry(self, nrows: int) -> tuple[Plan, bool]:
        """The plan for nrows rows and whether it runs as one cooperative launch."""
        run = self.run
        sizes = (run.T, run.D, run.H, run.Y, nrows, run.dtype)
        if not self.runs_cooperative():
            return plan(*sizes, target_blocks=self.target_blocks, threads=self.threads), False
        return resident_plan(*sizes, self.resident_blocks, target_blocks=self.target_blocks, threads=self.threads)

    def resident_blocks(self, geometry: Plan) -> int:
        """How many blocks of the cooperative kernel can be resident at once (the simulator runs one)."""
        return cooperative_capacity(self.run.dtype, self.run.task_name, geometry)

    # ------------------------------------------------------------------ launch sequences

    def forward_steps(self, ws: UnitSliceWorkspace, batch: Batch) -> None:
        p = ws.plan
        for t in range(self.run.T):
            self.run.launcher.launch(self.kernels.forward_kernel, p.grid, p.threads, batch, t, self.run.params,
                                     ws.caches, shared_bytes=p.shared_bytes)

    def head(self, ws: UnitSliceWorkspace, batch: Batch, rowloss, row_off: int, with_grad: bool) -> None:
        run, p = self.run, ws.plan
        run.launcher.launch(self.kernels.head_kernel, p.grid, p.threads, batch, run.task, 1 if with_grad else 0,
                            run.loss_terms(batch.nrows), run.params, ws.caches, ws.outputs, rowloss, row_off)

    def backward(self, ws: UnitSliceWorkspace, batch: Batch) -> None:
        """BPTT steps, the gradient tiles and their gather (dz, then every gradient into run.grads)."""
        run, p, K = self.run, ws.plan, self.kernels
        L = run.launcher
        for t in range(run.T - 1, -1, -1):
            L.launch(K.backward_kernel, p.grid, p.threads, batch, t, run.task, run.params, ws.caches, ws.dc_next,
                     shared_bytes=p.shared_bytes)
        L.launch(K.grads_kernel, p.grid, p.threads, batch, run.task, ws.caches, ws.scratch, p.parts)
        L.launch(K.gather_kernel, p.grid, p.threads, ws.scratch, p.parts, run.grads, run.state)

    def cooperative_launch(self, ws: UnitSliceWorkspace, batch: Batch, phase: int, k: int, rowloss,
                           row_off: int) -> None:
        run, p = self.run, ws.plan
        run.launcher.launch(self.kernels.minibatch_kernel, p.grid, p.threads, batch, run.task, phase,
                            run.loss_terms(batch.nrows), k, run.params, ws.caches, ws.dc_next, ws.outputs, rowloss,
                            row_off, run.settings, run.grads, ws.scratch, p.parts, run.state,
                            shared_bytes=p.shared_bytes)

    def minibatch(self, k: int, off: int, nrows: int, phase: int) -> None:
        run = self.run
        ws, batch = self.workspace(nrows), run.train.rows(off, nrows)
        if ws.cooperative:
            self.cooperative_launch(ws, batch, phase, k, ws.rowloss, 0)
            return
        self.forward_steps(ws, batch)
        self.head(ws, batch, ws.rowloss, 0, with_grad=phase >= BACKWARD)
        stop = 1 if phase >= BACKWARD else 0   # the reference stops at a non-finite loss only when it trains
        run.launcher.launch(run.shared.loss_reduce, 1, REDUCE_THREADS, ws.rowloss, nrows, run.loss_terms(nrows),
                            run.state, k, stop, 0)
        if phase >= BACKWARD:
            self.backward(ws, batch)
        if phase == UPDATE:
            run.launcher.launch(self.kernels.update_kernel, ws.plan.grid, ws.plan.threads, ws.plan.blocks,
                                run.settings, run.params, run.grads, run.state)

    def forward_rows(self, ws, batch: Batch, rowloss, row_off: int) -> None:
        if ws.cooperative:
            self.cooperative_launch(ws, batch, VALIDATE, 0, rowloss, row_off)
        else:
            self.forward_steps(ws, batch)
            self.head(ws, batch, rowloss, row_off, with_grad=False)
