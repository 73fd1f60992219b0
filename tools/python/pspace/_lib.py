"""ctypes bindings of libpspace's public C API (include/pspace/*.h, version 0.2).

Finds the library through $PSPACE_LIB, else the Release build tree of the
repository this package lives in (build/libpspace.so), else the installed
library (the directory cmake --install recorded, then the loader's path).
Declares only the calls the package uses.
"""

import ctypes
import ctypes.util
import os

c_int, c_uint32, c_uint64, c_size_t, c_double = (ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64,
                                                  ctypes.c_size_t, ctypes.c_double)
c_char_p, c_void_p, c_int64 = ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64
P_double = ctypes.POINTER(c_double)

NAME_MAX = 255
LAYER_NAME_MAX = 63

KINDS = {"dense": 1, "blockdiag": 2, "diag": 3, "quasidiag": 4, "kfac": 5, "ekfac": 6,
         "lowrank": 7, "identity": 8, "mixed": 9, "implicit": 10}
DTYPES = {"f64": 1, "f32": 2, "bf16": 3, "f16": 4}
LAYER_LINEAR, LAYER_CONV1D, LAYER_CONV2D, LAYER_EMBEDDING = 1, 2, 3, 4


API_VERSION = "0.4"


def _candidates():
    env = os.environ.get("PSPACE_LIB")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(os.path.dirname(here)))  # tools/python/pspace -> repo
    out = []
    if os.path.isfile(os.path.join(root, "CMakeLists.txt")):
        out.append(os.path.join(root, "build", "libpspace.so"))
    try:  # written by cmake --install
        from ._installed import LIBDIR
        out.append(os.path.join(LIBDIR, "libpspace.so.0.3"))
    except ImportError:
        pass
    found = ctypes.util.find_library("pspace")
    out += ["libpspace.so.0.3"] + ([found] if found else [])
    return out


def _load():
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            cand = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
            continue
        # The bindings below follow one ABI; 0.x changes it at every minor version.
        cand.pspace_version.restype = ctypes.c_char_p
        version = cand.pspace_version().decode()
        if version.split(".")[:2] != API_VERSION.split("."):
            tried.append("%s (version %s, these bindings need %s)" % (path, version, API_VERSION))
            continue
        return cand
    raise ImportError("pspace: cannot load libpspace: tried " + "; ".join(tried) +
                      ". Build it (cmake --build build) or set PSPACE_LIB")


lib = _load()


class Exec(ctypes.Structure):
    _fields_ = [("threads", c_int), ("mem_budget", c_size_t)]


class StoreOpts(ctypes.Structure):
    _fields_ = [("readonly", c_int), ("create", c_int), ("map_max", c_size_t),
                ("max_readers", ctypes.c_uint), ("nosync", c_int)]


class CodecOpts(ctypes.Structure):
    _fields_ = [("dtype", c_int), ("level", c_int), ("shuffle", c_int), ("min_ratio", c_double)]


class WriteOpts(ctypes.Structure):
    _fields_ = [("codec", CodecOpts), ("tile", c_uint32)]


PROGRESS = ctypes.CFUNCTYPE(None, c_void_p, c_char_p, c_uint64, c_uint64)


class BuildOpts(ctypes.Structure):
    _fields_ = [("kind", c_int), ("mixed", c_char_p), ("write", WriteOpts), ("exec", Exec),
                ("batch", c_uint64), ("resume", c_int), ("progress", PROGRESS),
                ("progress_ud", c_void_p), ("shard_rank", c_uint32), ("shard_count", c_uint32)]


class MatrixInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * (NAME_MAX + 1)), ("id", c_uint64), ("kind", c_int),
                ("state", c_int), ("d", c_uint64), ("nblocks", c_uint32), ("tile", c_uint32),
                ("symmetric", c_int), ("codec", CodecOpts), ("layout_id", c_uint64),
                ("created", c_uint64), ("completed", c_uint64), ("tiles", c_uint64),
                ("raw_tiles", c_uint64), ("tile_bytes", c_uint64), ("logical_bytes", c_uint64),
                ("arrays", c_uint64), ("array_bytes", c_uint64), ("has_digest", c_int),
                ("tile_digest", c_uint32)]


