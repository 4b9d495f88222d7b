"""Where the CUDA backend runs: GPU or simulator detection, device facts, and the one launch/transfer wrapper.

Every kernel launch and every host<->device copy of the backend goes through a
``Launcher``, so the counts it reports (launches, h2d, d2h) are the real ones,
and it refuses any host array passed to a kernel (residency is enforced, not hoped for).
"""
from __future__ import annotations

import warnings

import numpy as np
from numba import cuda
from numba.cuda.core.errors import NumbaPerformanceWarning
from numba.cuda.cudadrv.devicearray import is_cuda_ndarray

from parallel_lstm.lstm_numpy.backends import cuda_simulator_on
from parallel_lstm.lstm_numpy.errors import UserError

# numba-cuda warns whenever a launch configuration of fewer than 128 blocks is made. Ours are small
# on purpose: the one-block deterministic reductions (loss, clip scale) and the tiny test sizes.
LOW_OCCUPANCY = r"Grid size \d+ will likely result in GPU under-utilization due to low occupancy"

NO_GPU_MESSAGE = ("no CUDA GPU was found (numba.cuda.is_available() is False); to run the numba_cuda backend "
                  "without a GPU, set NUMBA_ENABLE_CUDASIM=1 before starting Python to use Numba's CUDA simulator "
                  "(slow, for testing only).")


simulator_enabled = cuda_simulator_on     # the one check, shared with the tools


def gpu_present() -> bool:
    """True when a real CUDA GPU and driver are usable."""
    return (not simulator_enabled()) and bool(cuda.is_available())


def is_available() -> str | None:
    """None when kernels can run here (a real GPU, or the simulator switched on); otherwise why not, in one sentence."""
    if simulator_enabled() or gpu_present():
        return None
    return NO_GPU_MESSAGE


def require_device() -> None:
    """Raise UserError with the no-GPU sentence instead of ever falling back to the CPU silently."""
    reason = is_available()
    if reason is not None:
        raise UserError(reason)


def device_facts() -> dict:
    """GPU name, compute capability, memory and whether the simulator is on."""
    if simulator_enabled():
        return {"device": "Numba CUDA simulator (CPU; timings are not GPU timings)", "compute_capability": None,
                "device_memory_bytes": None, "simulator": True}
    if not gpu_present():
        return {"device": None, "compute_capability": None, "device_memory_bytes": None, "simulator": False}
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    _free, total = cuda.current_context().get_memory_info()
    return {"device": name, "compute_capability": ".".join(map(str, dev.compute_capability)),
            "device_memory_bytes": int(total), "simulator": False}


class Launcher:
    """Counts kernel launches and host<->device copies; the only way the backend touches the device.

    ``launch`` raises TypeError when an argument (or a member of a NamedTuple argument) is a host
    NumPy array: on a real GPU Numba would silently copy it both ways (and only warn), on the
    simulator not even warn. A launch configuration (kernel, grid, block, shared bytes) is made
    once and reused; numba-cuda warns about low occupancy when a configuration of fewer than 128
    blocks is made, and exactly that warning is silenced there, for grids small by design (the
    one-block reductions, the tiny test sizes). The "Host array used in CUDA kernel" warning is
    never silenced. On the simulator a configuration mutates the kernel object, so it is made per launch.
    """

    def __init__(self, simulated: bool | None = None):
        self.launches = 0
        self.h2d = 0
        self.d2h = 0
        self.simulated = simulator_enabled() if simulated is None else simulated
        self.configurations: dict = {}   # (kernel, grid, block, shared_bytes) -> configured launch
        self._resident_types: set[type] = set()   # argument types already known to be device arrays or scalars

    def counts(self) -> tuple[int, int, int]:
        return self.launches, self.h2d, self.d2h

    def launch(self, kernel, grid, block, *args, shared_bytes: int = 0):
        for position, arg in enumerate(args):
            self._check_resident(kernel, position, arg)
        if self.simulated:
            kernel[grid, block, 0, shared_bytes](*args)
        else:
            key = (kernel, grid, block, shared_bytes)
            configured = self.configurations.get(key)
            if configured is None:
                configured = self.configurations[key] = self._configure(kernel, grid, block, shared_bytes)
            configured(*args)
        self.launches += 1

    @staticmethod
    def _configure(kernel, grid, block, shared_bytes):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=LOW_OCCUPANCY, category=NumbaPerformanceWarning)
            return kernel[grid, block, 0, shared_bytes]

    def _check_resident(self, kernel, position, arg) -> None:
        kind = type(arg)
        if kind in self._resident_types:
            return
        if isinstance(arg, tuple):   # an argument group: every member must be resident
            for member in arg:
                self._check_resident(kernel, position, member)
            return
        host_array = isinstance(arg, np.ndarray) or (
            hasattr(arg, "__array__") and not is_cuda_ndarray(arg) and np.ndim(arg) > 0)   # scalars are fine
        if host_array:
            raise TypeError(f"host array passed as argument {position} of kernel "
                            f"{getattr(kernel, '__name__', kernel)}; upload it once with Launcher.to_device")
        self._resident_types.add(kind)

    def to_device(self, host: np.ndarray):
        self.h2d += 1
        return cuda.to_device(np.ascontiguousarray(host))

    def upload(self, device_array, host: np.ndarray) -> None:
        """Copy ``host`` into an existing device array (no allocation)."""
        self.h2d += 1
        device_array.copy_to_device(np.ascontiguousarray(host))

    def to_host(self, device_array) -> np.ndarray:
        self.d2h += 1
        return device_array.copy_to_host()


def cuda_version_string() -> str:
    try:
        import numba_cuda
        return numba_cuda.__version__
    except (ImportError, AttributeError):  # pragma: no cover - numba's bundled target
        return "bundled with numba"

