"""Puts tools/python on the path so `import pspace` finds the package of
this repository (PSPACE_LIB, set by ctest, picks the library)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tools", "python"))


def dense_pair(tmp_path, seed, d=40):
    """Yields (store, F, G): two d x d Fisher-like matrices (J^T J / n of 60
    and 15 Gaussian rows) stored as f64 Dense "F" and "G" (tile 16), for
    tests that compare with numpy on the same arrays."""
    import numpy as np
    import pspace

    rng = np.random.default_rng(seed)
    F, G = [(J.T @ J / len(J)) for J in (rng.standard_normal((n, d)) for n in (60, 15))]
    with pspace.Store(tmp_path / "t.store") as s:
        s.write_dense("F", F, precision="f64", tile=16)
        s.write_dense("G", G, precision="f64", tile=16)
        yield s, F, G
