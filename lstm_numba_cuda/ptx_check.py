"""Compile every kernel for a real GPU (PTX for sm_90, both dtypes) on a machine without one.

    NUMBA_ENABLE_CUDASIM=0 python -m lstm_numba_cuda.ptx_check [--cc 9.0]

The simulator runs the kernels' Python source, so it cannot catch what only the CUDA
target rejects (typing, unsupported calls) or float64 arithmetic leaking into float32
kernels. This compiles each kernel of the shared code and of every registered version with
NVVM alone, with the argument types its declaration gives (arguments.py), and prints the
registers and spill bytes ptxas reports when ptxas is on the PATH. Without a GPU, numba-cuda
still asks the driver and NVRTC for facts it needs (the compute capability of device functions,
the supported architectures, the libdevice path); those three look-ups are answered here
from the ``--cc`` option and the CUDA toolkit's files, which touches numba-cuda internals
(checked with numba-cuda 0.30). Exit status: 0 all compile, 1 a kernel failed, 2 the
simulator is on, 3 no libnvvm/libdevice found (nothing checked).
"""
from __future__ import annotations

import argparse
import glob
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
from types import SimpleNamespace
from typing import Iterator

import numpy as np
from numba import cuda

from lstm_numpy.contract import TASKS

from .arguments import Kind
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


def compilations(dtype) -> Iterator[tuple[str, object, tuple]]:
    """(label, kernel, argument types) for every kernel of the shared code and of every registered version.

    The types come from each kernel's declaration (its arguments' kinds, arguments.py); a kernel
    whose arguments depend on the task (the targets' dtype) is compiled once per task.
    """
    from .device_code import shared_kernels
    from .trainer import KERNEL_VERSIONS

    owners = [("shared", shared_kernels(dtype))]
    owners += [(f"v{number}", version.kernels_for(dtype)) for number, version in KERNEL_VERSIONS.items()]
    for owner, namespace in owners:
        for name, kernel in vars(namespace).items():
            kinds = []
            for parameter in inspect.signature(kernel.py_func, eval_str=True).parameters.values():
                if not isinstance(parameter.annotation, Kind):
                    raise TypeError(f"{owner} kernel {name}: argument {parameter.name} declares no kind "
                                    f"(annotate it with one of lstm_numba_cuda.arguments)")
                kinds.append(parameter.annotation)
            for task in (TASKS if any(kind.by_task for kind in kinds) else (None,)):
                label = f"{owner} {name}" + (f"/{task}" if task else "")
                yield label, kernel, tuple(kind.numba_type(dtype, task) for kind in kinds)


def register_usage(ptx: str, cc: tuple[int, int]) -> str | None:
    """ptxas's registers and spill bytes and the static shared memory of one kernel's PTX, or None when
    ptxas is not on the PATH."""
    ptxas = shutil.which("ptxas")
    if ptxas is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "kernel.ptx")
        with open(source, "w") as handle:
            handle.write(ptx)
        # -c: relocatable, so that the cooperative kernels' calls into cudadevrt (grid sync) stay unresolved
        done = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-c", "-v", source, "-o", os.devnull],
                              capture_output=True, text=True)
    registers = re.search(r"Used (\d+) registers", done.stderr)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", done.stderr)
    if done.returncode != 0 or registers is None or spills is None:
        return f"ptxas failed: {done.stderr.strip()[:200]}"
    # relocatable code reports no shared memory: the static arrays are read from the PTX declarations
    static = sum(int(size) for size in re.findall(r"\.shared \.align \d+ \.b8 \w+\[(\d+)\]", ptx))
    dynamic = " + dynamic" if re.search(r"\.extern \.shared", ptx) else ""
    return (f"{registers.group(1)} registers, spill {spills.group(1)}/{spills.group(2)} bytes stored/loaded, "
            f"{static} bytes static shared{dynamic}")


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
    failures = total = 0
    for dtype in (np.float64, np.float32):
        for label, kernel, signature in compilations(dtype):
            total += 1
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
            except Exception as exc:   # report every kernel, then fail
                failures += 1
                print(f"FAIL {np.dtype(dtype).name} {label}: {type(exc).__name__}: {exc}")
                continue
            # float64 instructions in a float32 kernel (conversions, the thread-0 softmax) are listed, not failed
            wide = ptx.count(".f64") if dtype == np.float32 else 0
            usage = register_usage(ptx, cc)
            print(f"ok   {np.dtype(dtype).name} {label}" + (f"  {usage}" if usage else "")
                  + (f"  ({wide} .f64 in PTX)" if wide else ""))
    print(f"{failures} of {total} kernel compilations failed for sm_{cc[0]}{cc[1]}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
