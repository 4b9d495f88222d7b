"""The offline resource report of every CUDA kernel (lstm_numba_cuda/ptx_check.py): the H200's occupancy
arithmetic on hand-computed cases, the launch geometry the report assumes against the launches themselves,
the report's README table, and the report itself where a CUDA toolkit is installed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from parallel_lstm import lstm_numpy as ref
from parallel_lstm.lstm_numba_cuda import KERNEL_VERSIONS, h200, ptx_check
from parallel_lstm.lstm_numba_cuda.device import Launcher
from parallel_lstm.lstm_numba_cuda.device_code import shared_kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(ROOT, "reports", "kernel-resources.json")
DYNAMIC = {("v3", "persistent"), ("v4", "forward_kernel"), ("v4", "backward_kernel"), ("v4", "minibatch_kernel")}


@pytest.mark.parametrize("threads,registers,shared,blocks,limit,fraction", [
    # 4 warps of 172 registers: 5632 a warp, 2 warps in each quarter's 16384: 8 warps, 2 blocks
    (128, 172, 9280 + 32768, 2, "registers", 8 / 64),
    # 8 warps of 96 registers: 3072 a warp, 5 a quarter: 20 warps, 2 blocks (shared: 13440 allocated, 17)
    (256, 96, 12292, 2, "registers", 16 / 64),
    (128, 10, 0, 16, "threads", 1.0),                   # 2048 threads
    (32, 16, 0, 32, "blocks", 0.5),                     # 32 blocks of one warp
    (64, 32, 40000, 5, "shared memory", 10 / 64),       # 41024 with the driver's 1 KiB, 41088 allocated
    (64, 32, 48 * 1024 + 1, 0, "shared memory", 0.0),   # over the 48 KiB a block gets without opting in
    (64, 256, 0, 0, "registers", 0.0),                  # over 255 registers a thread
    (1024, 64, 0, 1, "registers", 0.5),                 # 2048 a warp x 32 warps: the whole register file
    (1024, 72, 0, 0, "registers", 0.0),                 # 2304 x 32 > 65536 registers a block
])
def test_occupancy_by_hand(threads, registers, shared, blocks, limit, fraction):
    found = h200.occupancy(threads, registers, shared)
    assert (found.blocks_per_sm, found.limit, found.fraction) == (blocks, limit, pytest.approx(fraction))


def kernel_names(version: int) -> dict:
    """id(kernel) -> (owner, name) of the shared kernels and one version's, float64."""
    names = {id(k): ("shared", n) for n, k in vars(shared_kernels(np.float64)).items()}
    names.update({id(k): (f"v{version}", n) for n, k in vars(KERNEL_VERSIONS[version].kernels_for(np.float64)).items()})
    return names


@pytest.mark.parametrize("version", sorted(KERNEL_VERSIONS))
def test_kernels_launch_with_the_geometry_the_report_assumes(monkeypatch, version):
    """Every launch of an epoch: its threads per block are ptx_check.launch_threads', it takes dynamic shared
    memory exactly where the report says, as many bytes as dynamic_shared_bytes gives for a training minibatch."""
    T, D, H, Y, B = 3, 2, 5, 2, 11
    names, seen, real = kernel_names(version), [], Launcher.launch

    def spy(self, kernel, grid, block, *args, shared_bytes=0):
        seen.append((names[id(kernel)], block, shared_bytes, args))
        return real(self, kernel, grid, block, *args, shared_bytes=shared_bytes)
    monkeypatch.setattr(Launcher, "launch", spy)
    rng = np.random.default_rng(0)
    X, targets = rng.normal(size=(16, T, D)), rng.normal(size=(16, Y))
    data = ref.Dataset(X[:13], targets[:13], X[13:], targets[13:])      # minibatches of 11 and 2
    from parallel_lstm.lstm_numba_cuda import train
    train(ref.init_params(D, H, Y), data, ref.TrainConfig(epochs=1, batch_size=B, kernel_version=version))
    shapes = {"T": T, "D": D, "H": H, "Y": Y, "B": B}
    for (owner, name), block, shared, args in seen:
        threads = int(np.prod(block))
        assert threads == ptx_check.launch_threads(owner, name), (owner, name)
        assert (shared > 0) == ((owner, name) in DYNAMIC), (owner, name)
        training_rows = args and hasattr(args[0], "nrows") and args[0].nrows == B
        if shared and training_rows:
            assert shared == ptx_check.dynamic_shared_bytes(owner, name, np.float64, shapes, None, 0)
    assert {owner for (owner, _), *_ in seen} == {"shared", f"v{version}"}


