"""Test configuration shared by every test module.

Without a CUDA GPU (no nvidia-smi on the PATH), the CUDA backend runs on Numba's
CUDA simulator; this and NUMBA_NUM_THREADS must be set before Numba is first imported.
"""
import os
import shutil

if "NUMBA_ENABLE_CUDASIM" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

# At least two Numba threads, also on a one-core machine, so that the tests comparing 1 and 2 threads
# (results must not depend on the thread count) always run; a value set by the user is kept.
os.environ.setdefault("NUMBA_NUM_THREADS", "2")
