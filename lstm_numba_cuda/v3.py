"""Kernel version 3: a persistent kernel (one block per sample) and one gradient/norm/SGD launch.

Letters: B minibatch rows, T time steps, D input features, H hidden units, Y outputs.

The persistent kernel runs the whole forward pass, the head and BPTT of one sample per block,
the time loop inside the kernel, with h, c, the gates and the head outputs in shared memory
(rows are independent in the recurrence, so no block waits for another). The second launch
computes the weight gradients, the loss, the global norm and the clip scale (a deterministic
last-block reduction: an integer ticket, never a float atomic) and applies SGD. It uses the cell
and head device functions of device_code, as v1 and v2 do.

Launches per minibatch: 2; validation: 2 (one persistent launch over every validation row, the loss).
Known costs, not yet measured on a GPU: every block re-reads W_hh (4H, H) each step (no reuse
across samples), the gradient pass sums T*B terms per parameter without shared-memory tiling,
and the SGD update runs in the last block alone. One sample's state must fit the shared memory
of a launch: (6H + Y) floats.

    train(params, data, TrainConfig(...))   or kernel_version=3 (the default)
"""
from __future__ import annotations

from types import SimpleNamespace

import numba
import numpy as np
from numba import cuda

from parallel_lstm.lstm_numpy.contract import BACKWARD, CLASSIFICATION, UPDATE
from parallel_lstm.lstm_numpy.errors import UserError

from .arguments import BATCH, CACHES, EPOCH, FLOATS_1D, INT, PARAMS, SGD, Batch
from .device_code import PERSISTENT_THREADS, REDUCE_THREADS, blocks, device_functions, per_dtype
from .version_base import KernelVersion, Workspace

SHARED_MEMORY_LIMIT = 48 * 1024   # bytes of dynamic shared memory a launch gets without opting in

# persistent kernel modes: what it keeps besides the loss
LOSS_ONLY, KEEP_CACHES, WITH_BPTT = 0, 1, 2


def persistent_shared_bytes(H: int, Y: int, dtype) -> int:
    """The persistent kernel keeps h, c, the gates (4H) and the head outputs of one sample in shared memory."""
    return (6 * H + Y) * np.dtype(dtype).itemsize


