"""Compile every kernel for a real GPU (PTX for sm_90, both dtypes) on a machine without one, and report
each build's resources.

    NUMBA_ENABLE_CUDASIM=0 parallel-lstm ptx-check [--cc 9.0] [--json FILE]
    parallel-lstm ptx-check --table FILE          # the README's markdown table from a --json report

The simulator runs the kernels' Python source, so it cannot catch what only the CUDA
target rejects (typing, unsupported calls) or float64 arithmetic leaking into float32
kernels. This compiles each kernel of the shared code and of every registered version with
NVVM alone, with the argument types its declaration gives (arguments.py), then assembles its
PTX with ptxas (the CUDA toolkit's on the PATH, else the nvidia-cuda-nvcc wheel's; the output and
the report say which) for its registers and spill bytes. Without a GPU, numba-cuda
still asks the driver and NVRTC for facts it needs (the compute capability of device functions,
the supported architectures, the libdevice path); those three look-ups are answered here
from the ``--cc`` option and the CUDA toolkit's files, which touches numba-cuda internals
(checked with numba-cuda 0.30).

``--json FILE`` writes one row per kernel build (``lstm_numpy.files.publish_file``, replacing FILE):
kernel, version ("shared" or the version number), dtype, task (where the build depends on it),
threads (the block size it is launched with), registers, spill_stores, spill_loads, spill_bytes
(stores + loads), static_shared_bytes, dynamic_shared_bytes ({workload: bytes} at the default shapes
of light, heavy and gpu for the kernels that take dynamic shared memory: v3's per-sample state, v4's
W_hh slice; else null), shared_bytes (static, or {workload: static + dynamic}), and the theoretical
occupancy on an H200 at that block size (h200.py: registers, shared memory, threads and blocks per
SM), as occupancy (resident warps / 64), blocks_per_sm and occupancy_limit (each a {workload: ...}
where the dynamic shared memory depends on the workload), fma (fma.rn.f32/f64 instructions in the
PTX) and f64_instructions (``.f64`` in a float32 kernel's PTX: conversions, the thread-0 softmax).
v4's cooperative kernel is sized as the GPU would size it: its default plan, cut to the blocks its
registers and shared memory let be resident at once.

Exit status: 0 all compile, 1 a kernel failed, 2 the simulator is on or bad input, 3 no
libnvvm/libdevice found (nothing checked).
"""
from __future__ import annotations

import argparse
import glob
import inspect
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
from types import SimpleNamespace
from typing import Iterator

import numpy as np
from numba import cuda

from parallel_lstm.lstm_numpy.contract import TASKS
from parallel_lstm.reports.commands import prog
from parallel_lstm.reports.options import parse_or_exit

from . import h200
from .arguments import Kind
from .device import gpu_present, simulator_enabled

PROG = prog("ptx-check")

SCHEMA = "parallel-lstm/kernel-resources/1"
WORKLOADS = ("light", "heavy", "gpu")           # the dynamic shared memory is reported at their default shapes


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


def find_ptxas() -> dict | None:
    """{path, source, version} of the ptxas to use: the one on the PATH, else one from the nvidia-cuda-nvcc
    wheels (nvidia/cuda_nvcc/bin or nvidia/cu13/bin in site-packages); None when there is none."""
    found = shutil.which("ptxas")
    source = "PATH"
    if found is None:
        folders = list(dict.fromkeys(site.getsitepackages() + [site.getusersitepackages()] + sys.path))
        wheels = [path for folder in folders if folder and os.path.isdir(folder)
                  for path in sorted(glob.glob(os.path.join(folder, "nvidia", "*", "bin", "ptxas")))]
        found, source = (wheels[0], "nvidia-cuda-nvcc wheel") if wheels else (None, None)
    if found is None:
        return None
    done = subprocess.run([found, "--version"], capture_output=True, text=True)
    release = re.search(r"release ([\d.]+), (V[\d.]+)", done.stdout)
    return {"path": found, "source": source, "version": " ".join(release.groups()) if release else None}