class Layer(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * (LAYER_NAME_MAX + 1)), ("kind", c_int), ("ndim", c_int),
                ("shape", c_uint64 * 4), ("bias", c_int), ("offset", c_uint64),
                ("weight_size", c_uint64), ("bias_size", c_uint64), ("size", c_uint64)]


class SolveOpts(ctypes.Structure):
    _fields_ = [("method", c_int), ("tol", c_double), ("max_iter", c_uint32),
                ("precond", c_void_p), ("iterations", c_uint32), ("residual", c_double)]


class TraceOpts(ctypes.Structure):
    _fields_ = [("probes", c_uint32), ("seed", c_uint64), ("exact", c_int),
                ("stderr_", c_double)]


class EstOpts(ctypes.Structure):
    _fields_ = [("probes", c_uint32), ("steps", c_uint32), ("seed", c_uint64), ("tol", c_double),
                ("exact", c_int), ("stderr_", c_double)]


class SampleOpts(ctypes.Structure):
    _fields_ = [("seed", c_uint64), ("cov", c_int)]


class EigOpts(ctypes.Structure):
    _fields_ = [("max_iter", c_uint32), ("tol", c_double), ("seed", c_uint64),
                ("iterations", c_uint32)]


JAC_READ = ctypes.CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64, P_double, c_size_t)


class JacSource(ctypes.Structure):
    _fields_ = [("examples", c_uint64), ("outputs", c_uint32), ("d", c_uint64),
                ("read", JAC_READ), ("ud", c_void_p)]


class LayerBatch(ctypes.Structure):
    _fields_ = [("T", c_uint64), ("acts", P_double), ("ids", ctypes.POINTER(c_int64)),
                ("grads", P_double), ("rows", P_double)]


LAYER_READ = ctypes.CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64, ctypes.POINTER(LayerBatch))


class LayerSource(ctypes.Structure):
    _fields_ = [("examples", c_uint64), ("outputs", c_uint32), ("read", LAYER_READ),
                ("ud", c_void_p)]


FOREACH = ctypes.CFUNCTYPE(c_int, ctypes.POINTER(MatrixInfo), c_void_p)

