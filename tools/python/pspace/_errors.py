"""pspace.Error and one subclass per C error code (include/pspace/common.h)."""

from . import _lib


class Error(Exception):
    """A libpspace error: str() is the C library's message
    (pspace_strerror: pspace_errdetail), naming the store, matrix or file.
    `code` is the negative PSPACE_E* value (0 for errors found in Python)."""

    code = 0

    def __init__(self, message, code=None):
        super().__init__(message)
        if code is not None:
            self.code = code


def _sub(name, code, *bases):
    return type(name, (Error,) + bases, {"code": code, "__doc__": "PSPACE error %d." % code})


InvalidError = _sub("InvalidError", -1, ValueError)
NoMemoryError = _sub("NoMemoryError", -2, MemoryError)
IOError_ = _sub("IOError", -3, OSError)
NotFoundError = _sub("NotFoundError", -4, KeyError)
ExistsError = _sub("ExistsError", -5)
CorruptError = _sub("CorruptError", -6)
VersionError = _sub("VersionError", -7)
FullError = _sub("FullError", -8)
IncompleteError = _sub("IncompleteError", -9)
BusyError = _sub("BusyError", -10)
StoreError = _sub("StoreError", -11)
CodecError = _sub("CodecError", -12)
FormatError = _sub("FormatError", -13, ValueError)
NotSupportedError = _sub("NotSupportedError", -14)
DimensionError = _sub("DimensionError", -15, ValueError)
NoConvergenceError = _sub("NoConvergenceError", -16)
NumericError = _sub("NumericError", -17)
BlisError = _sub("BlisError", -18)

BY_CODE = {c.code: c for c in (InvalidError, NoMemoryError, IOError_, NotFoundError, ExistsError,
                               CorruptError, VersionError, FullError, IncompleteError, BusyError,
                               StoreError, CodecError, FormatError, NotSupportedError,
                               DimensionError, NoConvergenceError, NumericError, BlisError)}
# KeyError's str() quotes its argument; keep the message as it is.
NotFoundError.__str__ = lambda self: Exception.__str__(self)


def error(code):
    """The exception for C return code `code`, with the thread's detail."""
    what = _lib.lib.pspace_strerror(code).decode()
    detail = (_lib.lib.pspace_errdetail() or b"").decode(errors="replace")
    return BY_CODE.get(code, Error)(what + ": " + detail if detail else what, code)


def check(rc, pending=None):
    """Raises for a nonzero C return code; a Python exception a callback
    stored in `pending` (a list) during the call comes back first."""
    if pending:
        exc = pending[0]
        del pending[:]
        raise exc
    if rc:
        raise error(rc)