def compilations(dtype) -> Iterator[tuple[str, str, str | None, object, tuple]]:
    """(owner, kernel name, task or None, kernel, argument types) for every kernel of the shared code and of
    every registered version; owner is "shared" or "v<N>".

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
                yield owner, name, task, kernel, tuple(kind.numba_type(dtype, task) for kind in kinds)


def ptxas_usage(ptx: str, cc: tuple[int, int], ptxas: str) -> dict:
    """{registers, spill_stores, spill_loads} that ptxas reports for one kernel's PTX, or {error}."""
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
        return {"error": f"ptxas failed: {done.stderr.strip()[:200]}"}
    return {"registers": int(registers.group(1)), "spill_stores": int(spills.group(1)),
            "spill_loads": int(spills.group(2))}


def ptx_facts(ptx: str) -> dict:
    """What the PTX itself says: static shared bytes (relocatable code makes ptxas report none), whether
    the kernel takes dynamic shared memory, and its fused multiply-adds."""
    static = re.findall(r"\.shared \.align \d+ \.b8 \w+\[(\d+)\]", ptx)
    return {"static_shared_bytes": sum(int(size) for size in static),
            "dynamic": bool(re.search(r"\.extern \.shared", ptx)),
            "fma": len(re.findall(r"\bfma\.rn\.f(?:32|64)\b", ptx))}


def launch_threads(owner: str, name: str) -> int:
    """The threads per block each kernel is launched with (tests hold this to the launches themselves)."""
    from .device_code import BLOCK, REDUCE_THREADS, TILE
    from .v3 import PersistentKernel
    from .v4 import UnitSlices
    if owner == "v4":
        return UnitSlices.threads
    return {("shared", "loss_reduce"): REDUCE_THREADS, ("shared", "clip_scale"): REDUCE_THREADS,
            ("v1", "matmul"): TILE * TILE, ("v3", "persistent"): PersistentKernel.threads_per_block,
            ("v3", "finish"): REDUCE_THREADS}.get((owner, name), BLOCK)


def dynamic_shared_bytes(owner: str, name: str, dtype, shapes: dict, registers: int | None, static: int) -> int:
    """The dynamic shared memory a kernel is launched with at a workload's shapes (training minibatches of B
    rows); v4's cooperative kernel on the plan cut to its resident blocks (needs its registers)."""
    from .v3 import persistent_shared_bytes
    from .v4 import UnitSlices, plan, resident_plan
    T, D, H, Y, B = (shapes[key] for key in ("T", "D", "H", "Y", "B"))
    if (owner, name) == ("v3", "persistent"):
        return persistent_shared_bytes(H, Y, dtype)
    options = {"target_blocks": UnitSlices.target_blocks, "threads": UnitSlices.threads}
    if (owner, name) in (("v4", "forward_kernel"), ("v4", "backward_kernel")):
        return plan(T, D, H, Y, B, dtype, **options).shared_bytes
    if (owner, name) == ("v4", "minibatch_kernel"):
        if registers is None:
            return plan(T, D, H, Y, B, dtype, **options).shared_bytes
        def resident(p):
            return h200.SMS * h200.occupancy(p.threads, registers, static + p.shared_bytes).blocks_per_sm
        return resident_plan(T, D, H, Y, B, dtype, resident, **options)[0].shared_bytes
    raise ValueError(f"{owner} {name} takes dynamic shared memory, but ptx_check does not know how much: "
                     f"add it to dynamic_shared_bytes")


