"""Builds from Python batches: Jacobian rows and layer tensors streamed into
pspace_build_jacobian / pspace_build_layers through ctypes sources.

The builders read a source by example range, in order, once per pass; a
source here buffers the current batch and walks the user's batches, and a
build that needs another pass calls the user's callable again. The Python
side only copies and checks shapes: every sum and decomposition runs in C.
"""

import collections.abc
import ctypes
import os

import numpy as np

from . import _lib
from ._core import L, make_exec, write_opts
from ._errors import DimensionError, Error, IOError_, check


class Layout:
    """A parsed layout, freed on close(): layout text (README, "Layout
    files"), or a path (a os.PathLike, or a str that is one word)."""

    def __init__(self, layout):
        h = ctypes.c_void_p()
        if isinstance(layout, os.PathLike) or (layout.strip() and not any(
                c.isspace() for c in layout.strip())):  # one word: a file name
            check(L.pspace_layout_load(ctypes.byref(h), os.fspath(layout).encode()))
        else:
            check(L.pspace_layout_parse(ctypes.byref(h), layout.encode(), b"<layout text>"))
        self.h = h
        self.d = int(L.pspace_layout_dim(h))
        self.layers = [L.pspace_layout_layer(h, i).contents
                       for i in range(L.pspace_layout_nlayers(h))]

    def close(self):
        if self.h is not None:
            L.pspace_layout_free(self.h)
            self.h = None


class _Batches:
    """Walks the user's batches by example range: buffers the current batch,
    restarts (a new pass) by calling the factory again."""

    def __init__(self, batches, count, normalize, what):
        self.what, self.count, self.normalize = what, count, normalize
        if callable(batches):
            self.factory = batches
        elif isinstance(batches, collections.abc.Sequence):
            self.factory = lambda: iter(batches)
        else:
            self.factory = None
            self.it = iter(batches)
        self.passes = 0
        self._restart(first=True)

    def _restart(self, first=False):
        if not first:
            if self.factory is None:
                raise Error("%s: the build reads its input more than once, but batches is a "
                            "plain iterator that was already consumed: pass a callable that "
                            "returns a fresh iterable of the same batches" % self.what)
            self.it = iter(self.factory())
        elif self.factory is not None:
            self.it = iter(self.factory())
        self.passes += 1
        self.cur, self.start, self.end = None, 0, 0
        self._next()

    def _next(self):
        try:
            raw = next(self.it)
        except StopIteration:
            raise Error("%s: the batches ended after %d examples, but the build needs more "
                        "(pass %d; the batches must give the same examples on every pass)"
                        % (self.what, self.end, self.passes)) from None
        self.cur = self.normalize(raw, self.end)
        self.start, self.end = self.end, self.end + self.count(self.cur)

    def pieces(self, x0, nx):
        """Yields (batch, lo, hi, at): rows [lo, hi) of batch are examples
        [x0 + at, x0 + at + hi - lo)."""
        if x0 < self.start:
            self._restart()
        while x0 >= self.end:
            self._next()
        x, stop = x0, x0 + nx
        while x < stop:
            while x >= self.end:
                self._next()
            hi = min(stop, self.end)
            yield self.cur, x - self.start, hi - self.start, x - x0
            x = hi


def _count_examples(batches, count, what):
    if callable(batches):
        it = batches()
    elif isinstance(batches, collections.abc.Sequence):
        it = batches
    else:
        raise Error("%s: pass examples=N with a plain iterator of batches (or a list, or a "
                    "callable returning a fresh iterable)" % what)
    return sum(count(b) for b in it)