def test_the_readme_table_is_the_committed_reports():
    with open(REPORT, encoding="utf-8") as handle:
        document = json.load(handle)
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    table = ptx_check.markdown_table(document)
    assert table in readme, "README's kernel table is stale: regenerate it with ptx_check --table (README says how)"
    assert table.count("\n") == 2 + len({(str(r["version"]), r["kernel"], r["dtype"]) for r in document["rows"]}) - 1


def test_the_table_merges_builds_that_differ_only_by_task():
    row = {"kernel": "k", "version": 4, "dtype": "float32", "registers": 40, "spill_bytes": 0,
           "shared_bytes": {"light": 10, "heavy": 20, "gpu": 30}, "occupancy": {"light": 1, "heavy": 0.5, "gpu": 0.25}}
    table = ptx_check.markdown_table({"rows": [{**row, "task": "regression"},
                                               {**row, "task": "classification", "registers": 44}]})
    assert table.splitlines()[-1] == "| k | 4 | float32 | 40/44 | 0 | 20 / 30 | 50% / 25% |"


def test_every_kernel_compiles_for_a_real_gpu_and_reports_its_resources(tmp_path):
    """The simulator never compiles the kernels; NVVM does, here without a GPU (in a subprocess: this process
    has the simulator on), and ptxas reports each build's resources. Skipped without a CUDA toolkit."""
    report = tmp_path / "resources.json"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    done = subprocess.run([sys.executable, "-m", "parallel_lstm.lstm_numba_cuda.ptx_check", "--json", str(report)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if done.returncode == 3:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stdout + done.stderr
    expected = sum(len(list(ptx_check.compilations(dtype))) for dtype in (np.float64, np.float32))
    assert expected >= 2 * (len(KERNEL_VERSIONS) + 1)    # shared kernels and every version's, both dtypes
    assert f"0 of {expected} kernel compilations failed" in done.stdout
    assert done.stdout.count("\nok   ") == expected
    document = json.loads(report.read_text())
    rows = document["rows"]
    assert len(rows) == expected and document["failures"] == []
    if document["ptxas"] is None:
        pytest.skip("no ptxas found (not on the PATH, no nvidia-cuda-nvcc wheel): no registers to check")
    assert f"ptxas: {document['ptxas']['path']}" in done.stdout
    assert [f"{r['dtype']} v{r['version']} {r['kernel']}" for r in rows if r["spill_bytes"]] == []   # no spills
    for row in rows:
        dynamic = row["dynamic_shared_bytes"]
        assert (dynamic is not None) == ((f"v{row['version']}", row["kernel"]) in DYNAMIC)
        sizes = row["shared_bytes"] if dynamic else {"heavy": row["shared_bytes"]}
        occupancy = row["occupancy"] if dynamic else {"heavy": row["occupancy"]}
        for workload, size in sizes.items():
            assert occupancy[workload] == h200.occupancy(row["threads"], row["registers"], size).fraction
    by_name = {(r["version"], r["kernel"], r["dtype"], r["task"]): r for r in rows}
    persistent = by_name[3, "persistent", "float32", "regression"]
    assert persistent["dynamic_shared_bytes"]["gpu"] == (6 * 512 + 1) * 4 and persistent["threads"] == 256
    assert by_name[4, "forward_kernel", "float32", "regression"]["dynamic_shared_bytes"]["gpu"] == 4 * 4 * 512 * 4
    assert by_name[1, "matmul", "float32", None]["fma"] > 0


def test_ptxas_comes_from_the_path_else_from_the_nvcc_wheel_and_says_which(tmp_path, monkeypatch):
    wheel = tmp_path / "nvidia" / "cu13" / "bin"
    wheel.mkdir(parents=True)
    (wheel / "ptxas").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    (wheel / "ptxas").chmod(0o755)
    monkeypatch.setattr(ptx_check.shutil, "which", lambda name: None)
    monkeypatch.setattr(ptx_check.site, "getsitepackages", lambda: [str(tmp_path)])
    monkeypatch.setattr(ptx_check.sys, "path", [])
    assert ptx_check.find_ptxas() == {"path": str(wheel / "ptxas"), "source": "nvidia-cuda-nvcc wheel",
                                      "version": "13.0 V13.0.88"}
    monkeypatch.setattr(ptx_check.site, "getsitepackages", lambda: [str(tmp_path / "elsewhere")])
    monkeypatch.setattr(ptx_check.site, "getusersitepackages", lambda: str(tmp_path / "elsewhere"))
    assert ptx_check.find_ptxas() is None
