"""Kernel version 2: fused step kernels.

Letters: B minibatch rows, T time steps, D input features, H hidden units, Y outputs.

One launch per step does the input and recurrent products, the gate activations and the state
update (a thread owns unit k of row b and computes its four gates, so c and h need no second
pass); the row-per-thread head; one launch per BPTT step does dh = dh_head + dz[t+1] @ W_hh and
the cell backward; one weight-gradient pass after the time loop computes all five gradients.
Loss, clip scale and SGD as in v1 (device_code.shared_kernels).

Launches per minibatch: 2T + 5 (forward T + 1, backward T + 1, loss, clip scale, SGD);
validation: T + 1 per chunk of batch_size rows, then 1 for the loss.

    train(params, data, TrainConfig(..., kernel_version=2))
"""
from __future__ import annotations

from types import SimpleNamespace

from numba import cuda

from .arguments import BATCH, CACHES, FLOATS_2D, FLOATS_3D, INT, PARAMS, Batch
from .device_code import BLOCK, blocks, device_functions, per_dtype
from .version_base import StepwiseVersion, StepwiseWorkspace


@per_dtype
def kernels(FT) -> SimpleNamespace:
    """v2's kernels for float type FT."""
    ZERO = FT(0.0)
    F = device_functions(FT)
    input_gates, cell_forward_at, cell_backward_at = F.input_gates, F.cell_forward_at, F.cell_backward_at
    param_count, locate, write_flat, grad_element = F.param_count, F.locate, F.write_flat, F.grad_element

    @cuda.jit
    def step_forward(batch: BATCH, t: INT, params: PARAMS, caches: CACHES):
        """Step t: z = (W_ih x_t + b) + W_hh h_{t-1}, the activations and the state update.

        Grid (ceil(H / BLOCK), B): a thread owns unit k of row b; h_{t-1}[b] is staged through
        shared memory in chunks of BLOCK.
        """
        h_chunk = cuda.shared.array(BLOCK, FT)
        k = cuda.blockIdx.x * BLOCK + cuda.threadIdx.x
        b = cuda.blockIdx.y
        nrows = batch.nrows
        W_ih = params.W_ih
        W_hh = params.W_hh
        h = caches.h
        H = h.shape[2]
        active = k < H and b < nrows
        z_i = ZERO
        z_f = ZERO
        z_g = ZERO
        z_o = ZERO
        if active:
            z_i, z_f, z_g, z_o = input_gates(batch.X, batch.order[batch.off + b], t, k, W_ih, H)
            z_i += params.b[k]
            z_f += params.b[H + k]
            z_g += params.b[2 * H + k]
            z_o += params.b[3 * H + k]
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
            cell_forward_at(caches, t, b, k, z_i + r_i, z_f + r_f, z_g + r_g, z_o + r_o)

    @cuda.jit
    def step_backward(caches: CACHES, dh_head: FLOATS_3D, params: PARAMS, dc_next: FLOATS_2D, t: INT, nrows: INT):
        """BPTT step t: dh_t = dh_head[t] + dz[t+1] @ W_hh, then the cell backward into dz[t] and dc_next.

        Grid (ceil(H / BLOCK), B); dz[t+1, b] is staged through shared memory in chunks of BLOCK.
        """
        dz_chunk = cuda.shared.array(BLOCK, FT)
        k = cuda.blockIdx.x * BLOCK + cuda.threadIdx.x
        b = cuda.blockIdx.y
        T = caches.gates.shape[0]
        H = caches.c.shape[2]
        dz = caches.dz
        active = k < H and b < nrows
        dh_next = ZERO
        if t < T - 1:
            # backprop z = ... + W_hh h_prev: the next step's dz through W_hh
            for j0 in range(0, 4 * H, BLOCK):
                j_load = j0 + cuda.threadIdx.x
                dz_chunk[cuda.threadIdx.x] = dz[t + 1, b, j_load] if (j_load < 4 * H and b < nrows) else ZERO
                cuda.syncthreads()
                if active:
                    for jj in range(min(BLOCK, 4 * H - j0)):
                        dh_next += dz_chunk[jj] * params.W_hh[j0 + jj, k]
                cuda.syncthreads()
        if active:
            if t == T - 1:
                dc_next[b, k] = ZERO
                dh_t = dh_head[t, b, k]
            else:
                dh_t = dh_head[t, b, k] + dh_next
            cell_backward_at(caches, dc_next, t, b, k, dh_t)

    @cuda.jit
    def weight_grads(batch: BATCH, task: INT, caches: CACHES, grads: PARAMS):
        """All five gradients in one pass after the time loop, one thread per parameter entry."""
        idx = cuda.grid(1)
        if idx < param_count(grads):
            which, r, col = locate(idx, grads)
            value = grad_element(which, r, col, batch, task, caches)
            write_flat(which, r, col, value, grads)

    return SimpleNamespace(step_forward=step_forward, step_backward=step_backward, weight_grads=weight_grads)


class FusedStepKernels(StepwiseVersion):
    """Version 2 (see the module docstring)."""

    number = 2
    description = ("fused step kernels (recurrent product + activations + state update per launch), "
                   "one weight-gradient pass")
    workspace_class = StepwiseWorkspace
    kernels_for = staticmethod(kernels)

    @staticmethod
    def launches_per_minibatch(T: int) -> int:
        return 2 * T + 5

    @staticmethod
    def launches_per_validation(T: int, n_valid: int, batch_size: int) -> int:
        return (T + 1) * blocks(n_valid, batch_size) + 1

    def forward_steps(self, ws: StepwiseWorkspace, batch: Batch) -> None:
        run = self.run
        grid = (blocks(run.H, BLOCK), batch.nrows)
        for t in range(run.T):
            run.launcher.launch(self.kernels.step_forward, grid, BLOCK, batch, t, run.params, ws.caches)

    def backward(self, ws: StepwiseWorkspace, batch: Batch) -> None:
        run = self.run
        grid = (blocks(run.H, BLOCK), batch.nrows)
        for t in range(run.T - 1, -1, -1):
            run.launcher.launch(self.kernels.step_backward, grid, BLOCK, ws.caches, ws.dh_head, run.params,
                                ws.dc_next, t, batch.nrows)
        run.launcher.launch(self.kernels.weight_grads, blocks(run.n_params, BLOCK), BLOCK, batch, run.task,
                            ws.caches, run.grads)
