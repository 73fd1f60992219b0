#!/usr/bin/python3
"""What a user would write instead of pspace, timed like report_mv does.

    baselines.py mv --method numpy|h5py --file F --d N [--k K] [--reps R]
                    [--warmup W] [--cold] [--h5 FILE]
    baselines.py h5write --file F --d N --out FILE [--chunk E]
    baselines.py info

`mv` multiplies the d x d f32 matrix in F (row-major, no header) by K
vectors, all equal to x_i = ((i * 7919) mod 1000) / 1000 - 0.5, and prints
one JSON line as report_mv does: the median and minimum seconds per pass
and the sum of the first column of the result (the checksum).

- numpy: ``A = numpy.memmap(F, float32, "r", shape=(d, d)); A @ X`` - the
  whole matrix through the OS's mapping, one BLAS call.
- h5py: the same matrix in an HDF5 dataset with E x E chunks (uncompressed),
  read in row panels of E rows into one buffer (read_direct), each multiplied
  with numpy.

Cold passes close the mapping or file, drop the page cache (as root
``sync; echo 3 > /proc/sys/vm/drop_caches``, else posix_fadvise DONTNEED on
the file) and reopen, untimed. Passes stop repeating after --max-seconds
once one is timed. Threads: whatever the BLAS numpy loaded uses
(the driver sets BLIS_NUM_THREADS / OMP_NUM_THREADS).
"""
import argparse
import json
import os
import statistics
import sys
import time


def drop_cache(path):
    if os.geteuid() == 0:
        try:
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            return "drop_caches"
        except OSError:
            pass
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return "fadvise"


def vectors(np, d, k):
    x = ((np.arange(d, dtype=np.int64) * 7919) % 1000) / 1000.0 - 0.5
    x = x.astype(np.float32)
    return x if k == 1 else np.repeat(x[:, None], k, axis=1)


class NumpyMv:
    def __init__(self, np, a):
        self.np, self.a, self.path, self.A = np, a, a.file, None

    def open(self):
        self.A = self.np.memmap(self.path, dtype=self.np.float32, mode="r",
                                shape=(self.a.d, self.a.d))

    def close(self):
        if self.A is not None:
            self.A._mmap.close()
        self.A = None

    def run(self, X):
        return self.A @ X


class H5Mv:
    def __init__(self, np, a):
        import h5py

        self.np, self.h5py, self.a, self.path, self.f = np, h5py, a, a.h5, None

    def open(self):
        self.f = self.h5py.File(self.path, "r")
        self.ds = self.f["A"]

    def close(self):
        if self.f is not None:
            self.f.close()
        self.f = None

    def run(self, X):
        # each panel read into one buffer (read_direct): `ds[r:r + step]` allocates a new
        # array a panel, whose first touch cost 20x the read here (d = 16384: 3.0 s
        # against 0.13-0.19 s a pass, page cache warm)
        d, step = self.a.d, self.ds.chunks[0]
        Y = self.np.empty((d,) + X.shape[1:], dtype=self.np.float32)
        buf = self.np.empty((step, d), dtype=self.np.float32)
        for r in range(0, d, step):
            n = min(step, d - r)
            self.ds.read_direct(buf, self.np.s_[r:r + n, :], self.np.s_[0:n, :])
            Y[r:r + n] = buf[:n] @ X
        return Y


def cmd_mv(a):
    import numpy as np

    work = NumpyMv(np, a) if a.method == "numpy" else H5Mv(np, a)
    X = vectors(np, a.d, a.k)
    times, drop, Y = [], "", None
    work.open()
    start = time.monotonic()
    for i in range(a.reps + (0 if a.cold else a.warmup)):
        if times and time.monotonic() - start > a.max_seconds:
            break  # a pathologically slow pass (a thrashing mapping): fewer repetitions
        if a.cold:
            work.close()
            drop = drop_cache(work.path)
            work.open()
        t0 = time.monotonic()
        Y = work.run(X)
        dt = time.monotonic() - t0
        if a.cold or i >= a.warmup:
            times.append(dt)
    work.close()
    col = Y if a.k == 1 else Y[:, 0]
    print(json.dumps({"median": statistics.median(times), "min": min(times),
                      "reps": len(times), "bytes": 4.0 * a.d * a.d,
                      "checksum": float(col.astype(np.float64).sum()), "cold": int(a.cold),
                      "drop": drop, "k": a.k}))


def cmd_h5write(a):
    import h5py
    import numpy as np

    A = np.memmap(a.file, dtype=np.float32, mode="r", shape=(a.d, a.d))
    e = min(a.chunk, a.d)
    with h5py.File(a.out, "w") as f:
        ds = f.create_dataset("A", shape=(a.d, a.d), dtype="f4", chunks=(e, e))
        for r in range(0, a.d, e):
            ds[r:r + e] = A[r:r + e]
    print(json.dumps({"bytes": os.path.getsize(a.out)}))


def cmd_info(_a):
    """Versions and the BLAS library numpy loaded (from this process's mappings)."""
    out = {"python": sys.version.split()[0]}
    try:
        import numpy as np

        out["numpy"] = np.__version__
        np.ones((2, 2), np.float32) @ np.ones((2, 2), np.float32)
        with open("/proc/self/maps") as f:
            libs = sorted({ln.split()[-1] for ln in f if "blas" in ln.lower() and "/" in ln})
        out["blas"] = libs
    except ImportError as e:
        out["numpy_error"] = str(e)
    try:
        import h5py

        out["h5py"] = h5py.__version__
        out["hdf5"] = h5py.version.hdf5_version
    except ImportError as e:
        out["h5py_error"] = str(e)
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    mv = sub.add_parser("mv")
    mv.add_argument("--method", choices=["numpy", "h5py"], required=True)
    mv.add_argument("--file", required=True)
    mv.add_argument("--h5")
    mv.add_argument("--d", type=int, required=True)
    mv.add_argument("--k", type=int, default=1)
    mv.add_argument("--reps", type=int, default=3)
    mv.add_argument("--warmup", type=int, default=1)
    mv.add_argument("--cold", action="store_true")
    mv.add_argument("--max-seconds", type=float, default=60.0,
                    help="stop repeating after this long, once one pass is timed")
    w = sub.add_parser("h5write")
    w.add_argument("--file", required=True)
    w.add_argument("--d", type=int, required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--chunk", type=int, default=512)
    sub.add_parser("info")
    a = p.parse_args()
    if a.cmd == "mv" and a.method == "h5py" and not a.h5:
        p.error("--method h5py needs --h5")
    {"mv": cmd_mv, "h5write": cmd_h5write, "info": cmd_info}[a.cmd](a)


if __name__ == "__main__":
    main()
