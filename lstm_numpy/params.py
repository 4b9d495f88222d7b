"""Parameters of the LSTM: one layout shared by every backend.

Letters: D input features, H hidden units, Y outputs.

    W_ih (4H, D)   input weights, gate blocks in the order i, f, g, o
    W_hh (4H, H)   recurrent weights, same block order
    b    (4H,)     one bias vector (PyTorch's bias_ih + bias_hh)
    W_y  (Y, H)    head weights
    b_y  (Y,)      head bias

The i, f, g, o order is PyTorch's ``nn.LSTM`` order, so weights can be
exchanged with it. Gradients use the same container.
"""
from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, fields

import numpy as np

from .errors import UserError
from .files import check_input_file, publish_file
from .memory import check_fits, params_bytes

SUPPORTED_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))
NAMES = ("W_ih", "W_hh", "b", "W_y", "b_y")


@dataclass
class Params:
    """The five parameter arrays (see the module docstring for shapes)."""

    W_ih: np.ndarray
    W_hh: np.ndarray
    b: np.ndarray
    W_y: np.ndarray
    b_y: np.ndarray

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(D, H, Y)."""
        return self.W_ih.shape[1], self.W_hh.shape[1], self.W_y.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.W_ih.dtype

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays in the fixed order W_ih, W_hh, b, W_y, b_y."""
        return tuple(getattr(self, f.name) for f in fields(self))

    def items(self):
        return zip(NAMES, self.arrays())

    def copy(self) -> "Params":
        return Params(*(np.array(a, copy=True) for a in self.arrays()))

    def astype(self, dtype) -> "Params":
        return Params(*(np.ascontiguousarray(a, dtype=dtype) for a in self.arrays()))


def shapes_for(D: int, H: int, Y: int) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter for sizes D, H, Y."""
    return {"W_ih": (4 * H, D), "W_hh": (4 * H, H), "b": (4 * H,), "W_y": (Y, H), "b_y": (Y,)}


def check_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in SUPPORTED_DTYPES:
        raise UserError(f"dtype {dtype} is not supported; use float64 or float32.")
    return dtype


def check_sizes(**sizes: int) -> None:
    """Raise a UserError naming the first size that is not a positive integer."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise UserError(f"{name} must be a positive integer, got {value!r}.")


