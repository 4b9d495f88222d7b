"""Napkin math for the CUDA kernel versions: what an epoch costs each of them on an H200, before timing it.

    NUMBA_ENABLE_CUDASIM=0 parallel-lstm napkin [--resources FILE] [--workloads light,heavy,gpu]

prints, for every version x workload x dtype, the FLOPs and the bytes moved from DRAM, L2 and on-chip
memory per time step, the launches per epoch, and the epoch time the H200's limits allow (h200.py);
``reports.gpu_check`` prints the same prediction beside every timing. No GPU is needed.

Letters: T time steps, D input features, H hidden units, G = 4H gate rows, Y outputs, nb rows of a
minibatch, s bytes per value, P parameters, Q = T*nb weight-gradient terms.

The model is a lower bound, in the spirit of a roofline:
  - an epoch is each version's own launch sequence (the documented counts, which tests hold the model
    to): the epoch-begin launch, every minibatch, the validation and its loss;
  - a launch runs stretches of device work (``Work``) one after another; a stretch takes the longest of
    FLOPs / FMA peak, on-chip bytes / shared+L1 rate, L2 bytes / L2 rate and DRAM bytes / HBM rate, each
    rate scaled by the share of the GPU its warps fill (WARPS_TO_SATURATE per SM), plus its grid-wide
    barriers;
  - the host enqueues launches one after another at LAUNCH_SECONDS + LAUNCH_SECONDS_PER_ARRAY per array
    argument; a kernel starts once enqueued and once the one before it has finished; an epoch starts
    with its sample order's upload and ends with its losses' download.
What moves where:
  - DRAM: the caches (gates, c, tanh_c, h, dz, ...) are written once and read once by each pass that
    uses them (at the gpu workload they are hundreds of MB, beyond the 50-60 MB L2); parameters stay in L2;
  - L2: operands re-read. v1's tiled products read A once per 16-column tile and B once per 16-row tile;
    v2 and v3 read all of W_hh for every sample row at every step; v4 reads each block's W_hh slice once
    per minibatch (once per step when it launches per step) and instead re-reads h_{t-1} (forward) and
    dz_{t+1} (backward) once per unit slice; the one-thread-per-entry gradient sums of v2 and v3 read
    one operand per term per entry;
  - on chip: shared-memory and L1 loads per FMA in each inner loop, counted from the source (a broadcast
    costs a whole access): v1's 16x16 tiles 2; v2 1.25 forward, 2 backward; v3 2; v4 0.5 forward, 1.25
    backward, 0.375 in its gradient tiles; the gradient sums of v2 and v3 2.
Not modelled: latency (v3's serial dot products, one block per sample), bank conflicts, a grid's tail,
clocks below boost, host work between launches. A measured epoch should come out at or above the
prediction; how far above says what the model leaves out.
"""
from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import sys
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from parallel_lstm.lstm_numpy.contract import CLASSIFICATION, TASK_CODES, batch_bounds
from parallel_lstm.reports.commands import prog
from parallel_lstm.reports.options import parse_or_exit

from . import h200
from .device_code import BLOCK, REDUCE_THREADS, TILE, blocks
from .device import simulator_enabled

PROG = prog("napkin")

WARP = h200.WARP
# shared-memory and L1 loads per FMA of each inner loop (see the module docstring)
LOADS_PER_FMA = {"v1 product": 2.0, "v2 forward": 1.25, "v2 backward": 2.0, "v3": 2.0, "gradient sums": 2.0,
                 "v4 forward": 0.5, "v4 backward": 1.25, "v4 gradient tiles": 0.375}
WORKLOADS = ("light", "heavy", "gpu")


