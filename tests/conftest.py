"""Test configuration shared by every test module.

Without a CUDA GPU (no nvidia-smi on the PATH), the CUDA backend runs on Numba's
CUDA simulator; this and NUMBA_NUM_THREADS must be set before Numba is first imported.
"""
import os
import shutil

if "NUMBA_ENABLE_CUDASIM" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"


def cores_numba_sees() -> int:
    """Numba starts one thread per core this process may run on (its default NUMBA_NUM_THREADS)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# The tests comparing 1 and 2 Numba threads (results must not depend on the thread count) need two threads
# available: only a one-core machine lacks them, so only there is NUMBA_NUM_THREADS raised to 2. Everywhere
# else every test, the benchmarks included, runs on Numba's default or the user's own NUMBA_NUM_THREADS.
if cores_numba_sees() < 2:
    os.environ.setdefault("NUMBA_NUM_THREADS", "2")
