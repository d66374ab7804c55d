"""Reading a CIFAR-10 python batch without trusting it: an unpickler that builds only what such a file holds.

A pickle can name any global and call it; a CIFAR-10 batch needs none but numpy's array
rebuilders, so every other global is refused before it runs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from s7core.data.errors import DataError, file_fix

# Only these globals may appear in a CIFAR-10 pickle: numpy's array rebuilders. Plain
# containers (dict, list, str, bytes, int) have their own opcodes and need no global.
_NUMPY_REBUILDERS = {
    ("numpy.core.multiarray", "_reconstruct"),  # pickles from numpy < 2 (the official files)
    ("numpy._core.multiarray", "_reconstruct"),  # pickles from numpy >= 2
    ("numpy._core.numeric", "_frombuffer"),  # protocol-5 pickles from numpy >= 2
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
}


def _plain_dtype(*args):
    """numpy.dtype, refusing object dtypes (an object array could hold anything)."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refused dtype {dtype}")
    return dtype


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds dicts, lists, strings, bytes, ints and numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("numpy", "dtype"):
            return _plain_dtype
        if (module, name) in _NUMPY_REBUILDERS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def unpickle_batch(path: Path) -> dict:
    """The dict pickled in one CIFAR-10 python file; DataError for a foreign, corrupt or unreadable one."""
    try:
        with open(path, "rb") as fh:
            obj = _CifarUnpickler(io.BytesIO(fh.read()), encoding="latin1").load()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}; {file_fix(path)}", path) from err
    except Exception as err:  # any unpickling failure means a corrupt or foreign file
        raise DataError(
            f"{path} is not a CIFAR-10 python batch ({err}); {file_fix(path)}",
            path,
        ) from err
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a CIFAR-10 batch dict; replace it", path)
    return obj
