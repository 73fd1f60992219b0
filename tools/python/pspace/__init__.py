"""pspace: parameter-space matrices (Fisher etc.) stored as compressed LMDB
tiles, over libpspace through ctypes.

    import pspace
    with pspace.Store("fisher.store") as store:
        F = store["F"]
        y = F @ v                                   # numpy float64
        x = (2 * F - store["G"] + 1e-3 * pspace.I).solve(b)

Every product, solve and build runs in libpspace; errors raise
pspace.Error (a subclass per C error code) carrying the C library's message.
"""

from . import _lib
from ._core import I, Expression, Matrix, Operator, Store
from ._errors import (BlisError, BusyError, CodecError, CorruptError, DimensionError, Error,
                      ExistsError, FormatError, FullError, IncompleteError, InvalidError,
                      NoConvergenceError, NoMemoryError, NotFoundError, NotSupportedError,
                      NumericError, StoreError, VersionError)

__version__ = _lib.lib.pspace_version().decode()
lib = _lib.lib

__all__ = ["Store", "Matrix", "Expression", "Operator", "I", "Error", "BlisError", "BusyError",
           "CodecError", "CorruptError", "DimensionError", "ExistsError", "FormatError",
           "FullError", "IncompleteError", "InvalidError", "NoConvergenceError",
           "NoMemoryError", "NotFoundError", "NotSupportedError", "NumericError", "StoreError",
           "VersionError"]
