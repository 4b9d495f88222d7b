"""The napkin model of the CUDA versions (lstm_numba_cuda/napkin.py) and the H200 limits it uses (h200.py),
on hand-computed cases. Whole-version numbers at the GPU's launch geometry come from a process with the
simulator off (no GPU needed: nothing is compiled or launched); the rest runs here."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from parallel_lstm.lstm_numba_cuda import KERNEL_VERSIONS, h200, napkin
from parallel_lstm.lstm_numba_cuda.v4 import UnitSlices
from parallel_lstm.lstm_numpy.contract import batch_bounds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_h200_peaks_follow_from_its_multiprocessors_and_clock():
    assert h200.FP32_PEAK == pytest.approx(132 * 128 * 2 * 1.98e9) and 66.8e12 < h200.FP32_PEAK < 67.0e12
    assert h200.FP64_PEAK == pytest.approx(h200.FP32_PEAK / 2)
    assert h200.peak_flops(np.float32) == h200.FP32_PEAK and h200.peak_flops("float64") == h200.FP64_PEAK


def test_a_stretch_of_work_takes_its_slowest_limit_at_the_share_of_the_gpu_its_warps_fill():
    full = h200.SMS * h200.WARPS_TO_SATURATE                 # 2112 warps fill the GPU
    work = napkin.Work(flops=h200.FP32_PEAK * 1e-3, l2=h200.L2_BYTES_PER_S * 2e-3, warps=full)
    limits = work.limits(np.float32)
    assert limits["compute"] == pytest.approx(1e-3) and limits["L2"] == pytest.approx(2e-3)
    assert limits["DRAM"] == limits["on-chip"] == 0
    half = napkin.Work(dram=h200.HBM_BYTES_PER_S * 1e-3, warps=full / 2).limits(np.float64)
    assert half["DRAM"] == pytest.approx(2e-3)               # half the warps: half the bandwidth
    assert napkin.Work(flops=h200.FP64_PEAK, warps=10 * full).limits(np.float64)["compute"] == pytest.approx(1.0)


def test_a_tiled_product_reads_each_operand_once_per_tile_of_the_other():
    z = napkin.Sizes(T=1, D=1, H=1, Y=1, dtype=np.dtype(np.float32), task="regression")
    work = napkin.tiled_product(z, 32, 48, 64, dram_in=100.0, tile=16)
    assert work.flops == 2 * 32 * 48 * 64
    assert work.l2 == 4 * (32 * 64 * 3 + 64 * 48 * 2)        # A once per column tile (3), B once per row tile (2)
    assert work.dram == 4 * 32 * 48 + 100.0                   # C written once, plus the cache operands
    assert work.onchip == 2 * 32 * 48 * 64 * 4                # two shared loads per FMA
    assert work.warps == 2 * 3 * 256 / 32


def test_array_arguments_count_every_array_of_an_argument_group():
    assert napkin.array_arguments("v1 matmul") == 5              # A, B, C, bias, addend
    assert napkin.array_arguments("shared sgd") == 15            # params 5, grads 5, state 5 (settings: scalars)
    # batch 3, params 5, caches 6, dc_next, outputs, rowloss, grads 5, scratch, state 5
    assert napkin.array_arguments("v4 minibatch_kernel") == 28
    assert napkin.launch_seconds("v1 matmul") == pytest.approx(6.6e-6 + 5 * 3.5e-6)


def test_the_pipeline_overlaps_the_hosts_launches_with_the_devices_work():
    host = napkin.launch_seconds("v1 colsum")                  # 2 arrays: 13.6 us
    short = napkin.Launch("v1 colsum", (napkin.Work(dram=h200.HBM_BYTES_PER_S * 1e-6, warps=1e9),))
    long = napkin.Launch("v1 colsum", (napkin.Work(dram=h200.HBM_BYTES_PER_S * 1e-3, warps=1e9),))
    launch_bound = napkin.run_pipeline([short] * 10, np.float32)
    assert launch_bound["host"] == pytest.approx(10 * host) and launch_bound["device"] == pytest.approx(10e-6)
    assert launch_bound["finish"] == pytest.approx(10 * host + 1e-6)     # each kernel waits for its launch
    device_bound = napkin.run_pipeline([long] * 10, np.float32)
    assert device_bound["finish"] == pytest.approx(host + 10e-3)          # the host runs ahead
    assert device_bound["by_limit"]["DRAM"] == pytest.approx(10e-3)


def test_every_registered_version_has_a_model():
    assert set(napkin.MODELS) == set(KERNEL_VERSIONS)


SIZES = [(2, 3, 5, 2, "regression", 23, 5, 11), (3, 1, 4, 3, "classification", 30, 12, 7)]   # T D H Y task N Nv B


@pytest.mark.parametrize("T,D,H,Y,task,n_train,n_valid,batch", SIZES)
@pytest.mark.parametrize("version,cooperative", [(v, False) for v in sorted(KERNEL_VERSIONS)] + [(4, True)])
def test_launches_per_epoch_are_the_versions_documented_counts(monkeypatch, version, cooperative, T, D, H, Y, task,
                                                               n_train, n_valid, batch):
    monkeypatch.setattr(UnitSlices, "cooperative", cooperative)
    z = napkin.Sizes(T, D, H, Y, np.dtype(np.float64), task)
    launches = napkin.epoch_launches(version, z, n_train, n_valid, batch, napkin.Setting(cooperative))
    cls = KERNEL_VERSIONS[version]
    n_batches = len(batch_bounds(n_train, batch)) - 1
    documented = 1 + n_batches * cls.launches_per_minibatch(T) + cls.launches_per_validation(T, n_valid, batch)
    assert len(launches) == documented


def test_v4_cooperative_minibatch_has_its_documented_grid_barriers():
    z = napkin.Sizes(5, 1, 4, 1, np.dtype(np.float64), "regression")
    [launch] = napkin.v4_minibatch(z, 7, napkin.Setting(True))
    assert sum(work.barriers for work in launch.works) == 2 * 5 + 3


def test_measured_against_a_prediction():
    prediction = {"predicted_epoch_seconds": 0.5, "flops_per_epoch": 2e12, "peak_flops": 4e13}
    assert napkin.measured_against(prediction, 2.0) == {"measured_over_predicted": 4.0, "fraction_of_peak": 0.025}


GPU_SCRIPT = """
import json, numpy as np
from parallel_lstm.lstm_numba_cuda import napkin
from parallel_lstm.data.workloads import make_workload
out = {}
for name in ("heavy", "gpu"):
    w = make_workload(name)
    for v in (1, 2, 3, 4):
        out[f"{name} v{v}"] = napkin.predict_workload(v, w, "float32")