def _opts(kind, precision, mem, threads, tile, batch, progress, pending, resume):
    o = _lib.BuildOpts()
    L.pspace_build_opts_default(ctypes.byref(o))
    mixed = None
    if kind.startswith("mixed:"):
        mixed = kind[6:].encode()
        kind = "mixed"
    if kind not in _lib.KINDS:
        raise Error("kind must be dense, blockdiag, diag, quasidiag, lowrank, kfac, ekfac or "
                    "mixed:SPEC, not %r" % kind)
    o.kind, o.mixed = _lib.KINDS[kind], mixed
    o.write = write_opts(precision, tile)
    o.exec = make_exec(threads, mem)
    o.batch = int(batch or 0)
    o.resume = int(bool(resume))
    keep = [mixed]
    if progress is not None and progress is not False:
        if not callable(progress):
            raise Error("progress must be a callable(stage, done, total), not %r" % (progress,))

        def cb(_ud, stage, done, total):
            if pending:
                return
            try:
                progress(stage.decode() if stage else "", done, total)
            except BaseException as e:  # back to the caller after the C call
                pending.append(e)
        o.progress = _lib.PROGRESS(cb)
        keep.append(o.progress)
    return o, keep


def _run(store, name, layout, build, make_source, kind, precision, mem, threads, tile, batch,
         progress, resume):
    lay = Layout(layout)
    pending = []
    try:
        o, keep = _opts(kind, precision, mem, threads, tile, batch, progress, pending, resume)
        src, keep_src = make_source(lay, pending)
        rc = build(store._handle(), name.encode(), lay.h, ctypes.byref(src), ctypes.byref(o))
        try:
            check(rc, pending)
        except Error as e:
            if store.path not in str(e) and e.code:
                e.args = ("store %s: %s" % (store.path, e.args[0]),)
            raise
        del keep, keep_src
    finally:
        lay.close()
    return store[name]


def _callback(pending, fill):
    # A pspace Error is bad input (its code: the build removes its matrix);
    # any other exception, the loader's, is an interruption (I/O: resumable).
    def read(ud, x0, nx, *out):
        if pending:
            return IOError_.code
        try:
            fill(x0, nx, *out)
            return 0
        except BaseException as e:
            pending.append(e)
            return e.code if isinstance(e, Error) and e.code < 0 else IOError_.code
    return read


def build_jacobian(store, name, layout, batches, kind="dense", precision=None, mem=None,
                   threads=None, tile=None, batch=None, examples=None, progress=None,
                   resume=False):
    """Builds matrix `name` of `kind` in `store` from Jacobian rows.

    batches: an iterable, or a callable returning a fresh iterable (for
    builds that read the input more than once: out-of-core Dense and
    BlockDiag), of (K, nx, d) arrays ((nx, d) for K = 1); float32 or
    float64. layout: layout text or a path. examples: n, counted from the
    batches (one extra pass) when not given. precision: f64, f32 (default),
    bf16, f16; mem: the memory budget ("1G"); threads (default: all cores);
    progress(stage, done, total); batch: examples per read (default auto).
    A build that fails on its input (a pspace.Error such as a batch of the
    wrong shape or a non-finite value) leaves nothing, as `pspace build`
    does; one interrupted (an I/O error, or another exception raised by the
    batches or by progress, which comes back to the caller) leaves the
    matrix incomplete: resume=True finishes an interrupted Dense/BlockDiag
    build, store.remove(name) drops it. Returns the Matrix."""
    what = "build %s" % name

    def normalize(raw, at):
        a = np.asarray(raw)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.dtype.kind != "f":
            raise DimensionError("%s: a batch of Jacobian rows must be a float (K, nx, d) "
                                 "array, not %s %s (examples from %d)"
                                 % (what, a.dtype, a.shape, at))
        return a

    def count(a):
        return np.shape(a)[-2]

    def make(lay, pending):
        bs = _Batches(batches, count, normalize, what)
        K, d = bs.cur.shape[0], lay.d
        n = examples if examples is not None else _count_examples(batches, count, what)

        def fill(x0, nx, out, ld):
            view = np.ctypeslib.as_array(out, shape=(K * nx * ld,)).reshape(K, nx, ld)
            for a, lo, hi, at in bs.pieces(x0, nx):
                if a.shape[0] != K or a.shape[2] != d:
                    raise DimensionError("%s: a batch of shape %s, expected (%d, nx, %d) "
                                         "(K of the first batch, d of the layout)"
                                         % (what, a.shape, K, d))
                view[:, at:at + hi - lo, :d] = a[:, lo:hi, :]

        fn = _lib.JAC_READ(_callback(pending, fill))
        return _lib.JacSource(int(n), int(K), int(d), fn, None), (bs, fn)

    return _run(store, name, layout, L.pspace_build_jacobian, make, kind, precision, mem,
                threads, tile, batch, progress, resume)


