"""Store, Operator (Matrix, Expression) and the identity I.

Every product, solve and decomposition runs in libpspace (pspace_op_*); this
module only checks shapes, moves numpy arrays in and out and keeps handles
alive in the right order.
"""

import ctypes
import numbers
import os
import weakref

import numpy as np

from . import _lib
from ._errors import DimensionError, Error, check

L = _lib.lib
NORM_ORDS = {"fro": 0, 2: 2, -2: -2}
METHODS = {"auto": 0, "direct": 1, "cg": 2}


def parse_mem(mem):
    """Bytes of a size: an int, or text like "512M", "4G" (binary units)."""
    if mem is None:
        return 0
    if isinstance(mem, numbers.Integral):
        return int(mem)
    s = str(mem).strip()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    mult = units.get(s[-1:].upper(), 1)
    try:
        v = float(s[:-1] if mult > 1 else s)
    except ValueError:
        raise Error("mem must be bytes or a size like 512M or 4G, not %r" % (mem,)) from None
    return int(v * mult)


def make_exec(threads=None, mem=None):
    return _lib.Exec(int(threads or 0), parse_mem(mem))


def _ptr(a):
    return a.ctypes.data_as(_lib.P_double)


class Store:
    """A pspace store (an LMDB directory of named matrices), opened, or
    created if missing. A mapping of names to matrices, nothing read until
    asked (store["F"]); a context manager; close() frees everything opened
    from it. threads and mem set the evaluations' execution settings."""

    def __init__(self, path, readonly=False, create=True, threads=None, mem=None):
        self.path = os.fspath(path)
        self.exec = make_exec(threads, mem)
        self._handles = weakref.WeakSet()
        opts = _lib.StoreOpts()
        L.pspace_store_opts_default(ctypes.byref(opts))
        opts.readonly, opts.create = int(bool(readonly)), int(bool(create and not readonly))
        h = ctypes.c_void_p()
        check(L.pspace_store_open(ctypes.byref(h), self.path.encode(), ctypes.byref(opts)))
        self._h = h

    def _handle(self):
        if self._h is None:
            raise Error("store %s is closed" % self.path)
        return self._h

    def close(self):
        """Frees the matrices and expressions opened from the store, then
        closes it. Using them afterwards raises pspace.Error."""
        if getattr(self, "_h", None) is None:
            return
        for obj in list(self._handles):
            obj._release()
        L.pspace_store_close(self._h)
        self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass

    def names(self):
        """The names of the matrices in the store, in name order."""
        out = []

        def fn(info, _ud):
            out.append(info.contents.name.decode())
            return 0

        check(L.pspace_store_foreach(self._handle(), _lib.FOREACH(fn), None))
        return out

    def __iter__(self):
        return iter(self.names())

    def __len__(self):
        return len(self.names())

    def __contains__(self, name):
        info = _lib.MatrixInfo()
        return L.pspace_matrix_info_get(ctypes.byref(info), self._handle(), name.encode()) == 0

    def __getitem__(self, name):
        return Matrix(self, name)

    @property
    def tiles_read(self):
        """Tiles decoded through this store since it was opened: how many
        passes an evaluation made (pspace_store_tiles_read)."""
        return int(L.pspace_store_tiles_read(self._handle()))

    def remove(self, name):
        """Removes matrix `name` with its tiles and arrays."""
        check(L.pspace_store_remove(self._handle(), name.encode()))

    __delitem__ = remove

    def write_dense(self, name, F, precision="f32", tile=None):
        """Writes the d x d array F (upper triangle read) as Dense matrix
        `name` (pspace_dense_write); returns it."""
        F = np.ascontiguousarray(F, dtype=np.float64)
        if F.ndim != 2 or F.shape[0] != F.shape[1]:
            raise DimensionError("write_dense: %s needs a square array, not shape %s"
                                 % (name, F.shape))
        wo = write_opts(precision, tile)
        check(L.pspace_dense_write(self._handle(), name.encode(), None, F.shape[0], _ptr(F),
                                   F.shape[0], ctypes.byref(wo)))
        return self[name]

    def build_jacobian(self, name, layout, batches, **kw):
        """Builds matrix `name` from Jacobian rows: batches is an iterable
        (or a callable returning a fresh one) of (K, nx, d) arrays. See
        pspace._build.build_jacobian for the options."""
        from . import _build
        return _build.build_jacobian(self, name, layout, batches, **kw)

    def build_layers(self, name, layout, batches, **kw):
        """Builds matrix `name` from layer tensors: batches is an iterable
        (or a callable returning a fresh one) of {layer: (acts, grads)}."""
        from . import _build
        return _build.build_layers(self, name, layout, batches, **kw)

    def __repr__(self):
        return "<pspace.Store %r%s>" % (self.path, "" if self._h is not None else " (closed)")