class Sizes(NamedTuple):
    """The model's shapes and dtype, and the task (which steps have a head)."""

    T: int
    D: int
    H: int
    Y: int
    dtype: np.dtype
    task: str

    @property
    def s(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def G(self) -> int:
        return 4 * self.H

    @property
    def head_steps(self) -> int:
        return self.T if TASK_CODES[self.task] == CLASSIFICATION else 1

    @property
    def P(self) -> int:
        return 4 * self.H * (self.D + self.H + 1) + self.Y * (self.H + 1)


@dataclass(frozen=True)
class Work:
    """A stretch of device work: FLOPs, bytes from DRAM, L2 and on-chip memory, the warps that do it,
    and the grid-wide barriers after it."""

    flops: float = 0.0
    dram: float = 0.0
    l2: float = 0.0
    onchip: float = 0.0
    warps: float = 1.0
    barriers: int = 0

    def limits(self, dtype) -> dict[str, float]:
        """Seconds each limit allows, at the share of the GPU these warps fill."""
        share = min(1.0, self.warps / (h200.SMS * h200.WARPS_TO_SATURATE))
        return {"compute": self.flops / (h200.peak_flops(dtype) * share),
                "on-chip": self.onchip / (h200.ONCHIP_BYTES_PER_S * share),
                "L2": self.l2 / (h200.L2_BYTES_PER_S * share),
                "DRAM": self.dram / (h200.HBM_BYTES_PER_S * share)}


@dataclass(frozen=True)
class Launch:
    """One kernel launch: the kernel ("<owner> <name>", as ptx_check names it) and its stretches of work."""

    kernel: str
    works: tuple[Work, ...]


class Setting(NamedTuple):
    """How v4 runs: one cooperative launch per minibatch or per step, and ``resident(plan)``, the blocks of
    its cooperative kernel that can be resident at once (None: the default plan is assumed to be)."""

    cooperative: bool = True
    resident: Callable | None = None


def warps_of(threads: float) -> float:
    return math.ceil(threads / WARP)


# ---------------------------------------------------------------------------- shared pieces

def cell_forward_bytes(z: Sizes, nb: int) -> float:
    """DRAM bytes of one step's cell update: c_{t-1} read; gates (4), c_t, tanh(c_t), h_t written."""
    return nb * z.H * 8 * z.s


def cell_backward_bytes(z: Sizes, nb: int) -> float:
    """DRAM bytes of one BPTT step's cell: gates (4), tanh(c_t), c_{t-1}, dc read; dz (4), dc written."""
    return nb * z.H * 12 * z.s


def gradient_sums(z: Sizes, nb: int) -> Work:
    """v2's and v3's weight gradients, one thread per parameter entry summing its T*nb terms."""
    Q, Qh = z.T * nb, z.head_steps * nb
    fma = Q * z.G * (z.D + z.H + 1) + Qh * z.Y * (z.H + 1)
    return Work(flops=2 * fma, dram=(Q * (z.G + z.H + z.D) + Qh * (z.Y + z.H) + z.P) * z.s, l2=fma * z.s,
                onchip=LOADS_PER_FMA["gradient sums"] * fma * z.s, warps=warps_of(z.P))


def loss_reduce(z: Sizes, nb: int) -> Launch:
    return Launch("shared loss_reduce", (Work(dram=nb * z.s, warps=REDUCE_THREADS / WARP),))


def row_head(z: Sizes, nb: int, train: bool) -> Launch:
    """The row-per-thread head (v1, v2): outputs and loss; training adds dout and dh_head (T, nb, H)."""
    fma = nb * z.head_steps * z.H * z.Y * (2 if train else 1)
    dram = nb * z.head_steps * (z.H + z.Y) * z.s + (z.T * nb * z.H * z.s if train else 0)
    return Launch("shared head_rows", (Work(flops=2 * fma, dram=dram, warps=warps_of(nb)),))


def stepwise_update(z: Sizes) -> list[Launch]:
    """v1's and v2's clip scale (one block over every gradient) and SGD (a thread per parameter)."""
    return [Launch("shared clip_scale", (Work(flops=2 * z.P, l2=z.P * z.s, warps=REDUCE_THREADS / WARP),)),
            Launch("shared sgd", (Work(flops=2 * z.P, l2=3 * z.P * z.s, warps=warps_of(z.P)),))]


# ---------------------------------------------------------------------------- v1

def tiled_product(z: Sizes, M: int, N: int, K: int, dram_in: float = 0.0, tile: int = TILE) -> Work:
    """v1's tile x tile shared-memory product C (M, N) = A (M, K) B (K, N): A is read once per column
    tile and B once per row tile (L2); C is written once and ``dram_in`` bytes of cache operands read."""
    fma = M * N * K
    row_tiles, col_tiles = -(-M // tile), -(-N // tile)
    return Work(flops=2 * fma, dram=M * N * z.s + dram_in, l2=(M * K * col_tiles + K * N * row_tiles) * z.s,
                onchip=LOADS_PER_FMA["v1 product"] * fma * z.s, warps=row_tiles * col_tiles * tile * tile / WARP)


def v1_forward(z: Sizes, nb: int, train: bool) -> list[Launch]:
    T, D, H, G, s = z.T, z.D, z.H, z.G, z.s
    gather = Launch("shared gather_x", (Work(dram=2 * T * nb * D * s, warps=warps_of(T * nb * D)),))
    projection = Launch("v1 matmul", (tiled_product(z, T * nb, G, D, dram_in=T * nb * D * s),))
    recurrent = Launch("v1 matmul", (tiled_product(z, nb, G, H, dram_in=nb * (G + H) * s),))
    gates = Launch("v1 gates_forward", (Work(dram=nb * H * 4 * s + cell_forward_bytes(z, nb),
                                             warps=warps_of(nb * H)),))
    return [gather, projection] + [recurrent, gates] * T + [row_head(z, nb, train)]


def v1_minibatch(z: Sizes, nb: int, setting: Setting) -> list[Launch]:
    T, D, H, G, Y, s = z.T, z.D, z.H, z.G, z.Y, z.s
    Q, Qh = T * nb, z.head_steps * nb
    gates = Launch("v1 gates_backward", (Work(dram=nb * H * 2 * s + cell_backward_bytes(z, nb),
                                              warps=warps_of(nb * H)),))
    dh = Launch("v1 matmul", (tiled_product(z, nb, H, G, dram_in=nb * G * s),))
    weights = [Launch("v1 matmul", (tiled_product(z, G, D, Q, dram_in=Q * (G + D) * s),)),
               Launch("v1 matmul", (tiled_product(z, G, H, Q, dram_in=Q * (G + H) * s),)),
               Launch("v1 colsum", (Work(flops=Q * G, dram=Q * G * s, warps=warps_of(G)),)),
               Launch("v1 matmul", (tiled_product(z, Y, H, Qh, dram_in=Qh * (Y + H) * s),)),
               Launch("v1 colsum", (Work(flops=Qh * Y, dram=Qh * Y * s, warps=warps_of(Y)),))]
    return (v1_forward(z, nb, True) + [gates, dh] * (T - 1) + [gates] + weights + [loss_reduce(z, nb)]
            + stepwise_update(z))


def v1_validation(z: Sizes, n_valid: int, batch_size: int, setting: Setting) -> list[Launch]:
    return [launch for nb in chunks(n_valid, batch_size) for launch in v1_forward(z, nb, False)]


# ---------------------------------------------------------------------------- v2

def v2_forward(z: Sizes, nb: int, train: bool) -> list[Launch]:
    D, H, G, s = z.D, z.H, z.G, z.s
    grid = blocks(H, BLOCK) * nb
    step = Work(flops=2 * nb * G * (D + H), dram=cell_forward_bytes(z, nb) + nb * D * s,
                l2=(nb * G * (D + H) + grid * H) * s, onchip=LOADS_PER_FMA["v2 forward"] * nb * G * H * s,
                warps=grid * BLOCK / WARP)
    return [Launch("v2 step_forward", (step,))] * z.T + [row_head(z, nb, train)]


def v2_minibatch(z: Sizes, nb: int, setting: Setting) -> list[Launch]:
    H, G, s = z.H, z.G, z.s
    grid = blocks(H, BLOCK) * nb
    cell = nb * H * s + cell_backward_bytes(z, nb)          # dh_head read too
    last = Work(dram=cell, warps=grid * BLOCK / WARP)        # t = T-1: no recurrent product
    step = Work(flops=2 * nb * G * H, dram=cell + nb * G * s, l2=(nb * G * H + grid * G) * s,
                onchip=LOADS_PER_FMA["v2 backward"] * nb * G * H * s, warps=grid * BLOCK / WARP)
    backward = ([Launch("v2 step_backward", (last,))] + [Launch("v2 step_backward", (step,))] * (z.T - 1)
                + [Launch("v2 weight_grads", (gradient_sums(z, nb),))])
    return v2_forward(z, nb, True) + backward + [loss_reduce(z, nb)] + stepwise_update(z)


def v2_validation(z: Sizes, n_valid: int, batch_size: int, setting: Setting) -> list[Launch]:
    return [launch for nb in chunks(n_valid, batch_size) for launch in v2_forward(z, nb, False)]


# ---------------------------------------------------------------------------- v3

def v3_persistent(z: Sizes, nb: int, train: bool) -> Launch:
    """One block per row runs the forward (and, training, BPTT) with the state in shared memory."""
    from .v3 import PersistentKernel
    T, D, H, G, Y, s, hs = z.T, z.D, z.H, z.G, z.Y, z.s, z.head_steps
    warps = nb * PersistentKernel.threads_per_block / WARP
    loads = LOADS_PER_FMA["v3"]
    fma = T * nb * G * (D + H) + hs * nb * Y * H
    writes = T * nb * H * 7 * s + hs * nb * Y * s if train else 0     # gates, c, tanh_c, h; dout
    forward = Work(flops=2 * fma, dram=T * nb * D * s + writes, l2=fma * s, onchip=loads * T * nb * G * H * s,
                   warps=warps)
    if not train:
        return Launch("v3 persistent", (forward,))
    fma = (T - 1) * nb * G * H + hs * nb * H * Y
    backward = Work(flops=2 * fma, dram=T * nb * H * 10 * s + hs * nb * Y * s, l2=fma * s,
                    onchip=loads * fma * s, warps=warps)     # dh and dc stay in shared memory
    return Launch("v3 persistent", (forward, backward))


def v3_minibatch(z: Sizes, nb: int, setting: Setting) -> list[Launch]:
    last_block = Work(flops=2 * z.P, l2=3 * z.P * z.s, warps=REDUCE_THREADS / WARP)    # the SGD of the last block
    return [v3_persistent(z, nb, True), Launch("v3 finish", (gradient_sums(z, nb), last_block))]


def v3_validation(z: Sizes, n_valid: int, batch_size: int, setting: Setting) -> list[Launch]:
    return [v3_persistent(z, n_valid, False)]


# ---------------------------------------------------------------------------- v4

def v4_plan(z: Sizes, nb: int, setting: Setting):
    """(the plan of nb rows, whether it runs as one cooperative launch), as UnitSlices.geometry makes it."""
    from .v4 import UnitSlices, plan, resident_plan
    sizes = (z.T, z.D, z.H, z.Y, nb, z.dtype)
    options = {"target_blocks": UnitSlices.target_blocks, "threads": UnitSlices.threads}
    if not setting.cooperative:
        return plan(*sizes, **options), False
    if setting.resident is None:
        return plan(*sizes, **options), True
    return resident_plan(*sizes, setting.resident, **options)


def v4_works(z: Sizes, nb: int, geometry, train: bool) -> dict[str, Work]:
    """v4's stretches of work for nb rows on a plan: the W_hh slice loads, a forward step, the head, a BPTT
    step (and the last one, without the recurrent product), the gradient tiles, their gather, the update."""
    from .v4 import GRAD_COLS, GRAD_ROWS
    T, D, H, G, Y, s, P = z.T, z.D, z.H, z.G, z.Y, z.s, z.P
    warps = geometry.blocks * geometry.threads / WARP
    slices, hs = geometry.slices, z.head_steps
    slice_values = geometry.blocks * 4 * geometry.units * H
    load = Work(l2=slice_values * s, onchip=slice_values * s, warps=warps)
    forward = Work(flops=2 * nb * G * (D + H), dram=cell_forward_bytes(z, nb) + nb * D * s,
                   l2=(slices * nb * (H + D) + nb * G * D) * s, onchip=LOADS_PER_FMA["v4 forward"] * nb * G * H * s,
                   warps=warps)
    head = Work(flops=2 * hs * nb * H * Y, dram=hs * nb * (H + Y * (2 if train else 1)) * s, warps=warps_of(nb))
    head_backward = 2 * nb * H * Y              # at a step with a head: dout @ W_y
    last = Work(flops=head_backward, dram=cell_backward_bytes(z, nb), warps=warps)
    step = Work(flops=2 * nb * G * H + (head_backward if hs == T else 0), dram=cell_backward_bytes(z, nb),
                l2=slices * nb * G * s, onchip=LOADS_PER_FMA["v4 backward"] * nb * G * H * s, warps=warps)
    Q, Qh = T * nb, hs * nb
    gate_tiles = -(-G // GRAD_ROWS) * -(-(D + H + 1) // GRAD_COLS)
    head_tiles = -(-Y // GRAD_ROWS) * -(-(H + 1) // GRAD_COLS)
    fma = Q * G * (D + H + 1) + Qh * Y * (H + 1)
    busy = min(geometry.blocks, (gate_tiles + head_tiles) * geometry.parts)
    tiles = Work(flops=2 * fma, dram=(Q * (G + H + D) + Qh * (Y + H) + geometry.parts * P) * s,
                 l2=(gate_tiles * Q + head_tiles * Qh) * (GRAD_ROWS + GRAD_COLS) * s,
                 onchip=LOADS_PER_FMA["v4 gradient tiles"] * fma * s, warps=busy * geometry.threads / WARP)
    gather = Work(flops=geometry.parts * P, l2=(geometry.parts + 1) * P * s, warps=min(warps, warps_of(P)))
    update = Work(flops=2 * P, l2=(3 * P + geometry.blocks ** 2) * s, warps=warps)
    return {"load": load, "forward": forward, "head": head, "last": last, "step": step, "tiles": tiles,
            "gather": gather, "update": update}


def barrier(work: Work) -> Work:
    return Work(work.flops, work.dram, work.l2, work.onchip, work.warps, work.barriers + 1)


def v4_minibatch(z: Sizes, nb: int, setting: Setting) -> list[Launch]:
    geometry, cooperative = v4_plan(z, nb, setting)
    w = v4_works(z, nb, geometry, True)
    T = z.T
    if cooperative:   # 2T + 3 grid barriers: after every step, the head, the tiles and the gather
        works = ([w["load"]] + [barrier(w["forward"])] * T + [barrier(w["head"]), w["load"], barrier(w["last"])]
                 + [barrier(w["step"])] * (T - 1) + [barrier(w["tiles"]), barrier(w["gather"]), w["update"]])
        return [Launch("v4 minibatch_kernel", tuple(works))]
    return ([Launch("v4 forward_kernel", (w["load"], w["forward"]))] * T
            + [Launch("v4 head_kernel", (w["head"],)), loss_reduce(z, nb),
               Launch("v4 backward_kernel", (w["load"], w["last"]))]
            + [Launch("v4 backward_kernel", (w["load"], w["step"]))] * (T - 1)
            + [Launch("v4 grads_kernel", (w["tiles"],)), Launch("v4 gather_kernel", (w["gather"],)),
               Launch("v4 update_kernel", (w["update"],))])


def v4_validation(z: Sizes, n_valid: int, batch_size: int, setting: Setting) -> list[Launch]:
    launches = []
    for nb in chunks(n_valid, batch_size):
        geometry, cooperative = v4_plan(z, nb, setting)
        w = v4_works(z, nb, geometry, False)
        if cooperative:
            launches.append(Launch("v4 minibatch_kernel",
                                   tuple([w["load"]] + [barrier(w["forward"])] * z.T + [barrier(w["head"])])))
        else:
            launches += [Launch("v4 forward_kernel", (w["load"], w["forward"]))] * z.T
            launches.append(Launch("v4 head_kernel", (w["head"],)))
    return launches


class VersionModel(NamedTuple):
    minibatch: Callable       # (Sizes, nb, Setting) -> [Launch]: one training minibatch
    validation: Callable      # (Sizes, n_valid, batch_size, Setting) -> [Launch], before the loss launch


MODELS = {1: VersionModel(v1_minibatch, v1_validation), 2: VersionModel(v2_minibatch, v2_validation),
          3: VersionModel(v3_minibatch, v3_validation), 4: VersionModel(v4_minibatch, v4_validation)}


# ---------------------------------------------------------------------------- an epoch

def chunks(n: int, size: int) -> list[int]:
    """The row counts of n rows taken ``size`` at a time (the last may be smaller)."""
    return np.diff(batch_bounds(n, size)).tolist()


@functools.lru_cache(maxsize=None)
def array_arguments(kernel: str) -> int:
    """Array arguments of a kernel ("v1 matmul", "shared sgd"), each array of a NamedTuple counted, from
    the kinds its definition declares (arguments.py)."""
    from .device_code import shared_kernels
    from .trainer import KERNEL_VERSIONS
    owner, name = kernel.split()
    namespace = shared_kernels(np.float64) if owner == "shared" else KERNEL_VERSIONS[int(owner[1:])].kernels_for(
        np.float64)
    parameters = inspect.signature(getattr(namespace, name).py_func, eval_str=True).parameters.values()

    def arrays(value) -> int:
        if isinstance(value, np.ndarray):
            return 1
        return sum(arrays(member) for member in value) if isinstance(value, tuple) else 0
    return sum(arrays(p.annotation.example(np.dtype(np.float64), "regression")) for p in parameters)


def launch_seconds(kernel: str) -> float:
    """The host's cost of one launch of ``kernel``."""
    return h200.LAUNCH_SECONDS + h200.LAUNCH_SECONDS_PER_ARRAY * array_arguments(kernel)


def epoch_launches(version: int, z: Sizes, n_train: int, n_valid: int, batch_size: int,
                   setting: Setting = Setting()) -> list[Launch]:
    """Every launch of one training epoch of ``version``, in order."""
    model = MODELS[version]
    batch = min(batch_size, n_train)
    launches = [Launch("shared epoch_begin", (Work(warps=warps_of(n_train // batch + 2)),))]
    for nb in chunks(n_train, batch):
        launches += model.minibatch(z, nb, setting)
    launches += model.validation(z, n_valid, batch, setting)
    return launches + [loss_reduce(z, n_valid)]


def transfer_seconds(nbytes: float) -> float:
    return h200.TRANSFER_SECONDS + nbytes / h200.PCIE_BYTES_PER_S


def run_pipeline(launches: list[Launch], dtype) -> dict:
    """Host and device side by side: the host enqueues each launch after its launch cost; a kernel starts
    when it is enqueued and its predecessor has finished. Returns the host's launch seconds, the device's
    busy seconds, the end of the last kernel (from the first launch) and the device seconds per limit."""
    host = finish = busy = 0.0
    by_limit: dict[str, float] = {}
    timed: dict[int, tuple[float, dict]] = {}      # id(launch) -> (seconds, seconds per limit)
    for launch in launches:
        if id(launch) not in timed:
            seconds, shares = 0.0, {}
            for work in launch.works:
                limits = work.limits(dtype)
                bound = max(limits, key=limits.get)
                shares[bound] = shares.get(bound, 0.0) + limits[bound]
                shares["barriers"] = shares.get("barriers", 0.0) + work.barriers * h200.GRID_SYNC_SECONDS
                seconds += limits[bound] + work.barriers * h200.GRID_SYNC_SECONDS
            timed[id(launch)] = (seconds, shares)
        seconds, shares = timed[id(launch)]
        host += launch_seconds(launch.kernel)
        finish = max(finish, host) + seconds
        busy += seconds
        for limit, value in shares.items():
            by_limit[limit] = by_limit.get(limit, 0.0) + value
    return {"host": host, "device": busy, "finish": finish, "by_limit": by_limit}


def totals(launches: list[Launch]) -> dict[str, float]:
    """FLOPs and bytes of a list of launches."""
    out = dict.fromkeys(("flops", "dram", "l2", "onchip"), 0.0)
    for launch in launches:
        for work in launch.works:
            for key in out:
                out[key] += getattr(work, key)
    return out


def predict(version: int, z: Sizes, n_train: int, n_valid: int, batch_size: int,
            setting: Setting = Setting()) -> dict:
    """The napkin prediction of one training epoch of ``version`` (fields: reports/resultfiles.py, ``napkin``)."""
    launches = epoch_launches(version, z, n_train, n_valid, batch_size, setting)
    pipeline = run_pipeline(launches, z.dtype)
    epoch = totals(launches)
    step = totals(MODELS[version].minibatch(z, min(batch_size, n_train), setting))
    n_batches = len(chunks(n_train, min(batch_size, n_train)))
    # the epoch's sample order up (int64), its losses down (float64, one per minibatch and the validation)
    seconds = transfer_seconds(8 * n_train) + pipeline["finish"] + transfer_seconds(8 * (n_batches + 1))
    by_limit = {k: v for k, v in pipeline["by_limit"].items() if v > 0}
    bound = "launches" if pipeline["host"] > pipeline["device"] else max(by_limit, key=by_limit.get)
    prediction = {"version": version, "dtype": np.dtype(z.dtype).name, "launches_per_epoch": len(launches),
                  "host_launch_seconds": pipeline["host"], "device_seconds": pipeline["device"],
                  "predicted_epoch_seconds": seconds, "bound": bound,
                  "device_seconds_by_limit": by_limit, "peak_flops": h200.peak_flops(z.dtype)}
    for key, name in (("flops", "flops"), ("dram", "dram_bytes"), ("l2", "l2_bytes"), ("onchip", "onchip_bytes")):
        prediction[f"{name}_per_step"] = step[key] / z.T
        prediction[f"{name}_per_epoch"] = epoch[key]
    if version == 4:
        prediction["cooperative"] = setting.cooperative
    return prediction


def setting_here(dtype, task: str) -> Setting:
    """v4 as this machine runs it: on a GPU its own launch mode and the resident blocks of its cooperative
    kernel (compiled for dtype and task); elsewhere the GPU default with the default plan."""
    from .device import gpu_present
    from .v4 import UnitSlices, cooperative_capacity
    if not gpu_present():
        return Setting()
    return Setting(UnitSlices.runs_cooperative(), lambda p: cooperative_capacity(dtype, task, p))


def predict_workload(version: int, workload, dtype, setting: Setting = Setting()) -> dict:
    """``predict`` at a data.workloads Workload's shapes and task."""
    shapes = workload.shapes
    z = Sizes(shapes["T"], shapes["D"], shapes["H"], shapes["Y"], np.dtype(dtype), workload.config.task)
    return {"workload": workload.name, **predict(version, z, shapes["N_train"], shapes["N_valid"], shapes["B"],
                                                 setting)}


def measured_against(prediction: dict, measured_seconds: float) -> dict:
    """How a measured epoch compares: its multiple of the prediction and the fraction of the FMA peak
    its FLOPs (the model's count) reach."""
    return {"measured_over_predicted": measured_seconds / prediction["predicted_epoch_seconds"],
            "fraction_of_peak": prediction["flops_per_epoch"] / measured_seconds / prediction["peak_flops"]}


# ---------------------------------------------------------------------------- the table

def resident_from_resources(document: dict, dtype, task: str) -> Callable | None:
    """v4's resident blocks from a ptx_check resource report (the cooperative kernel's registers and
    static shared memory), or None when the report has no row for it."""
    for row in document.get("rows", []):
        if (row["kernel"], row["version"], row["dtype"], row.get("task")) == \
                ("minibatch_kernel", 4, np.dtype(dtype).name, task) and row.get("registers") is not None:
            registers, static = row["registers"], row["static_shared_bytes"]
            return lambda p: h200.SMS * h200.occupancy(p.threads, registers, static + p.shared_bytes).blocks_per_sm
    return None


def table(predictions: list[dict]) -> str:
    """The predictions as a fixed-width table."""
    header = (f"{'workload':8s} {'dtype':7s} {'v':>2s} {'GFLOP/step':>10s} {'DRAM MB':>8s} {'L2 MB':>8s} "
              f"{'chip MB':>8s} {'launches':>8s} {'host ms':>9s} {'device ms':>10s} {'epoch ms':>10s}  bound")
    lines = [header, "-" * len(header)]
    for p in predictions:
        lines.append(f"{p['workload']:8s} {p['dtype']:7s} {p['version']:2d} {p['flops_per_step'] / 1e9:10.4f} "
                     f"{p['dram_bytes_per_step'] / 1e6:8.2f} {p['l2_bytes_per_step'] / 1e6:8.2f} "
                     f"{p['onchip_bytes_per_step'] / 1e6:8.2f} {p['launches_per_epoch']:8d} "
                     f"{p['host_launch_seconds'] * 1e3:9.2f} {p['device_seconds'] * 1e3:10.2f} "
                     f"{p['predicted_epoch_seconds'] * 1e3:10.2f}  {p['bound']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated workloads (default: {','.join(WORKLOADS)})")
    parser.add_argument("--resources", metavar="FILE",
                        help="ptx_check's --json report: v4's cooperative grid is cut to the blocks its registers "
                             "let be resident (without it v4's default plan is assumed resident)")
    args, exit_code = parse_or_exit(parser, sys.argv[1:] if argv is None else list(argv))
    if args is None:
        return exit_code
    if simulator_enabled():
        print(f"{PROG}: the CUDA simulator is on, whose launch geometry is not the GPU's; run with "
              "NUMBA_ENABLE_CUDASIM=0.", file=sys.stderr)
        return 2
    from parallel_lstm.data.workloads import WORKLOADS as KNOWN, make_workload
    from parallel_lstm.lstm_numpy.errors import UserError
    names = [name.strip() for name in args.workloads.split(",") if name.strip()]
    unknown = [name for name in names if name not in KNOWN]
    if unknown or not names:
        print(f"{PROG}: unknown workload {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(KNOWN)}.",
              file=sys.stderr)
        return 2
    resources = None
    if args.resources:
        try:
            with open(args.resources, encoding="utf-8") as handle:
                resources = json.load(handle)
        except (OSError, ValueError) as exc:
            print(f"{PROG}: cannot read --resources {args.resources} ({exc}); write it with "
                  f"parallel-lstm ptx-check --json FILE.", file=sys.stderr)
            return 2
    predictions = []
    try:
        for name in names:
            workload = make_workload(name)
            for dtype in ("float32", "float64"):
                resident = resident_from_resources(resources, dtype, workload.config.task) if resources else None
                for version in sorted(MODELS):
                    predictions.append(predict_workload(version, workload, dtype, Setting(True, resident)))
    except UserError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    print(table(predictions))
    limits = (f"H200: FP32 {h200.FP32_PEAK / 1e12:.1f} TFLOP/s, FP64 {h200.FP64_PEAK / 1e12:.1f} TFLOP/s, HBM "
              f"{h200.HBM_BYTES_PER_S / 1e12:.1f} TB/s, L2 {h200.L2_BYTES_PER_S / 1e12:.1f} TB/s (assumed), on-chip "
              f"{h200.ONCHIP_BYTES_PER_S / 1e12:.1f} TB/s, launch {h200.LAUNCH_SECONDS * 1e6:.1f} us + "
              f"{h200.LAUNCH_SECONDS_PER_ARRAY * 1e6:.1f} us per array, grid barrier "
              f"{h200.GRID_SYNC_SECONDS * 1e6:.0f} us (assumed)")
    v4 = f"grid cut to resident blocks from {args.resources}" if resources else "its default plan assumed resident"
    print(f"per step: one time step of a training minibatch (its forward, BPTT and weight-gradient work / T); "
          f"v4: one cooperative launch per minibatch, {v4}")
    print(limits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