def _layer_dims(Ly):
    """(name, embedding?, in, out) of a layer with layer tensors, else
    (name, None, size, 0): a layer whose batches are Jacobian rows."""
    s = list(Ly.shape)[:Ly.ndim]
    if Ly.kind == _lib.LAYER_EMBEDDING and not Ly.bias:
        return Ly.name.decode(), True, int(s[0]), int(s[1])
    if Ly.kind in (_lib.LAYER_LINEAR, _lib.LAYER_CONV1D, _lib.LAYER_CONV2D):
        return Ly.name.decode(), False, int(np.prod(s[1:])), int(s[0])
    return Ly.name.decode(), None, int(Ly.size), 0


def _tensors(what, lname, emb, fin, fout, acts, grads):
    """The (acts (nx, T, in) or ids (nx, T), grads (K, nx, T, out)) of one layer, checked."""
    acts, grads = np.asarray(acts), np.asarray(grads)
    if emb:
        if acts.dtype.kind not in "iu":
            raise DimensionError("%s: layer %s: embedding ids must be integers, not %s"
                                 % (what, lname, acts.dtype))
        a = acts.astype(np.int64, copy=False)
        a = a[:, None] if a.ndim == 1 else a
        ok = a.ndim == 2
        if ok and a.size and (a.min() < 0 or a.max() >= fin):
            raise DimensionError("%s: layer %s: an embedding id outside 0..%d"
                                 % (what, lname, fin - 1))
    else:
        a = acts[:, None, :] if acts.ndim == 2 else acts
        ok = a.ndim == 3 and a.shape[2] == fin and a.dtype.kind == "f"
    g = grads[:, :, None, :] if grads.ndim == 3 else grads
    ok = ok and g.ndim == 4 and g.dtype.kind == "f" and g.shape[3] == fout
    ok = ok and g.shape[1:3] == a.shape[:2]
    if not ok:
        raise DimensionError(
            "%s: layer %s: acts %s %s and grads %s %s do not fit the layout (%s (nx, %s) "
            "or (nx, T, %s), grads (K, nx, %d) or (K, nx, T, %d))"
            % (what, lname, acts.dtype, acts.shape, grads.dtype, grads.shape,
               "ids" if emb else "acts", "" if emb else fin, "" if emb else fin, fout, fout))
    return a, g


def _sizes(b):
    """(nx, K) of a normalized batch of layer tensors."""
    v = next(iter(b.values()))
    return (v.shape[1], v.shape[0]) if isinstance(v, np.ndarray) else (v[0].shape[0],
                                                                       v[1].shape[0])