def write_opts(precision, tile):
    wo = _lib.WriteOpts()
    L.pspace_write_opts_default(ctypes.byref(wo))
    if precision is not None:
        if precision not in _lib.DTYPES:
            raise Error("precision must be one of %s, not %r" % (", ".join(_lib.DTYPES),
                                                                 precision))
        wo.codec.dtype = _lib.DTYPES[precision]
    if tile:
        wo.tile = int(tile)
    return wo


class _Identity:
    """s * I of the dimension of what it is combined with (pspace.I)."""

    def __init__(self, s=1.0):
        self.s = float(s)

    def __mul__(self, s):
        if isinstance(s, numbers.Real):
            return _Identity(self.s * s)
        return NotImplemented

    __rmul__ = __mul__

    def __neg__(self):
        return _Identity(-self.s)

    def __add__(self, other):
        if isinstance(other, Operator):
            return other + self
        return NotImplemented

    def __sub__(self, other):
        if isinstance(other, Operator):
            return (-other) + self
        return NotImplemented

    def __repr__(self):
        return "%g*I" % self.s


I = _Identity()


class Operator:
    """A lazy d x d operator over stored matrices (a pspace_op): float64
    numpy in and out, shapes checked, as scipy's LinearOperator. Nothing is
    read until a result is asked for; each result runs in libpspace."""

    dtype = np.dtype(np.float64)
    ndim = 2
    _op = None
    __array_ufunc__ = None  # numpy defers to our reflected operators (v @ A, 2.0 * A)

    def __init__(self, stores, op):
        self._stores = stores
        self._op = op
        for s in stores:
            s._handles.add(self)
        self.d = int(L.pspace_op_dim(op))

    @property
    def shape(self):
        return (self.d, self.d)

    def _release(self):
        if self._op is not None:
            L.pspace_op_free(self._op)
            self._op = None

    def __del__(self):
        try:
            self._release()
        except Exception:  # interpreter shutdown
            pass

    def _handle(self):
        if self._op is None:
            raise Error("the store of %r is closed" % (self,))
        return self._op

    @property
    def _exec(self):
        return ctypes.byref(self._stores[0].exec)

    # ---- building expressions -------------------------------------------
    def _new(self, fn, *args, stores=None):
        out = ctypes.c_void_p()
        check(fn(ctypes.byref(out), *args))
        return Expression(stores or self._stores, out)

    def _lift(self, other):
        if isinstance(other, _Identity):
            return self._new(L.pspace_op_identity, self.d, other.s, stores=self._stores)
        if isinstance(other, Operator):
            return other
        return None

    def _both(self, other):
        return self._stores + tuple(s for s in other._stores if s not in self._stores)

    def __add__(self, other):
        o = self._lift(other)
        if o is None:
            return NotImplemented
        return self._new(L.pspace_op_add, self._handle(), o._handle(), stores=self._both(o))

    def __radd__(self, other):
        o = self._lift(other)
        if o is None:
            return NotImplemented
        return o.__add__(self)

    def __sub__(self, other):
        o = self._lift(other)
        if o is None:
            return NotImplemented
        return self._new(L.pspace_op_sub, self._handle(), o._handle(), stores=self._both(o))

    def __rsub__(self, other):
        o = self._lift(other)
        if o is None:
            return NotImplemented
        return o.__sub__(self)

    def __mul__(self, s):
        if isinstance(s, numbers.Real):
            return self._new(L.pspace_op_scale, float(s), self._handle())
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, s):
        if isinstance(s, numbers.Real):
            return self * (1.0 / s)
        return NotImplemented

    def __neg__(self):
        return self * -1.0

    def __pos__(self):
        return self

    def __matmul__(self, other):
        if isinstance(other, Operator):
            return self._new(L.pspace_op_product, self._handle(), other._handle(),
                             stores=self._both(other))
        a = np.asarray(other)
        return self.mv(a) if a.ndim == 1 else self.mm(a)

    def __rmatmul__(self, other):
        a = np.asarray(other)  # symmetric: x^T A = (A x)^T
        return self.mv(a) if a.ndim == 1 else self.mm(a.T).T

    def inv(self, damping=0.0, method="auto", tol=None, max_iter=None):
        """(A + damping I)^-1 as a lazy operator (pspace_op_inverse)."""
        so = _solve_opts(method, tol, max_iter, None)
        return self._new(L.pspace_op_inverse, self._handle(), float(damping), ctypes.byref(so))

    def describe(self):
        """The folded expression, as `pspace eval` prints it."""
        n = L.pspace_op_describe(self._handle(), None, 0)
        buf = ctypes.create_string_buffer(n + 1)
        L.pspace_op_describe(self._handle(), buf, n + 1)
        return buf.value.decode()

    def __repr__(self):
        if self._op is None:
            return "<pspace.%s (closed)>" % type(self).__name__
        return "<pspace.%s %s, d = %d>" % (type(self).__name__, self.describe(), self.d)

    # ---- evaluating -------------------------------------------------------
    def _vec(self, v, what):
        a = np.ascontiguousarray(v, dtype=np.float64)
        if a.shape != (self.d,):
            raise DimensionError("%s: %s needs a vector of shape (%d,), not %s"
                                 % (self.describe(), what, self.d, a.shape))
        return a

    def _cols(self, X, what):
        a = np.asarray(X, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] != self.d:
            raise DimensionError("%s: %s needs an array of shape (%d, k), not %s"
                                 % (self.describe(), what, self.d, a.shape))
        return np.ascontiguousarray(a.T)  # (k, d) row-major, as the C API takes it

    def mv(self, v):
        """A v: (d,) -> float64 (d,)."""
        x = self._vec(v, "mv")
        y = np.empty(self.d)
        check(L.pspace_op_mv(self._handle(), self._exec, _ptr(x), _ptr(y)))
        return y

    matvec = mv

    def mm(self, X):
        """A X: (d, k) -> float64 (d, k), one pass over the stored tiles."""
        Xt = self._cols(X, "mm")
        k = Xt.shape[0]
        Yt = np.empty((k, self.d))
        if k:
            check(L.pspace_op_mm(self._handle(), self._exec, k, 1.0, _ptr(Xt), self.d, 0.0,
                                 _ptr(Yt), self.d))
        return Yt.T

    matmat = mm

    def vtmv(self, v):
        """v^T A v as a float."""
        x = self._vec(v, "vtmv")
        out = ctypes.c_double()
        check(L.pspace_op_vtmv(self._handle(), self._exec, _ptr(x), ctypes.byref(out)))
        return out.value

    def trace(self, probes=None, seed=None):
        """trace(A): exact for linear combinations, else a Hutchinson
        estimate with `probes` Rademacher probes (default 64)."""
        to = _lib.TraceOpts(64, 1, 0, 0.0)
        if probes:
            to.probes = int(probes)
        if seed is not None:
            to.seed = int(seed)
        out = ctypes.c_double()
        check(L.pspace_op_trace(self._handle(), self._exec, ctypes.byref(to), ctypes.byref(out)))
        self.trace_exact, self.trace_stderr = bool(to.exact), to.stderr_
        return out.value

    def diag(self):
        """diag(A) as float64 (d,)."""
        y = np.empty(self.d)
        check(L.pspace_op_diag(self._handle(), self._exec, _ptr(y)))
        return y

    def norm(self, ord="fro"):
        """||A||: "fro" (Frobenius), 2 (largest singular value), -2
        (smallest), as `pspace eval ... norm --ord`."""
        if ord not in NORM_ORDS:
            raise Error("norm: ord must be 'fro', 2 or -2, not %r" % (ord,))
        out = ctypes.c_double()
        check(L.pspace_op_norm(self._handle(), self._exec, NORM_ORDS[ord], None,
                               ctypes.byref(out)))
        return out.value

    def dense(self):
        """A as a float64 (d, d) array: the only call that makes one."""
        y = np.empty((self.d, self.d))
        check(L.pspace_op_dense(self._handle(), self._exec, _ptr(y), self.d))
        return y

    def eig(self, k, vectors=True):
        """The k largest eigenvalues in decreasing order (Lanczos, as
        `pspace eval ... eig`) and, if `vectors`, their eigenvectors as the
        columns of a (d, k) array: returns (w, V) or w."""
        k = int(k)
        if not 0 < k <= self.d:
            raise DimensionError("%s: eig needs 0 < k <= d = %d, not %d"
                                 % (self.describe(), self.d, k))
        w = np.empty(k)
        V = np.empty((k, self.d)) if vectors else None
        check(L.pspace_op_eig(self._handle(), self._exec, k, None, _ptr(w),
                              _ptr(V) if vectors else None, self.d))
        return (w, V.T) if vectors else w

    def solve(self, b, damping=0.0, method="auto", tol=None, max_iter=None, precond=None):
        """(A + damping I)^-1 b for b (d,) or (d, k), as `pspace eval ...
        solve`: direct where A has a direct solve, else CG (method "auto",
        "direct" or "cg"; precond an Operator)."""
        b = np.asarray(b)
        one = b.ndim == 1
        B = self._vec(b, "solve")[None, :] if one else self._cols(b, "solve")
        k = B.shape[0]
        X = np.empty((k, self.d))
        so = _solve_opts(method, tol, max_iter, precond)
        check(L.pspace_op_solve(self._handle(), self._exec, float(damping), k, _ptr(B), self.d,
                                ctypes.byref(so), _ptr(X), self.d))
        self.solve_iterations, self.solve_residual = so.iterations, so.residual
        return X[0] if one else X.T


    def logdet(self, damping=0.0, probes=None, steps=None, seed=1):
        """log det(A + damping I) as a float, as `pspace eval ... logdet`:
        exact where A is one matrix c*M + s*I whose kind has it, else a
        stochastic Lanczos quadrature estimate (`probes` Rademacher probes,
        default 64, of `steps` Lanczos steps); whether it was exact and its
        standard error are left in .logdet_exact and .logdet_stderr."""
        eo = _est_opts(probes, steps, seed)
        out = ctypes.c_double()
        check(L.pspace_op_logdet(ctypes.byref(out), self._handle(), self._exec, float(damping),
                                 ctypes.byref(eo)))
        self.logdet_exact, self.logdet_stderr = bool(eo.exact), eo.stderr_
        return out.value

    def diag_inverse(self, damping=0.0, probes=None, seed=1):
        """diag((A + damping I)^-1) as float64 (d,), as `pspace eval ...
        diaginv`: exact like logdet, else estimated from solves of `probes`
        Rademacher probes; .diag_inverse_exact and .diag_inverse_stderr
        (per entry, zeros when exact) say how."""
        eo = _est_opts(probes, None, seed)
        y, se = np.empty(self.d), np.empty(self.d)
        check(L.pspace_op_diaginv(_ptr(y), _ptr(se), self._handle(), self._exec, float(damping),
                                  ctypes.byref(eo)))
        self.diag_inverse_exact, self.diag_inverse_stderr = bool(eo.exact), se
        return y

    def sample(self, n, damping=0.0, seed=1, cov=False):
        """n exact draws from N(0, (A + damping I)^-1) (cov=True: from
        N(0, A + damping I)) as the rows of a float64 (n, d) array, as
        `pspace eval ... sample`; A must be one matrix c*M + s*I."""
        n = int(n)
        if n < 0 or n >= 2**32:
            raise DimensionError("sample: n must be in [0, 2^32), not %d" % n)
        X = np.empty((n, self.d))
        if n:
            so = _lib.SampleOpts(int(seed), 1 if cov else 0)
            check(L.pspace_op_sample(_ptr(X), self.d, self._handle(), self._exec,
                                     float(damping), n, ctypes.byref(so)))
        return X


