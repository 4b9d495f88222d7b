"""Compile every kernel for a real GPU (PTX for sm_90, both dtypes) on a machine without one.

    NUMBA_ENABLE_CUDASIM=0 python -m lstm_numba_cuda.ptx_check [--cc 9.0]

The simulator runs the kernels' Python source, so it cannot catch what only the CUDA
target rejects (typing, unsupported calls) or float64 arithmetic leaking into float32
kernels. This compiles each kernel with NVVM alone. Without a GPU, numba-cuda still asks
the driver and NVRTC for facts it needs (the compute capability of device functions,
the supported architectures, the libdevice path); those three look-ups are answered here
from the ``--cc`` option and the CUDA toolkit's files, which touches numba-cuda internals
(checked with numba-cuda 0.30). Exit status: 0 all compile, 1 a kernel failed, 2 the
simulator is on, 3 no libnvvm/libdevice found (nothing checked).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from types import SimpleNamespace

import numba
import numpy as np
from numba import cuda, typeof

from .device import gpu_present, simulator_enabled


def _find_libdevice() -> str | None:
    roots = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", "")] + sorted(glob.glob("/usr/local/cuda*"))
    for root in roots:
        found = sorted(glob.glob(os.path.join(root, "nvvm", "libdevice", "libdevice*.bc"))) if root else []
        if found:
            return found[-1]
    return None


def _answer_gpu_lookups(cc: tuple[int, int], libdevice: str) -> None:
    """Stand in for the driver/NVRTC queries numba-cuda makes while compiling (no GPU here)."""
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv import libs, nvrtc, nvvm
    nvrtc.get_supported_ccs = lambda: ((7, 5), (8, 0), (8, 6), (8, 9), (9, 0), cc)
    libs.get_libdevice = lambda: libdevice
    nvvm.get_libdevice = lambda: libdevice
    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)


def kernel_signatures(dtype) -> dict[str, tuple[str, tuple]]:
    """label -> (kernel name, argument types) for every kernel as the trainer launches it."""
    def arr(nd, dt=dtype):
        return typeof(np.empty((1,) * nd, dt))

    i64, f64 = numba.int64, numba.float64
    i32a, i64a, f64a = arr(1, np.int32), arr(1, np.int64), arr(1, np.float64)
    params = (arr(2), arr(2), arr(1), arr(2), arr(1))
    out = {}
    for task, targets in (("regression", arr(2)), ("classification", arr(2, np.int64))):
        out[f"head_rows/{task}"] = ("head_rows", (arr(3), arr(2), arr(1), targets, i64a, i64, i64, i64, i64, i64,
                                                  arr(3), arr(3), arr(1), i64))
        out[f"persistent/{task}"] = ("persistent", (arr(3), targets, i64a, i64, i64, i64, i64, i64, *params,
                                                    arr(3), arr(3), arr(3), arr(3), arr(3), arr(3), arr(1), i64))
    out.update({
        "epoch_begin": ("epoch_begin", (f64a, i32a, i32a)),
        "fill": ("fill", (arr(1), f64)),
        "head_predict": ("head_predict", (arr(3), arr(2), arr(1), i64, i64, i64, arr(3))),
        "loss_reduce": ("loss_reduce", (arr(1), i64, f64, f64a, i64, i32a, i64, i64)),
        "clip_scale": ("clip_scale", (*params, i64, f64, arr(1))),
        "sgd": ("sgd", (*params, *params, f64, arr(1), i32a)),
        "gather_x": ("gather_x", (arr(3), i64a, i64, i64, arr(3))),
        "matmul": ("matmul", (arr(2), i64, arr(2), i64, arr(2), arr(1), i64, arr(2), i64)),
        "colsum": ("colsum", (arr(2), arr(1))),
        "gates_forward": ("gates_forward", (arr(3), arr(3), arr(3), arr(3), i64, i64)),
        "gates_backward": ("gates_backward", (arr(3), arr(3), arr(3), arr(3), arr(2), arr(2), arr(3), i64, i64, i64)),
        "step_forward": ("step_forward", (arr(3), i64a, i64, i64, i64, arr(2), arr(2), arr(1), arr(3), arr(3),
                                          arr(3), arr(3))),
        "step_backward": ("step_backward", (arr(3), arr(3), arr(3), arr(3), arr(2), arr(3), arr(2), i64, i64, i64)),
        "weight_grads": ("weight_grads", (arr(3), i64a, i64, i64, i64, i64, arr(3), arr(3), arr(3), *params)),
        "finish": ("finish", (arr(3), i64a, i64, i64, i64, i64, arr(3), arr(3), arr(3), arr(1), f64, f64a, i64, i32a,
                              i64, i64, f64, f64, *params, *params, arr(1), i32a, arr(1))),
    })
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_numba_cuda.ptx_check", description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="9.0", help="compute capability to compile for (default 9.0, H100/H200)")
    args = parser.parse_args(argv)
    if simulator_enabled():
        print("ptx_check: the CUDA simulator is on; run with NUMBA_ENABLE_CUDASIM=0 to compile for the GPU.",
              file=sys.stderr)
        return 2
    cc = tuple(int(part) for part in args.cc.split("."))
    if not gpu_present():
        libdevice = _find_libdevice()
        if libdevice is None:
            print("ptx_check: no CUDA toolkit (nvvm/libdevice) found; set CUDA_HOME to check the kernels.",
                  file=sys.stderr)
            return 3
        _answer_gpu_lookups(cc, libdevice)
    from . import kernels
    failures = 0
    for dtype, float_t in ((np.float64, numba.float64), (np.float32, numba.float32)):
        K = kernels.build_kernels(float_t)
        for label, (name, signature) in kernel_signatures(dtype).items():
            try:
                ptx, _ = cuda.compile_ptx(getattr(K, name).py_func, signature, cc=cc)
            except Exception as exc:   # report every kernel, then fail
                failures += 1
                print(f"FAIL {np.dtype(dtype).name} {label}: {type(exc).__name__}: {exc}")
                continue
            # float64 instructions in a float32 kernel (conversions, the thread-0 softmax) are listed, not failed
            wide = ptx.count(".f64") if dtype == np.float32 else 0
            print(f"ok   {np.dtype(dtype).name} {label}" + (f"  ({wide} .f64 in PTX)" if wide else ""))
    print(f"{failures} of {2 * len(kernel_signatures(np.float64))} kernel compilations failed for sm_{cc[0]}{cc[1]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