def check_seed(seed) -> None:
    """NumPy seeds are non-negative integers; anything else is one sentence, not NumPy's traceback."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}.")


def init_params(D: int, H: int, Y: int, seed: int = 0, dtype=np.float64,
                forget_bias: float = 0.0) -> Params:
    """Draw parameters from a seeded ``np.random.Generator``.

    Every entry, biases included, is uniform in (-1/sqrt(H), 1/sqrt(H)) as in
    PyTorch's ``nn.LSTM``; ``forget_bias`` is then added to the f block of b.
    Biases are deliberately non-zero so that gradient checks see them.
    Every backend starts from these very arrays.
    """
    check_sizes(D=D, H=H, Y=Y)
    check_seed(seed)
    dtype = check_dtype(dtype)
    # The draws are float64 and then cast: room for both.
    check_fits(params_bytes(D, H, Y) + params_bytes(D, H, Y, dtype.itemsize),
               f"a model with D={D}, H={H}, Y={Y}", "choose a smaller hidden size")
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(H)
    arrays = {name: rng.uniform(-bound, bound, size=shape)
              for name, shape in shapes_for(D, H, Y).items()}
    arrays["b"][H:2 * H] += forget_bias
    return Params(**arrays).astype(dtype)


def save_params(path, params: Params, overwrite: bool = False) -> None:
    """Write ``params`` to an ``.npz`` file atomically, mode 0644 under the usual umask (``files.publish_file``).

    An existing file is never replaced unless ``overwrite`` is set (then atomically): of several
    processes saving to one new path, one succeeds and the others get a UserError.
    """
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise UserError(f"checkpoint path {path!r} must end in .npz; add the suffix.")
    arrays = dict(params.items())
    publish_file(path, lambda handle: np.savez(handle, **arrays), overwrite=overwrite, what="checkpoint")


# What a damaged or foreign file raises inside np.load and the archive's members (a damaged header
# can also claim an array too large to allocate).
UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, MemoryError)


def read_archive(path: str) -> dict[str, np.ndarray]:
    """Every array of the .npz file at ``path``; anything else (empty, truncated, not an archive) is one sentence."""
    check_input_file(path, "checkpoint")
    if os.path.getsize(path) == 0:
        raise UserError(f"checkpoint {path} is empty; save the model again with save_params.")
    try:
        with open(path, "rb") as handle:          # ours to close, also when np.load fails halfway
            loaded = np.load(handle, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise UserError(f"checkpoint {path} holds a single array, not the .npz archive save_params "
                                f"writes; save the model with save_params.")
            arrays = {name: loaded[name] for name in loaded.files}
    except UserError:
        raise
    except UNREADABLE as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(f"checkpoint {path} is not a complete .npz archive (truncated, damaged or another kind of "
                        f"file: {reason}); save the model again with save_params.") from None
    foreign = [name for name, value in arrays.items() if not isinstance(value, np.ndarray)]   # np.load gives bytes
    if foreign:
        raise UserError(f"checkpoint {path} is a zip archive, but its member {foreign[0]} is not a NumPy array; "
                        f"save the model with save_params.")
    return arrays


def load_params(path, sizes: tuple[int, int, int] | None = None, dtype=None) -> Params:
    """Read parameters saved by any backend, checking names, shapes, sizes, values and dtype.

    ``sizes`` (D, H, Y) and ``dtype``, when given, are what the caller needs;
    a file that does not fit is rejected with one sentence saying why.
    """
    path = os.fspath(path)
    stored = read_archive(path)
    missing = [name for name in NAMES if name not in stored]
    if missing:
        raise UserError(f"checkpoint {path} lacks {', '.join(missing)}; it was not saved by save_params.")
    if stored["W_ih"].ndim != 2 or stored["W_ih"].shape[0] % 4 or stored["W_y"].ndim != 2:
        raise UserError(f"checkpoint {path}: W_ih must be (4H, D) and W_y (Y, H); got {stored['W_ih'].shape} and "
                        f"{stored['W_y'].shape}.")
    D, H, Y = stored["W_ih"].shape[1], stored["W_ih"].shape[0] // 4, stored["W_y"].shape[0]
    for name, shape in shapes_for(D, H, Y).items():
        if stored[name].shape != shape:
            raise UserError(f"checkpoint {path}: {name} has shape {stored[name].shape}, "
                            f"but D={D}, H={H}, Y={Y} need {shape}.")
    if min(D, H, Y) == 0:
        raise UserError(f"checkpoint {path} holds an empty model, (D, H, Y) = {(D, H, Y)}; every size must be "
                        f"positive, so load a checkpoint of a real model.")
    if sizes is not None and (D, H, Y) != tuple(sizes):
        raise UserError(f"checkpoint {path} holds a model with (D, H, Y) = {(D, H, Y)}, "
                        f"but {tuple(sizes)} is needed; load a checkpoint of this model.")
    dtypes = {stored[name].dtype for name in NAMES}
    if len(dtypes) != 1 or next(iter(dtypes)) not in SUPPORTED_DTYPES:
        raise UserError(f"checkpoint {path} has dtypes {sorted(map(str, dtypes))}; one of float64 or float32 is needed.")
    if dtype is not None and next(iter(dtypes)) != np.dtype(dtype):
        raise UserError(f"checkpoint {path} is {next(iter(dtypes))}, but {np.dtype(dtype)} is needed; "
                        f"convert it with Params.astype or train in that dtype.")
    for name in NAMES:
        if not np.isfinite(stored[name]).all():
            raise UserError(f"checkpoint {path}: {name} holds NaN or infinite values (a diverged model); "
                            f"load a checkpoint saved before the divergence.")
    return Params(**{name: stored[name] for name in NAMES})
