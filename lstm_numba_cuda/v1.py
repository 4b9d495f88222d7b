"""Kernel version 1: one kernel per operation per time step.

Letters: B minibatch rows, T time steps, D input features, H hidden units, Y outputs.

Forward: a device gather of the minibatch (time-major Xb), the input projection for all T steps
as one tiled shared-memory matmul (it does not depend on h), then per step a recurrent matmul
and an elementwise gate kernel; the row-per-thread head. Backward: per step a gate-backward
kernel and a matmul for dh; then matmuls and column sums for the weight gradients. Loss, clip
scale and SGD are kernels too (device_code.shared_kernels).

Launches per minibatch: 4T + 10 (forward 2T + 3, backward 2T + 4, loss, clip scale, SGD);
validation: 2T + 3 per chunk of batch_size rows, then 1 for the loss.

    train(params, data, TrainConfig(..., kernel_version=1))
"""
from __future__ import annotations

from types import SimpleNamespace

from numba import cuda

from parallel_lstm.lstm_numpy.contract import REGRESSION

from .arguments import CACHES, FLOATS_1D, FLOATS_2D, FLOATS_3D, INT, Batch
from .device_code import BLOCK, TILE, blocks, device_functions, per_dtype
from .version_base import DeviceRun, StepwiseVersion, StepwiseWorkspace


@per_dtype
def kernels(FT) -> SimpleNamespace:
    """v1's kernels for float type FT."""
    ZERO = FT(0.0)
    F = device_functions(FT)
    cell_forward_at, cell_backward_at = F.cell_forward_at, F.cell_backward_at

    @cuda.jit
    def matmul(A: FLOATS_2D, trans_a: INT, Bm: FLOATS_2D, trans_b: INT, C: FLOATS_2D, bias: FLOATS_1D,
               use_bias: INT, addend: FLOATS_2D, use_addend: INT):
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
    def colsum(A: FLOATS_2D, out: FLOATS_1D):
        """out[n] = sum over rows m of A[m, n], rows in order (db, db_y)."""
        n = cuda.grid(1)
        if n < out.shape[0]:
            acc = ZERO
            for m in range(A.shape[0]):
                acc += A[m, n]
            out[n] = acc

    @cuda.jit
    def gates_forward(caches: CACHES, t: INT, nrows: INT):
        """Step t: activate the pre-activations in gates[t] in place, then c[t+1], tanh_c[t], h[t+1]."""
        i = cuda.grid(1)
        H = caches.h.shape[2]
        if i < nrows * H:
            b = i // H
            k = i % H
            g = caches.gates
            cell_forward_at(caches, t, b, k, g[t, b, k], g[t, b, H + k], g[t, b, 2 * H + k], g[t, b, 3 * H + k])

    @cuda.jit
    def gates_backward(caches: CACHES, dh_head: FLOATS_3D, dh_next: FLOATS_2D, dc_next: FLOATS_2D, t: INT,
                       nrows: INT):
        """Step t of BPTT: dh_t = dh_head[t] + dh_next (zero at t = T-1), then dz[t] and dc_next."""
        i = cuda.grid(1)
        T = caches.gates.shape[0]
        H = caches.c.shape[2]
        if i < nrows * H:
            b = i // H
            k = i % H
            if t == T - 1:
                dc_next[b, k] = ZERO
                dh_t = dh_head[t, b, k]
            else:
                dh_t = dh_head[t, b, k] + dh_next[b, k]
            cell_backward_at(caches, dc_next, t, b, k, dh_t)

    return SimpleNamespace(matmul=matmul, colsum=colsum, gates_forward=gates_forward, gates_backward=gates_backward)


class OperationWorkspace(StepwiseWorkspace):
    """Adds the gathered minibatch Xb (T, B, D), its projection xproj (T, B, 4H), dh_next (B, H), and the
    2-D views the matmuls use, made once (a view per launch would cost host time)."""

    def __init__(self, run: DeviceRun, nrows: int):
        super().__init__(run, nrows)
        T, D, H, Y = run.T, run.D, run.H, run.Y
        caches = self.caches
        self.Xb = run.zeros(T, nrows, D)
        self.xproj = run.zeros(T, nrows, 4 * H)
        self.dh_next = run.zeros(nrows, H)
        self.Xb_rows = self.Xb.reshape(T * nrows, D)
        self.xproj_rows = self.xproj.reshape(T * nrows, 4 * H)
        self.dz_rows = caches.dz.reshape(T * nrows, 4 * H)
        self.h_prev_rows = caches.h[:T].reshape(T * nrows, H)
        self.h_next_rows = caches.h[1:].reshape(T * nrows, H)
        self.dout_rows = caches.dout.reshape(T * nrows, Y)
        self.h_at = [caches.h[t] for t in range(T + 1)]
        self.gates_at = [caches.gates[t] for t in range(T)]
        self.xproj_at = [self.xproj[t] for t in range(T)]
        self.dz_at = [caches.dz[t] for t in range(T)]
        self.dout_last = caches.dout[T - 1]