def build_layers(store, name, layout, batches, kind="kfac", precision=None, mem=None,
                 threads=None, tile=None, batch=None, examples=None, progress=None,
                 variant_outputs=None, resume=False):
    """Builds matrix `name` of `kind` in `store` from layer tensors (README,
    "Layer tensors"). batches: an iterable, or a callable returning a fresh
    iterable (EKFAC and out-of-core builds read the input twice or more),
    of dicts {layer: (acts, grads)} for every linear, conv and embedding
    layer of the layout: acts (nx, in) or (nx, T, in_patch) floats, or
    embedding ids int (nx,) or (nx, T); grads (K, nx, out) or
    (K, nx, T, out). A layer without layer tensors (norm, generic) gives
    its Jacobian rows instead, {layer: rows} with rows (K, nx, size) (its
    per-example gradients): every kind but KFAC and EKFAC takes them, and
    a mixed:SPEC gives such layers any part but kfac/ekfac.
    variant_outputs: K, checked against the batches. Other options as
    build_jacobian. Returns the Matrix."""
    what = "build %s" % name
    lay_box = {}

    def normalize(raw, at):
        if not isinstance(raw, collections.abc.Mapping):
            raise Error("%s: a batch of layer tensors must be a dict {layer: (acts, grads)}, "
                        "not %s" % (what, type(raw).__name__))
        out, nb, K = {}, None, None
        for lname, emb, fin, fout in lay_box["dims"]:
            if lname not in raw:
                raise Error("%s: the batch of examples from %d has no %s for layer '%s'"
                            % (what, at, "tensors" if emb is not None else "Jacobian rows",
                               lname))
            if emb is None:
                r = np.asarray(raw[lname])
                r = r[None] if r.ndim == 2 else r
                if r.ndim != 3 or r.dtype.kind != "f" or r.shape[2] != fin:
                    raise DimensionError("%s: layer %s has no layer tensors: its batch must be "
                                         "its Jacobian rows, a float (K, nx, %d) array, not "
                                         "%s %s" % (what, lname, fin, r.dtype, r.shape))
                out[lname] = r
                x, k = r.shape[1], r.shape[0]
            else:
                out[lname] = a, g = _tensors(what, lname, emb, fin, fout, *raw[lname])
                x, k = a.shape[0], g.shape[0]
            if nb is None:
                nb, K = x, k
            if x != nb or k != K:
                raise DimensionError("%s: layer %s: %d examples x %d outputs where another "
                                     "layer of the batch has %d x %d"
                                     % (what, lname, x, k, nb, K))
        return out

    def count(b):
        v = next(iter(b.values()))
        return np.shape(v[0])[0] if isinstance(v, (tuple, list)) else np.shape(v)[-2]

    def make(lay, pending):
        dims = [_layer_dims(Ly) for Ly in lay.layers]
        lay_box["dims"] = dims
        bs = _Batches(batches, count, normalize, what)
        K = _sizes(bs.cur)[1]
        if variant_outputs is not None and variant_outputs != K:
            raise DimensionError("%s: the batches have K = %d outputs, not %d"
                                 % (what, K, variant_outputs))
        n = examples if examples is not None else _count_examples(batches, count, what)
        held = []

        def join(arrs, axis, dtype):
            return np.ascontiguousarray(np.concatenate(arrs, axis=axis) if len(arrs) > 1
                                        else arrs[0], dtype=dtype)

        def fill(x0, nx, out):
            del held[:]
            parts = list(bs.pieces(x0, nx))
            for b, _lo, _hi, at in parts:
                if _sizes(b)[1] != K:
                    raise DimensionError("%s: the batch of examples from %d has K = %d outputs "
                                         "where the first had %d"
                                         % (what, x0 + at, _sizes(b)[1], K))
            for i, (lname, emb, _fin, _fout) in enumerate(dims):
                if emb is None:
                    r = join([b[lname][:, lo:hi] for b, lo, hi, _at in parts], 1, np.float64)
                    held.append(r)
                    out[i] = _lib.LayerBatch(0, None, None, None,
                                             r.ctypes.data_as(_lib.P_double))
                    continue
                T = parts[0][0][lname][0].shape[1]
                for b, _lo, _hi, _at in parts:
                    if b[lname][0].shape[1] != T:
                        raise DimensionError("%s: layer %s: T = %d where an earlier batch had "
                                             "T = %d" % (what, lname, b[lname][0].shape[1], T))
                a = join([b[lname][0][lo:hi] for b, lo, hi, _at in parts], 0,
                         np.int64 if emb else np.float64)
                g = join([b[lname][1][:, lo:hi] for b, lo, hi, _at in parts], 1, np.float64)
                held.extend((a, g))
                out[i] = _lib.LayerBatch(
                    T, None if emb else a.ctypes.data_as(_lib.P_double),
                    a.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)) if emb else None,
                    g.ctypes.data_as(_lib.P_double), None)

        fn = _lib.LAYER_READ(_callback(pending, fill))
        return _lib.LayerSource(int(n), int(K), fn, None), (bs, fn, held)

    return _run(store, name, layout, L.pspace_build_layers, make, kind, precision, mem,
                threads, tile, batch, progress, resume)