coop = lambda p: 2 * 132        # two blocks per SM, as v4's 172 registers allow
out["gpu v4 resident"] = napkin.predict_workload(4, make_workload("gpu"), "float32", napkin.Setting(True, coop))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def gpu_predictions():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    done = subprocess.run([sys.executable, "-c", GPU_SCRIPT], env=env, capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_launches_and_traffic_at_the_gpu_geometry_by_hand(gpu_predictions):
    p = gpu_predictions
    # heavy: 4096 rows in 32 minibatches of 128, 455 validation rows; gpu: 128 minibatches, 7282 validation rows
    assert p["heavy v3"]["launches_per_epoch"] == 1 + 32 * 2 + 2
    assert p["heavy v2"]["launches_per_epoch"] == 1 + 32 * (2 * 32 + 5) + 4 * (32 + 1) + 1
    assert p["gpu v4"]["launches_per_epoch"] == 1 + 128 * 1 + 15 * 1 + 1
    assert p["gpu v1"]["launches_per_epoch"] == 1 + 128 * (4 * 64 + 10) + 15 * (2 * 64 + 3) + 1
    T, nb, H, G, s = 64, 512, 512, 2048, 4
    # v3 re-reads W_ih and W_hh per sample row at every forward step, W_hh at every backward step but the last,
    # W_y at the head; its gradient pass reads one operand per term and entry; the last block's SGD 3P values
    P = G * (1 + H + 1) + (H + 1)
    fma_grads = T * nb * G * (1 + H + 1) + nb * (H + 1)
    l2 = (T * nb * G * (1 + H) + nb * H + (T - 1) * nb * G * H + nb * H + fma_grads + 3 * P) * s
    assert p["gpu v3"]["l2_bytes_per_step"] == pytest.approx(l2 / T)
    # v4 (plan: 4 units per block, 128 slices, 4 sample groups) loads each block's slice twice, re-reads
    # h (and x) once per slice at every forward step and dz once per slice at every backward step but the last
    slices, groups = 128, 4
    tiles = 32 * 9 * T * nb + 1 * 9 * nb
    l2 = (2 * slices * groups * 4 * 4 * H + T * (slices * nb * (H + 1) + nb * G) + (T - 1) * slices * nb * G
          + tiles * 128 + 2 * P + 3 * P + (slices * groups) ** 2) * s
    assert p["gpu v4"]["l2_bytes_per_step"] == pytest.approx(l2 / T)
    flops = 2 * (T * nb * G * (1 + H) + nb * H + (T - 1) * nb * G * H + nb * H + fma_grads) + P + 2 * P
    assert p["gpu v4"]["flops_per_step"] == pytest.approx(flops / T)


def test_what_the_model_says_about_the_versions(gpu_predictions):
    """The README's claims: per-step launches bound v1 and v2 at heavy; W_hh re-read per sample row bounds
    v2 and v3 at gpu on L2; v4 is the fastest at gpu, and a grid cut to resident blocks is slower."""
    p = gpu_predictions
    assert p["heavy v1"]["bound"] == p["heavy v2"]["bound"] == "launches"
    assert p["gpu v2"]["bound"] == p["gpu v3"]["bound"] == "L2"
    fastest = min((p[f"gpu v{v}"]["predicted_epoch_seconds"], v) for v in (1, 2, 3, 4))
    assert fastest[1] == 4
    assert p["gpu v4 resident"]["predicted_epoch_seconds"] > p["gpu v4"]["predicted_epoch_seconds"]
    assert p["heavy v3"]["predicted_epoch_seconds"] < p["heavy v2"]["predicted_epoch_seconds"]


def test_the_table_prints_every_version_workload_and_dtype():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    done = subprocess.run([sys.executable, "-m", "parallel_lstm.lstm_numba_cuda.napkin", "--workloads", "light,heavy"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("light ", "heavy "))]
    assert len(rows) == 2 * 2 * len(KERNEL_VERSIONS)
    assert "FP32 66.9 TFLOP/s" in done.stdout and "L2 5.5 TB/s (assumed)" in done.stdout


def test_the_table_refuses_the_simulators_geometry():
    done = subprocess.run([sys.executable, "-m", "parallel_lstm.lstm_numba_cuda.napkin"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})
    assert done.returncode == 2 and "simulator is on" in done.stderr