def _est_opts(probes, steps, seed):
    return _lib.EstOpts(int(probes or 0), int(steps or 0), int(seed), 0.0, 0, 0.0)


def _solve_opts(method, tol, max_iter, precond):
    so = _lib.SolveOpts()
    L.pspace_solve_opts_default(ctypes.byref(so))
    if method not in METHODS:
        raise Error("solve: method must be 'auto', 'direct' or 'cg', not %r" % (method,))
    so.method = METHODS[method]
    if tol:
        so.tol = float(tol)
    if max_iter:
        so.max_iter = int(max_iter)
    if precond is not None:
        so.precond = precond._handle()
    return so


class Expression(Operator):
    """A lazy expression over matrices (pspace_op), evaluated in one pass
    per result as `pspace eval` does."""


class Matrix(Operator):
    """A stored matrix of any kind: F.name, F.kind, F.d, and every
    operation of Operator."""

    def __init__(self, store, name):
        self.name = name
        self.store = store
        mat = ctypes.c_void_p()
        check(L.pspace_mat_open(ctypes.byref(mat), store._handle(), name.encode()))
        op = ctypes.c_void_p()
        rc = L.pspace_op_mat(ctypes.byref(op), mat)
        L.pspace_mat_free(mat)  # the leaf holds its own reference
        check(rc)
        super().__init__((store,), op)
        info = _lib.MatrixInfo()
        check(L.pspace_matrix_info_get(ctypes.byref(info), store._handle(), name.encode()))
        self.kind = L.pspace_kind_name(info.kind).decode()

    def describe(self):
        return self.name