@per_dtype
def kernels(FT) -> SimpleNamespace:
    """v3's kernels for float type FT."""
    ZERO = FT(0.0)
    F = device_functions(FT)
    activate, cell_state, cell_cache, cell_backward = F.activate, F.cell_state, F.cell_cache, F.cell_backward
    head_output, head_loss, head_backward = F.head_output, F.head_loss, F.head_backward
    block_sum, strided_block_sum, record_loss, clip_factor = (F.block_sum, F.strided_block_sum, F.record_loss,
                                                              F.clip_factor)
    param_count, locate, write_flat, sgd_flat, grad_element = (F.param_count, F.locate, F.write_flat, F.sgd_flat,
                                                               F.grad_element)

    @cuda.jit
    def persistent(batch: BATCH, task: INT, mode: INT, terms: INT, params: PARAMS, caches: CACHES,
                   rowloss: FLOATS_1D, row_off: INT):
        """One block per sample row b runs the whole forward pass, the head and (mode WITH_BPTT) BPTT.

        Dynamic shared memory (6H + Y floats): h_t, c_t, the step's gates and the head outputs
        (forward); the same space holds dh, dc and dz of step t+1 (backward). Any block size is
        correct: loops stride by blockDim. mode LOSS_ONLY: rowloss only (validation, nothing
        cached); KEEP_CACHES: also the caches and dout (predict); WITH_BPTT: also dz for the
        gradient pass. terms: the loss denominator (contract.loss_terms).
        """
        shared = cuda.shared.array(0, FT)
        b = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        nthreads = cuda.blockDim.x
        W_ih = params.W_ih
        W_hh = params.W_hh
        W_y = params.W_y
        X = batch.X
        H = W_y.shape[1]   # head_output loops to W_y.shape[1]: one value for both saves registers
        D = W_ih.shape[1]
        Y = W_y.shape[0]
        T = X.shape[1]
        hs = shared[0:H]
        cs = shared[H:2 * H]
        gs = shared[2 * H:6 * H]
        ls = shared[6 * H:6 * H + Y]
        keep = mode >= KEEP_CACHES
        valid_row = b < batch.nrows
        n = batch.order[batch.off + b] if valid_row else 0
        for k in range(tid, H, nthreads):
            hs[k] = ZERO
            cs[k] = ZERO
        loss = ZERO        # meaningful in thread 0
        cuda.syncthreads()
        for t in range(T):
            # z_t = (W_ih x_t + b) + W_hh h_{t-1}, one gate row j per thread, activated
            for j in range(tid, 4 * H, nthreads):
                zx = ZERO
                for d in range(D):
                    zx += W_ih[j, d] * X[n, t, d]
                zx += params.b[j]
                zh = ZERO
                for m in range(H):
                    zh += W_hh[j, m] * hs[m]
                value = activate(zx + zh, j // H)
                gs[j] = value
                if keep and valid_row:
                    caches.gates[t, b, j] = value
            cuda.syncthreads()
            for k in range(tid, H, nthreads):
                c_new, tc, h_new = cell_state(gs[k], gs[H + k], gs[2 * H + k], gs[3 * H + k], cs[k])
                cs[k] = c_new
                hs[k] = h_new
                if keep and valid_row:
                    caches.c[t + 1, b, k] = c_new
                    caches.tanh_c[t, b, k] = tc
                    caches.h[t + 1, b, k] = h_new
            cuda.syncthreads()
            if task == CLASSIFICATION or t == T - 1:
                for y in range(tid, Y, nthreads):
                    ls[y] = head_output(hs, W_y, params.b_y, y)
                cuda.syncthreads()
                if tid == 0 and valid_row:
                    loss += head_loss(task, ls, batch.targets, n, t, keep, terms, caches.dout, b)
                cuda.syncthreads()
        if tid == 0 and valid_row:
            rowloss[row_off + b] = loss
        if mode == WITH_BPTT:
            # dhs: dh_t (the head's plus dh_next from step t+1); dcs: dc_next; dzs: dz[t+1], then dz[t]
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
                        head = head_backward(caches.dout, t, b, W_y, k)
                    if t == T - 1:
                        dhs[k] = head
                    else:
                        # backprop z = ... + W_hh h_prev: the next step's dz through W_hh
                        recurrent = ZERO
                        for j in range(4 * H):
                            recurrent += dzs[j] * W_hh[j, k]
                        dhs[k] = head + recurrent
                cuda.syncthreads()   # every thread has read dz[t+1] before it is overwritten
                for k in range(tid, H, nthreads):
                    gi = ZERO
                    gf = ZERO
                    gg = ZERO
                    go = ZERO
                    tc = ZERO
                    c_prev = ZERO
                    if valid_row:
                        gi, gf, gg, go, tc, c_prev = cell_cache(caches, t, b, k)
                    dz_i, dz_f, dz_g, dz_o, dc_prev = cell_backward(dhs[k], dcs[k], gi, gf, gg, go, tc, c_prev)
                    dcs[k] = dc_prev
                    dzs[k] = dz_i
                    dzs[H + k] = dz_f
                    dzs[2 * H + k] = dz_g
                    dzs[3 * H + k] = dz_o
                    if valid_row:
                        caches.dz[t, b, k] = dz_i
                        caches.dz[t, b, H + k] = dz_f
                        caches.dz[t, b, 2 * H + k] = dz_g
                        caches.dz[t, b, 3 * H + k] = dz_o
                cuda.syncthreads()

    @cuda.jit
    def finish(batch: BATCH, task: INT, phase: INT, terms: INT, k: INT, caches: CACHES, rowloss: FLOATS_1D,
               settings: SGD, params: PARAMS, grads: PARAMS, state: EPOCH):
        """The second launch: gradients, loss, global norm, clip scale and SGD in one kernel.

        Each block computes a slice of the gradients and its partial sum of squares; the last
        block to finish (an integer ticket, never a float atomic) reduces the partials in block
        order, writes losses[k] and the stop flag, and applies the update to every parameter.
        phase FORWARD: loss only; BACKWARD: + gradients; UPDATE: + update.
        """
        buf = cuda.shared.array(REDUCE_THREADS, FT)
        last = cuda.shared.array(1, numba.int32)
        tid = cuda.threadIdx.x
        total = param_count(grads)
        idx = cuda.grid(1)
        square = ZERO
        if phase >= BACKWARD and idx < total:
            which, r, col = locate(idx, grads)
            value = grad_element(which, r, col, batch, task, caches)
            square = value * value
            write_flat(which, r, col, value, grads)
        cuda.threadfence()   # this thread's gradient entry visible to the last block before any ticket is taken
        block_total = block_sum(buf, square)
        if tid == 0:
            state.partial[cuda.blockIdx.x] = block_total
            cuda.threadfence()
            ticket = cuda.atomic.add(state.counter, 0, 1)
            last[0] = 1 if ticket == cuda.gridDim.x - 1 else 0
        cuda.syncthreads()
        if last[0] == 1:
            cuda.threadfence()
            total_sq = strided_block_sum(buf, state.partial, cuda.gridDim.x)
            total_loss = strided_block_sum(buf, rowloss, batch.nrows)
            if tid == 0:
                record_loss(total_loss, terms, state, k, 1 if phase >= BACKWARD else 0, 0)
                state.scale[0] = clip_factor(total_sq, settings)
            cuda.syncthreads()
            if phase == UPDATE and state.status[0] == 0:
                step = FT(settings.lr * state.scale[0])
                for i in range(tid, total, REDUCE_THREADS):
                    which, r, col = locate(i, grads)   # the shapes of params: one set of sizes for the kernel
                    sgd_flat(which, r, col, step, params, grads)
            if tid == 0:
                state.counter[0] = 0   # ready for the next launch

    return SimpleNamespace(persistent=persistent, finish=finish)


class PersistentKernel(KernelVersion):
    """Version 3 (see the module docstring). ``threads_per_block`` of the persistent kernel may be changed:
    the result does not depend on it."""

    number = 3
    description = "persistent kernel (one block per sample runs forward + BPTT) + one gradient/norm/SGD launch"
    workspace_class = Workspace
    kernels_for = staticmethod(kernels)
    threads_per_block = PERSISTENT_THREADS

    @classmethod
    def check_sizes(cls, D: int, H: int, Y: int, dtype) -> None:
        needed = persistent_shared_bytes(H, Y, dtype)
        if needed > SHARED_MEMORY_LIMIT:
            raise UserError(f"kernel_version 3 keeps one sample's state in shared memory, {needed} bytes for H={H} "
                            f"in {np.dtype(dtype)}, over the {SHARED_MEMORY_LIMIT}-byte limit; use kernel_version 2 "
                            f"or a smaller H.")

    @staticmethod
    def launches_per_minibatch(T: int) -> int:
        return 2

    @staticmethod
    def launches_per_validation(T: int, n_valid: int, batch_size: int) -> int:
        return 2

    def persistent(self, ws: Workspace, batch: Batch, mode: int, rowloss, row_off: int = 0) -> None:
        run = self.run
        run.launcher.launch(self.kernels.persistent, batch.nrows, self.threads_per_block, batch, run.task, mode,
                            run.loss_terms(batch.nrows), run.params, ws.caches, rowloss, row_off,
                            shared_bytes=persistent_shared_bytes(run.H, run.Y, run.dtype))

    def minibatch(self, k: int, off: int, nrows: int, phase: int) -> None:
        """Two launches: the persistent forward (+ BPTT) kernel, then gradients + loss + norm + SGD."""
        run = self.run
        ws, batch = self.workspace(nrows), run.train.rows(off, nrows)
        self.persistent(ws, batch, WITH_BPTT if phase >= BACKWARD else LOSS_ONLY, ws.rowloss)
        grid = blocks(run.n_params, REDUCE_THREADS) if phase >= BACKWARD else 1
        run.launcher.launch(self.kernels.finish, grid, REDUCE_THREADS, batch, run.task, phase,
                            run.loss_terms(nrows), k, ws.caches, ws.rowloss, run.settings, run.params, run.grads,
                            run.state)

    def validate(self) -> None:
        """All validation rows in one launch; LOSS_ONLY writes no cache, so any workspace serves as the argument."""
        run = self.run
        self.persistent(self.workspace(int(run.bounds[1])), run.valid, LOSS_ONLY, run.valid_rowloss)
        self.validation_loss()

    def forward(self, batch: Batch) -> Workspace:
        ws = self.workspace(batch.nrows)
        self.persistent(ws, batch, KEEP_CACHES, ws.rowloss)
        return ws
