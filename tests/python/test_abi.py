"""The ctypes mirrors of the public structs (pspace._lib) against the C
compiler's layout of the headers, printed by the abi_layout program the
build makes (PSPACE_ABI_LAYOUT): a field added in C and not in Python would
let the library write past the Python object."""
import os
import subprocess

import ctypes
import pytest

from pspace import _lib as L

MIRRORS = {
    "pspace_exec": L.Exec, "pspace_store_opts": L.StoreOpts, "pspace_codec_opts": L.CodecOpts,
    "pspace_write_opts": L.WriteOpts, "pspace_build_opts": L.BuildOpts,
    "pspace_matrix_info": L.MatrixInfo, "pspace_layer": L.Layer,
    "pspace_solve_opts": L.SolveOpts, "pspace_trace_opts": L.TraceOpts,
    "pspace_est_opts": L.EstOpts, "pspace_sample_opts": L.SampleOpts,
    "pspace_eig_opts": L.EigOpts, "pspace_jac_source": L.JacSource,
    "pspace_layer_batch": L.LayerBatch, "pspace_layer_source": L.LayerSource,
}


def test_struct_layouts_match_the_headers():
    prog = os.environ.get("PSPACE_ABI_LAYOUT")
    if not prog:
        pytest.skip("PSPACE_ABI_LAYOUT not set (ctest sets it)")
    lines = subprocess.run([prog], check=True, stdout=subprocess.PIPE,
                           text=True).stdout.split("\n")
    seen = set()
    for line in filter(None, lines):
        key, value = line.split()
        struct, _, field = key.partition(".")
        mirror = MIRRORS[struct]
        got = getattr(mirror, field).offset if field else ctypes.sizeof(mirror)
        assert got == int(value), "%s: C says %s, the ctypes mirror %d" % (key, value, got)
        seen.add(struct)
    assert seen == set(MIRRORS)
