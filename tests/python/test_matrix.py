"""Operations on stored matrices and expressions against numpy float64 on
the same dense matrices."""

import os
import subprocess
import sys

import numpy as np
import pytest

import pspace
from conftest import dense_pair

D = 40


@pytest.fixture()
def store(tmp_path):
    yield from dense_pair(tmp_path, 7, D)


def close(a, b, tol=1e-10):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


def test_matrix_properties(store):
    s, F, _ = store
    M = s["F"]
    assert (M.name, M.kind, M.d, M.shape) == ("F", "dense", D, (D, D))
    assert s.names() == ["F", "G"] and "G" in s and "H" not in s and len(s) == 2


def test_matrix_products(store):
    s, F, _ = store
    M = s["F"]
    rng = np.random.default_rng(1)
    v, X = rng.standard_normal(D), rng.standard_normal((D, 5))
    close(M.mv(v), F @ v)
    close(M @ v, F @ v)
    close(M @ list(v), F @ v)
    close(M.mm(X), F @ X)
    close(M @ X, F @ X)
    close(v @ M, v @ F)
    close(M.vtmv(v), v @ F @ v)
    close(M.trace(), np.trace(F))
    close(M.diag(), np.diag(F))
    close(M.norm(), np.linalg.norm(F, "fro"))
    close(M.norm(2), np.linalg.norm(F, 2), 1e-7)
    close(M.norm(-2), np.linalg.norm(F, -2), 1e-6)
    close(M.dense(), F)
    assert M.mv(v).dtype == np.float64


def test_matrix_eig_solve(store):
    s, F, _ = store
    M = s["F"]
    w, V = M.eig(3)
    ref = np.linalg.eigvalsh(F)[::-1][:3]
    close(w, ref, 1e-8)
    for j in range(3):  # eigenvectors up to sign
        close(F @ V[:, j], w[j] * V[:, j], 1e-6)
    rng = np.random.default_rng(2)
    b, B = rng.standard_normal(D), rng.standard_normal((D, 3))
    close(M.solve(b), np.linalg.solve(F, b), 1e-8)
    close(M.solve(b, damping=0.1), np.linalg.solve(F + 0.1 * np.eye(D), b), 1e-9)
    close(M.solve(B, damping=0.1), np.linalg.solve(F + 0.1 * np.eye(D), B), 1e-9)
    x = M.solve(b, damping=0.1, method="cg", tol=1e-12)
    close(x, np.linalg.solve(F + 0.1 * np.eye(D), b), 1e-8)
    assert M.solve_iterations > 0


def test_expressions(store):
    s, F, G = store
    E = 2 * s["F"] - s["G"] + 1e-3 * pspace.I
    R = 2 * F - G + 1e-3 * np.eye(D)
    assert isinstance(E, pspace.Expression) and E.d == D
    rng = np.random.default_rng(3)
    v, X = rng.standard_normal(D), rng.standard_normal((D, 4))
    close(E.mv(v), R @ v)
    close(E @ X, R @ X)
    close(E.vtmv(v), v @ R @ v)
    close(E.trace(), np.trace(R))
    close(E.diag(), np.diag(R))
    close(E.norm("fro"), np.linalg.norm(R, "fro"))
    close(E.dense(), R)
    close(E.eig(2, vectors=False), np.linalg.eigvalsh(R)[::-1][:2], 1e-8)
    # one pass: F and G have 6 stored tiles each (3 x 3 tiles of 16, upper triangle)
    before = s.tiles_read
    E @ X
    assert s.tiles_read - before == 12
    P = s["F"] + s["G"] + 0.5 * pspace.I  # positive definite
    RP = F + G + 0.5 * np.eye(D)
    close(P.solve(v), np.linalg.solve(RP, v), 1e-6)
    close(P.solve(v, damping=0.2), np.linalg.solve(RP + 0.2 * np.eye(D), v), 1e-6)
    close((pspace.I - 0.5 * s["G"]).mv(v), v - 0.5 * G @ v)
    close((s["F"] / 4 - (-s["G"])).mv(v), F @ v / 4 + G @ v)
    close((s["F"] @ s["G"]).mv(v), F @ (G @ v))
    close(s["F"].inv(damping=0.1).mv(v), np.linalg.solve(F + 0.1 * np.eye(D), v), 1e-8)


def test_reopen_in_fresh_process(store, tmp_path):
    s, F, G = store
    v = np.random.default_rng(4).standard_normal(D)
    np.save(tmp_path / "v.npy", v)
    prog = ("import sys, numpy as np, pspace\n"
            "s = pspace.Store(sys.argv[1], readonly=True)\n"
            "v = np.load(sys.argv[2])\n"
            "E = 2 * s['F'] - s['G'] + 1e-3 * pspace.I\n"
            "np.save(sys.argv[3], np.stack([s['F'] @ v, E @ v, s['G'].solve(v, damping=0.1)]))\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    subprocess.run([sys.executable, "-c", prog, s.path, str(tmp_path / "v.npy"),
                    str(tmp_path / "out.npy")], check=True, env=env, timeout=60)
    out = np.load(tmp_path / "out.npy")
    R = 2 * F - G + 1e-3 * np.eye(D)
    close(out[0], F @ v)
    close(out[1], R @ v)
    close(out[2], np.linalg.solve(G + 0.1 * np.eye(D), v), 1e-9)


def test_errors(store, tmp_path):
    s, F, _ = store
    with pytest.raises(pspace.NotFoundError, match="store .*t.store.*no matrix H"):
        s["H"]
    with pytest.raises(pspace.Error) as e:
        s["H"]
    assert e.value.code == -4
    M = s["F"]
    with pytest.raises(pspace.DimensionError, match=r"F: mv needs a vector of shape \(40,\)"):
        M.mv(np.ones(D + 1))
    with pytest.raises(ValueError, match=r"shape \(40, k\)"):
        M @ np.ones((D + 1, 2))
    with pytest.raises(pspace.Error, match="ord must be"):
        M.norm(3)
    other = pspace.Store(tmp_path / "o.store")
    other.write_dense("S", np.eye(3), precision="f64")
    with pytest.raises(pspace.DimensionError):
        M + other["S"]
    other.close()
    s.close()
    with pytest.raises(pspace.Error, match="closed"):
        M.mv(np.ones(D))
    with pytest.raises(pspace.Error, match="closed"):
        s.names()
