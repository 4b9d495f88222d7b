"""The NVIDIA H200's limits that the offline tools compute with: ptx_check's occupancy, napkin's predictions.

Figures are those of the H200 SXM (the H100's Hopper chip, compute capability 9.0, with HBM3e):
132 multiprocessors (SMs) at a 1.98 GHz boost clock, 128 FP32 and 64 FP64 lanes per SM, 4.8 TB/s
of HBM3e. The occupancy rules are CUDA's own for compute capability 9.0 (the arithmetic of the
toolkit's ``cuda_occupancy.h``). Lines marked ASSUMED are estimates this project states, not
datasheet figures; napkin.py says what each is used for.

    peak_flops(dtype)                                   FP32 or FP64 CUDA-core peak, FLOP/s
    occupancy(threads, registers, shared_bytes)         blocks per SM and the fraction of warp slots
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

SMS = 132
CLOCK_HZ = 1.98e9
FP32_LANES_PER_SM = 128
FP64_LANES_PER_SM = 64
FP32_PEAK = SMS * FP32_LANES_PER_SM * 2 * CLOCK_HZ    # an FMA is 2 FLOPs: 66.9 TFLOP/s
FP64_PEAK = SMS * FP64_LANES_PER_SM * 2 * CLOCK_HZ    # 33.5 TFLOP/s
HBM_BYTES_PER_S = 4.8e12
# ASSUMED: microbenchmarks of the H100 read about 5.5 to 7 TB/s from L2; the low end.
L2_BYTES_PER_S = 5.5e12
# One 128-byte shared-memory or L1 access (a warp's 32 4-byte words, or a broadcast) per cycle per SM.
ONCHIP_BYTES_PER_S = SMS * 128 * CLOCK_HZ             # 33.5 TB/s
# ASSUMED: an SM reaches its peak rates with 16 resident warps (4 per scheduler) and gets a
# proportional share of them with fewer.
WARPS_TO_SATURATE = 16
# numba-cuda's measured host cost of one kernel launch: a base plus each array argument
# (a NamedTuple argument counts each array it holds).
LAUNCH_SECONDS = 6.6e-6
LAUNCH_SECONDS_PER_ARRAY = 3.5e-6
GRID_SYNC_SECONDS = 3e-6          # ASSUMED: one grid-wide barrier of a cooperative launch
TRANSFER_SECONDS = 10e-6          # ASSUMED: one small host<->device copy's latency ...
PCIE_BYTES_PER_S = 50e9           # ASSUMED: ... and its rate (PCIe 5 x16 carries 64 GB/s raw)

WARP = 32
MAX_WARPS_PER_SM = 64             # 2048 threads
MAX_BLOCKS_PER_SM = 32
MAX_THREADS_PER_BLOCK = 1024
REGISTERS_PER_SM = 65536
REGISTERS_PER_BLOCK = 65536
MAX_REGISTERS_PER_THREAD = 255
REGISTER_GRANULARITY = 256        # registers are given to a warp in units of 256 ...
SUB_PARTITIONS = 4                # ... out of each of the SM's 4 quarters of the register file
SHARED_PER_SM = 228 * 1024
SHARED_PER_BLOCK = 48 * 1024      # static + dynamic; more needs an opt-in Numba cannot make
SHARED_RESERVED_PER_BLOCK = 1024  # the driver's own shared memory in every block
SHARED_GRANULARITY = 128


def peak_flops(dtype) -> float:
    """The CUDA-core peak of dtype's fused multiply-adds (no tensor cores), in FLOP/s."""
    return FP64_PEAK if np.dtype(dtype) == np.float64 else FP32_PEAK


class Occupancy(NamedTuple):
    """How many blocks of a kernel one SM holds at once, what limits them, and the warp slots they fill."""

    blocks_per_sm: int
    limit: str                    # "threads", "blocks", "registers" or "shared memory"
    fraction: float               # resident warps / MAX_WARPS_PER_SM


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def occupancy(threads: int, registers: int, shared_bytes: int) -> Occupancy:
    """Theoretical occupancy on an H200 of blocks of ``threads`` threads using ``registers`` registers per
    thread and ``shared_bytes`` of shared memory (static + dynamic) per block; 0 blocks when one cannot launch.
    """
    warps = -(-threads // WARP)
    limits = {"threads": MAX_WARPS_PER_SM // warps if threads <= MAX_THREADS_PER_BLOCK else 0,
              "blocks": MAX_BLOCKS_PER_SM}
    per_warp = _round_up(registers * WARP, REGISTER_GRANULARITY)
    # the hardware checks a block's registers as if its warps filled every quarter evenly
    fits = (registers <= MAX_REGISTERS_PER_THREAD and per_warp * warps <= REGISTERS_PER_BLOCK
            and per_warp * _round_up(warps, SUB_PARTITIONS) <= REGISTERS_PER_BLOCK)
    warps_per_quarter = (REGISTERS_PER_SM // SUB_PARTITIONS) // per_warp if per_warp else MAX_WARPS_PER_SM
    limits["registers"] = warps_per_quarter * SUB_PARTITIONS // warps if fits else 0
    allocated = _round_up(shared_bytes + SHARED_RESERVED_PER_BLOCK, SHARED_GRANULARITY)
    limits["shared memory"] = SHARED_PER_SM // allocated if shared_bytes <= SHARED_PER_BLOCK else 0
    limit = min(limits, key=limits.get)      # the first of equal limits, in the order above
    blocks = limits[limit]
    return Occupancy(blocks, limit, blocks * warps / MAX_WARPS_PER_SM)