class OneKernelPerOperation(StepwiseVersion):
    """Version 1 (see the module docstring)."""

    number = 1
    description = "one kernel per operation per time step (tiled shared-memory matmuls, elementwise gate kernels)"
    workspace_class = OperationWorkspace
    kernels_for = staticmethod(kernels)

    @staticmethod
    def launches_per_minibatch(T: int) -> int:
        return 4 * T + 10

    @staticmethod
    def launches_per_validation(T: int, n_valid: int, batch_size: int) -> int:
        return (2 * T + 3) * blocks(n_valid, batch_size) + 1

    def matmul(self, A, B, C, trans_a=False, trans_b=False, bias=None, addend=None) -> None:
        """C = op(A) @ op(B) [+ bias] [+ addend], one launch; unused bias/addend slots get placeholders."""
        run = self.run
        M, N = C.shape
        run.launcher.launch(self.kernels.matmul, (blocks(N, TILE), blocks(M, TILE)), (TILE, TILE),
                            A, int(trans_a), B, int(trans_b), C,
                            run.params.b if bias is None else bias, 0 if bias is None else 1,
                            run.params.W_hh if addend is None else addend, 0 if addend is None else 1)

    def forward_steps(self, ws: OperationWorkspace, batch: Batch) -> None:
        run, p = self.run, self.run.params
        launch, nrows = run.launcher.launch, batch.nrows
        launch(run.shared.gather_x, blocks(run.T * nrows * run.D, BLOCK), BLOCK, batch, ws.Xb)
        # the input projection does not depend on h: all T steps in one launch, xproj = X W_ih^T + b
        self.matmul(ws.Xb_rows, p.W_ih, ws.xproj_rows, trans_b=True, bias=p.b)
        for t in range(run.T):
            # z_t = h_{t-1} W_hh^T + xproj_t, then the activations and the state update
            self.matmul(ws.h_at[t], p.W_hh, ws.gates_at[t], trans_b=True, addend=ws.xproj_at[t])
            launch(self.kernels.gates_forward, blocks(nrows * run.H, BLOCK), BLOCK, ws.caches, t, nrows)

    def backward(self, ws: OperationWorkspace, batch: Batch) -> None:
        run, p, g = self.run, self.run.params, self.run.grads
        launch, T, nrows = run.launcher.launch, run.T, batch.nrows
        for t in range(T - 1, -1, -1):
            launch(self.kernels.gates_backward, blocks(nrows * run.H, BLOCK), BLOCK, ws.caches, ws.dh_head,
                   ws.dh_next, ws.dc_next, t, nrows)
            if t > 0:   # backprop z = ... + W_hh h_prev: dh_next (B, H) = dz[t] (B, 4H) @ W_hh (4H, H)
                self.matmul(ws.dz_at[t], p.W_hh, ws.dh_next)
        self.matmul(ws.dz_rows, ws.Xb_rows, g.W_ih, trans_a=True)                        # dW_ih = dz^T X
        self.matmul(ws.dz_rows, ws.h_prev_rows, g.W_hh, trans_a=True)                    # dW_hh = dz^T h_prev
        launch(self.kernels.colsum, blocks(4 * run.H, BLOCK), BLOCK, ws.dz_rows, g.b)    # db
        if run.task == REGRESSION:
            dout, h_head = ws.dout_last, ws.h_at[T]
        else:
            dout, h_head = ws.dout_rows, ws.h_next_rows
        self.matmul(dout, h_head, g.W_y, trans_a=True)                                   # dW_y = dout^T h
        launch(self.kernels.colsum, blocks(run.Y, BLOCK), BLOCK, dout, g.b_y)            # db_y
