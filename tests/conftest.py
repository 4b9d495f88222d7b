"""Test configuration shared by every test module.

Without a CUDA GPU (no nvidia-smi on the PATH), the CUDA backend runs on Numba's
CUDA simulator; the variable must be set before Numba is first imported.
"""
import os
import shutil

if "NUMBA_ENABLE_CUDASIM" not in os.environ and shutil.which("nvidia-smi") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
