"""A temporary file of batches: what a build's first pass read, served
again to its later passes instead of recomputing it.

Batches are numpy arrays, or dicts / tuples of them; each array is written
raw at the end of the file as it comes (its offset, dtype and shape kept
in memory), and read back one batch at a time, so memory stays one batch.
"""

import errno
import os
import tempfile

import numpy as np

from ._errors import FullError, IOError_

_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_pwrite = os.pwrite  # the tests replace it to fill the disk


class Spill:
    """A spill file in @p where (a directory; None: tempfile's default),
    removed by close()."""

    def __init__(self, where=None):
        fd, self.path = tempfile.mkstemp(prefix="pspace-spill-", suffix=".bin",
                                         dir=None if where is None else os.fspath(where))
        self.fd, self.size, self.index = fd, 0, []

    def put(self, batch):
        """Appends @p batch (an array, or a dict / tuple / list of them)."""
        self.index.append(self._put(batch))

    def batches(self):
        """The batches put so far, in order, each read when asked for."""
        for desc in self.index:
            yield self._get(desc)

    def close(self):
        """Closes and removes the file (again: nothing)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def _put(self, obj):
        if isinstance(obj, dict):
            return ("d", [(k, self._put(v)) for k, v in obj.items()])
        if isinstance(obj, (tuple, list)):
            return ("t", [self._put(v) for v in obj])
        a = np.ascontiguousarray(obj)
        off, buf, done = self.size, memoryview(a).cast("B"), 0
        try:
            while done < len(buf):
                done += _pwrite(self.fd, buf[done:], off + done)
        except OSError as e:
            cls = FullError if e.errno in _FULL else IOError_
            raise cls("spill file %s: cannot write %d bytes at offset %d (%s)%s"
                      % (self.path, len(buf), off, e.strerror or e,
                         ": the disk is full; spill elsewhere (spill='/dir') or not at all"
                         if cls is FullError else "")) from None
        self.size += len(buf)
        return ("a", off, a.dtype.str, a.shape)

    def _get(self, desc):
        if desc[0] == "d":
            return {k: self._get(v) for k, v in desc[1]}
        if desc[0] == "t":
            return tuple(self._get(v) for v in desc[1])
        _, off, dtype, shape = desc
        a = np.empty(shape, dtype=dtype)
        buf, done = memoryview(a).cast("B"), 0
        while done < len(buf):
            try:
                got = os.preadv(self.fd, [buf[done:]], off + done)
            except OSError as e:
                raise IOError_("spill file %s: cannot read %d bytes at offset %d (%s)"
                               % (self.path, len(buf), off, e.strerror or e)) from None
            if got == 0:
                raise IOError_("spill file %s: ends at offset %d, %d bytes early (changed by "
                               "another program?)" % (self.path, off + done, len(buf) - done))
            done += got
        return a