def resource_row(owner: str, name: str, task: str | None, dtype, ptx: str, usage: dict, workloads: dict) -> dict:
    """One report row (fields: the module docstring); ``workloads``: {name: shapes} for the dynamic sizes."""
    facts = ptx_facts(ptx)
    threads = launch_threads(owner, name)
    registers = usage.get("registers")
    static = facts["static_shared_bytes"]
    row = {"kernel": name, "version": owner if owner == "shared" else int(owner[1:]), "dtype": np.dtype(dtype).name,
           "task": task, "threads": threads, "registers": registers, "spill_stores": usage.get("spill_stores"),
           "spill_loads": usage.get("spill_loads"),
           "spill_bytes": usage["spill_stores"] + usage["spill_loads"] if registers is not None else None,
           "static_shared_bytes": static, "dynamic_shared_bytes": None, "shared_bytes": static,
           "fma": facts["fma"], "f64_instructions": ptx.count(".f64") if np.dtype(dtype) == np.float32 else 0}
    if facts["dynamic"]:
        row["dynamic_shared_bytes"] = {w: dynamic_shared_bytes(owner, name, dtype, shapes, registers, static)
                                       for w, shapes in workloads.items()}
        row["shared_bytes"] = {w: static + size for w, size in row["dynamic_shared_bytes"].items()}
    if registers is None:
        row.update(occupancy=None, blocks_per_sm=None, occupancy_limit=None)
        return row
    sizes = row["shared_bytes"]
    found = ({w: h200.occupancy(threads, registers, size) for w, size in sizes.items()} if isinstance(sizes, dict)
             else h200.occupancy(threads, registers, sizes))
    for field, key in (("fraction", "occupancy"), ("blocks_per_sm", "blocks_per_sm"), ("limit", "occupancy_limit")):
        row[key] = ({w: getattr(o, field) for w, o in found.items()} if isinstance(found, dict)
                    else getattr(found, field))
    return row


def workload_shapes() -> dict:
    """{workload: shapes} of light, heavy and gpu at their defaults."""
    from parallel_lstm.data.workloads import make_workload
    return {name: make_workload(name).shapes for name in WORKLOADS}


def line_for(row: dict) -> str:
    """The printed line of one build."""
    label = f"{row['dtype']} {'shared' if row['version'] == 'shared' else 'v' + str(row['version'])} {row['kernel']}"
    label += f"/{row['task']}" if row["task"] else ""
    if row["registers"] is None:
        return f"ok   {label}"
    shared = row["shared_bytes"]
    shared_text = (f"{row['static_shared_bytes']} bytes static shared" if not isinstance(shared, dict) else
                   f"{row['static_shared_bytes']} bytes static shared + dynamic (heavy {shared['heavy']}, gpu "
                   f"{shared['gpu']} in all)")
    occupancy = row["occupancy"]
    occupancy_text = (f"{occupancy:.0%}" if not isinstance(occupancy, dict) else
                      f"heavy {occupancy['heavy']:.0%}, gpu {occupancy['gpu']:.0%}")
    wide = f"  ({row['f64_instructions']} .f64 in PTX)" if row["f64_instructions"] else ""
    return (f"ok   {label}  {row['registers']} registers, spill {row['spill_stores']}/{row['spill_loads']} bytes "
            f"stored/loaded, {shared_text}, {row['threads']} threads, occupancy {occupancy_text}, "
            f"{row['fma']} fma{wide}")


def markdown_table(document: dict) -> str:
    """The README's table from a --json report: one line per kernel, version and dtype (tasks that build
    alike merged; where they differ, "regression/classification"), shared bytes and occupancy at heavy and gpu."""
    groups: dict = {}
    for row in document["rows"]:
        groups.setdefault((str(row["version"]), row["kernel"], row["dtype"]), []).append(row)

    def at(value, workload):
        return value[workload] if isinstance(value, dict) else value

    def merged(rows, pick):
        values = list(dict.fromkeys(pick(row) for row in rows))
        return "/".join(values)

    lines = ["| kernel | version | dtype | registers | spills (bytes) | shared bytes (heavy / gpu) "
             "| occupancy (heavy / gpu) |", "|---|---|---|---|---|---|---|"]
    for (version, kernel, dtype), rows in groups.items():
        shared = merged(rows, lambda r: " / ".join(dict.fromkeys(str(at(r["shared_bytes"], w))
                                                                for w in ("heavy", "gpu"))))
        occupancy = merged(rows, lambda r: "-" if r["occupancy"] is None else " / ".join(
            dict.fromkeys(f"{at(r['occupancy'], w):.0%}" for w in ("heavy", "gpu"))))
        lines.append(f"| {kernel} | {version} | {dtype} | {merged(rows, lambda r: str(r['registers']))} "
                     f"| {merged(rows, lambda r: str(r['spill_bytes']))} | {shared} | {occupancy} |")
    return "\n".join(lines)