pp = ctypes.POINTER(c_void_p)
_PROTOS = {
    "pspace_strerror": (c_char_p, [c_int]),
    "pspace_errdetail": (c_char_p, []),
    "pspace_errclear": (None, []),
    "pspace_version": (c_char_p, []),
    "pspace_store_opts_default": (None, [ctypes.POINTER(StoreOpts)]),
    "pspace_store_open": (c_int, [pp, c_char_p, ctypes.POINTER(StoreOpts)]),
    "pspace_store_close": (None, [c_void_p]),
    "pspace_store_foreach": (c_int, [c_void_p, FOREACH, c_void_p]),
    "pspace_store_remove": (c_int, [c_void_p, c_char_p]),
    "pspace_store_tiles_read": (c_uint64, [c_void_p]),
    "pspace_matrix_info_get": (c_int, [ctypes.POINTER(MatrixInfo), c_void_p, c_char_p]),
    "pspace_mat_open": (c_int, [pp, c_void_p, c_char_p]),
    "pspace_mat_free": (None, [c_void_p]),
    "pspace_mat_kind": (c_int, [c_void_p]),
    "pspace_mat_dim": (c_uint64, [c_void_p]),
    "pspace_kind_name": (c_char_p, [c_int]),
    "pspace_write_opts_default": (None, [ctypes.POINTER(WriteOpts)]),
    "pspace_dense_write": (c_int, [c_void_p, c_char_p, c_void_p, c_uint64, P_double, c_size_t,
                                   ctypes.POINTER(WriteOpts)]),
    "pspace_layout_parse": (c_int, [pp, c_char_p, c_char_p]),
    "pspace_layout_load": (c_int, [pp, c_char_p]),
    "pspace_layout_free": (None, [c_void_p]),
    "pspace_layout_dim": (c_uint64, [c_void_p]),
    "pspace_layout_nlayers": (c_size_t, [c_void_p]),
    "pspace_layout_layer": (ctypes.POINTER(Layer), [c_void_p, c_size_t]),
    "pspace_op_mat": (c_int, [pp, c_void_p]),
    "pspace_op_identity": (c_int, [pp, c_uint64, c_double]),
    "pspace_op_scale": (c_int, [pp, c_double, c_void_p]),
    "pspace_op_add": (c_int, [pp, c_void_p, c_void_p]),
    "pspace_op_sub": (c_int, [pp, c_void_p, c_void_p]),
    "pspace_op_product": (c_int, [pp, c_void_p, c_void_p]),
    "pspace_op_inverse": (c_int, [pp, c_void_p, c_double, ctypes.POINTER(SolveOpts)]),
    "pspace_op_free": (None, [c_void_p]),
    "pspace_op_dim": (c_uint64, [c_void_p]),
    "pspace_op_describe": (c_int, [c_void_p, ctypes.c_char_p, c_size_t]),
    "pspace_op_mm": (c_int, [c_void_p, ctypes.POINTER(Exec), c_uint32, c_double, P_double,
                             c_size_t, c_double, P_double, c_size_t]),
    "pspace_op_mv": (c_int, [c_void_p, ctypes.POINTER(Exec), P_double, P_double]),
    "pspace_op_vtmv": (c_int, [c_void_p, ctypes.POINTER(Exec), P_double, P_double]),
    "pspace_op_trace": (c_int, [c_void_p, ctypes.POINTER(Exec), ctypes.POINTER(TraceOpts),
                                P_double]),
    "pspace_op_diag": (c_int, [c_void_p, ctypes.POINTER(Exec), P_double]),
    "pspace_op_norm": (c_int, [c_void_p, ctypes.POINTER(Exec), c_int, ctypes.POINTER(EigOpts),
                               P_double]),
    "pspace_op_eig": (c_int, [c_void_p, ctypes.POINTER(Exec), c_uint32, ctypes.POINTER(EigOpts),
                              P_double, P_double, c_size_t]),
    "pspace_solve_opts_default": (None, [ctypes.POINTER(SolveOpts)]),
    "pspace_op_solve": (c_int, [c_void_p, ctypes.POINTER(Exec), c_double, c_uint32, P_double,
                                c_size_t, ctypes.POINTER(SolveOpts), P_double, c_size_t]),
    "pspace_op_dense": (c_int, [c_void_p, ctypes.POINTER(Exec), P_double, c_size_t]),
    "pspace_op_logdet": (c_int, [P_double, c_void_p, ctypes.POINTER(Exec), c_double,
                                 ctypes.POINTER(EstOpts)]),
    "pspace_op_diaginv": (c_int, [P_double, P_double, c_void_p, ctypes.POINTER(Exec), c_double,
                                  ctypes.POINTER(EstOpts)]),
    "pspace_op_sample": (c_int, [P_double, c_size_t, c_void_p, ctypes.POINTER(Exec), c_double,
                                 c_uint32, ctypes.POINTER(SampleOpts)]),
    "pspace_build_opts_default": (None, [ctypes.POINTER(BuildOpts)]),
    "pspace_build_jacobian": (c_int, [c_void_p, c_char_p, c_void_p, ctypes.POINTER(JacSource),
                                      ctypes.POINTER(BuildOpts)]),
    "pspace_build_layers": (c_int, [c_void_p, c_char_p, c_void_p, ctypes.POINTER(LayerSource),
                                    ctypes.POINTER(BuildOpts)]),
}
for _name, (_res, _args) in _PROTOS.items():
    _f = getattr(lib, _name)
    _f.restype, _f.argtypes = _res, _args