def compile_all(cc: tuple[int, int], ptxas: dict | None, workloads: dict) -> tuple[list[dict], list[str]]:
    """Every build's row (printing its line as it goes) and a line per failure."""
    rows, failures = [], []
    for dtype in (np.float64, np.float32):
        for owner, name, task, kernel, signature in compilations(dtype):
            label = f"{np.dtype(dtype).name} {owner} {name}" + (f"/{task}" if task else "")
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
            except Exception as exc:   # report every kernel, then fail
                failures.append(f"FAIL {label}: {type(exc).__name__}: {exc}")
                print(failures[-1], flush=True)
                continue
            usage = ptxas_usage(ptx, cc, ptxas["path"]) if ptxas else {}
            if "error" in usage:
                failures.append(f"FAIL {label}: {usage['error']}")
                print(failures[-1], flush=True)
                continue
            rows.append(resource_row(owner, name, task, dtype, ptx, usage, workloads))
            print(line_for(rows[-1]), flush=True)
    return rows, failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="9.0", help="compute capability to compile for (default 9.0, H100/H200)")
    parser.add_argument("--json", metavar="FILE", help="write the resource report to FILE (replacing it)")
    parser.add_argument("--table", metavar="FILE", help="print the markdown table of a --json report and stop")
    args, exit_code = parse_or_exit(parser, sys.argv[1:] if argv is None else list(argv))
    if args is None:
        return exit_code
    if args.table:
        try:
            with open(args.table, encoding="utf-8") as handle:
                print(markdown_table(json.load(handle)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"{PROG}: cannot read the report {args.table} ({exc}); write one with --json FILE.",
                  file=sys.stderr)
            return 2
        return 0
    if simulator_enabled():
        print(f"{PROG}: the CUDA simulator is on; run with NUMBA_ENABLE_CUDASIM=0 to compile for the GPU.",
              file=sys.stderr)
        return 2
    cc = tuple(int(part) for part in args.cc.split("."))
    if not gpu_present():
        libdevice = _find_libdevice()
        if libdevice is None:
            print(f"{PROG}: no CUDA toolkit (nvvm/libdevice) found; set CUDA_HOME to check the kernels.",
                  file=sys.stderr)
            return 3
        _answer_gpu_lookups(cc, libdevice)
    ptxas = find_ptxas()
    print(f"ptxas: {ptxas['path']} ({ptxas['version'] or 'version unknown'}, from the {ptxas['source']})" if ptxas
          else "ptxas: none found (not on the PATH, no nvidia-cuda-nvcc wheel): no registers, spills or occupancy",
          flush=True)
    workloads = workload_shapes()
    rows, failures = compile_all(cc, ptxas, workloads)
    total = len(rows) + len(failures)
    print(f"{len(failures)} of {total} kernel compilations failed for sm_{cc[0]}{cc[1]}")
    if args.json:
        from parallel_lstm.lstm_numpy.errors import UserError
        from parallel_lstm.lstm_numpy.files import publish_file
        import numba_cuda
        document = {"schema": SCHEMA, "cc": args.cc, "ptxas": ptxas, "numba_cuda": numba_cuda.__version__,
                    "workloads": workloads, "device_limits": "NVIDIA H200 (lstm_numba_cuda/h200.py)",
                    "rows": rows, "failures": failures}
        try:
            publish_file(args.json, json.dumps(document, indent=1) + "\n", overwrite=True, what="resource report")
        except UserError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        print(f"resource report: {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
