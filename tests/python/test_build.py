"""Builds from Python batches (Jacobian rows, layer tensors) against F
computed with numpy float64 from the same per-example gradients."""

import numpy as np
import pytest

import pspace

LAYOUT = "fc1 linear 5x4 bias\nemb embedding 6x3 nobias\nfc2 linear 3x5 nobias\n"
N, K = 24, 2


def close(a, b, tol=1e-10):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


def layer_data(seed=0):
    """Layer tensors and the per-example Jacobian rows they define."""
    rng = np.random.default_rng(seed)
    a1, g1 = rng.standard_normal((N, 4)), rng.standard_normal((K, N, 5))
    ids, ge = rng.integers(0, 6, (N, 2)), rng.standard_normal((K, N, 2, 3))
    a2, g2 = rng.standard_normal((N, 3, 5)), rng.standard_normal((K, N, 3, 3))
    rows = []
    for k in range(K):
        for x in range(N):
            w1 = np.outer(g1[k, x], a1[x]).ravel()
            e = np.zeros((6, 3))
            for t in range(2):
                e[ids[x, t]] += ge[k, x, t]
            w2 = sum(np.outer(g2[k, x, t], a2[x, t]) for t in range(3)).ravel()
            rows.append(np.concatenate([w1, g1[k, x], e.ravel(), w2]))
    J = np.array(rows)
    F = J.T @ J / N
    tensors = {"fc1": (a1, g1), "emb": (ids, ge), "fc2": (a2, g2)}
    return tensors, F


def batches_of(t, cuts):
    out = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        out.append({name: (a[lo:hi], g[:, lo:hi]) for name, (a, g) in t.items()})
    return out


def blocks(F, sizes):
    M, o = np.zeros_like(F), 0
    for s in sizes:
        M[o:o + s, o:o + s] = F[o:o + s, o:o + s]
        o += s
    return M


@pytest.fixture()
def store(tmp_path):
    with pspace.Store(tmp_path / "b.store") as s:
        yield s


def test_build_jacobian(store, tmp_path):
    rng = np.random.default_rng(5)
    d = 30
    J = rng.standard_normal((K, N, d))
    F = np.einsum("kxi,kxj->ij", J, J) / N
    layout = "p generic %d nobias\n" % d
    parts = [J[:, :5], J[:, 5:5], J[:, 5:17].astype(np.float32), J[:, 17:]]
    M = store.build_jacobian("F", layout, parts, kind="dense", precision="f64")
    close(M.dense(), blocks(F, [d]), 1e-6)  # one batch is float32
    Jb = [J[:, :11], J[:, 11:]]
    M = store.build_jacobian("F64", layout, lambda: iter(Jb), kind="dense", precision="f64",
                             examples=N)
    close(M.dense(), F)
    path = tmp_path / "layout.txt"
    path.write_text(layout)
    D = store.build_jacobian("Fd", str(path), iter(Jb), kind="diag", examples=N)
    assert D.kind == "diag"
    close(D.diag(), np.diag(F), 1e-6)
    # out of core under a small budget: several passes over a callable
    big = 600
    Jbig = rng.standard_normal((1, 40, big))
    Fbig = Jbig[0].T @ Jbig[0] / 40
    seen = []

    def fresh():
        seen.append(1)
        return iter([Jbig[:, :13], Jbig[:, 13:]])

    # (batches of 8 examples: a whole-input batch would make one direct pass)
    M = store.build_jacobian("Big", "p generic %d nobias\n" % big, fresh, kind="dense",
                             precision="f64", mem="1M", tile=64, batch=8, examples=40)
    assert len(seen) > 1
    v = rng.standard_normal(big)
    close(M @ v, Fbig @ v)


def test_build_layers(store):
    t, F = layer_data()
    sizes = [25, 18, 15]
    cuts = [0, 7, 7, 16, N]
    progress = []
    M = store.build_layers("B", LAYOUT, batches_of(t, cuts), kind="blockdiag", precision="f64",
                           progress=lambda *a: progress.append(a))
    close(M.dense(), blocks(F, sizes))
    assert progress
    D = store.build_layers("D", LAYOUT, lambda: iter(batches_of(t, cuts)), kind="diag")
    close(D.diag(), np.diag(F), 1e-6)
    Q = store.build_layers("Dense", LAYOUT, batches_of(t, [0, N]), kind="dense",
                           precision="f64", batch=5)
    close(Q.dense(), F)
    E = store.build_layers("E", LAYOUT, lambda: iter(batches_of(t, cuts)), kind="ekfac",
                           examples=N)
    Kf = store.build_layers("K", LAYOUT, batches_of(t, cuts), kind="kfac",
                            variant_outputs=K)
    for A in (E, Kf):
        R = A.dense()
        v = np.random.default_rng(1).standard_normal(F.shape[0])
        close(A @ v, R @ v, 1e-8)
        close(A.trace(), np.trace(R), 1e-8)
    # EKFAC's diagonal is the exact diagonal of F in its eigenbasis: trace agrees
    close(E.trace(), np.trace(F), 1e-6)
    Mx = store.build_layers("Mx", LAYOUT, batches_of(t, cuts), kind="mixed:fc1=kfac;*=diag")
    assert Mx.kind == "mixed"


def test_build_errors(store):
    t, _ = layer_data()
    layout = "p generic 8 nobias\n"
    J = np.ones((1, 4, 8))
    store.build_jacobian("F", layout, [J])
    with pytest.raises(pspace.ExistsError, match="b.store.*F already exists"):
        store.build_jacobian("F", layout, [J])
    with pytest.raises(pspace.Error, match="pass examples=N with a plain iterator"):
        store.build_jacobian("G", layout, iter([J]))
    with pytest.raises(pspace.Error, match="more than once.*pass a callable"):
        store.build_layers("E", LAYOUT, iter(batches_of(t, [0, 10, N])), kind="ekfac",
                           examples=N)
    with pytest.raises(pspace.DimensionError, match=r"batch of shape \(1, 4, 9\)"):
        store.build_jacobian("G0", layout, [np.ones((1, 4, 9))])
    with pytest.raises(pspace.DimensionError, match="layer fc1: acts"):
        bad = dict(t, fc1=(t["fc1"][0][:, :3], t["fc1"][1]))
        store.build_layers("G1", LAYOUT, [bad], kind="diag")
    with pytest.raises(pspace.Error, match="no tensors for layer 'emb'"):
        store.build_layers("G2", LAYOUT, [{"fc1": t["fc1"], "fc2": t["fc2"]}], kind="diag")
    with pytest.raises(pspace.Error, match="ended after 4 examples"):
        store.build_jacobian("G3", layout, [J], examples=9)
    with pytest.raises(pspace.NotFoundError, match="nolayout.txt"):
        store.build_jacobian("G", "nolayout.txt", [J])
    with pytest.raises(pspace.DimensionError, match="K = 2 outputs, not 3"):
        store.build_layers("G", LAYOUT, [t], kind="diag", variant_outputs=3)
    with pytest.raises(pspace.FormatError, match="unknown layer kind"):
        store.build_jacobian("G4", "p lineer 8 nobias\n", [J])

    def broken():
        yield J
        raise RuntimeError("loader broke")

    with pytest.raises(RuntimeError, match="loader broke"):
        store.build_jacobian("G5", layout, broken(), examples=8)
    with pytest.raises(ZeroDivisionError):
        store.build_jacobian("G6", layout, [J], progress=lambda *a: 1 / 0)
    # bad input (G0) leaves nothing; batches ending early (G3) and the loader's
    # exception (G5) leave an incomplete matrix, as interruptions
    assert store.names() == ["F"] + ["G%d" % i for i in (3, 5, 6)]
    assert "incomplete" in str(pytest.raises(pspace.IncompleteError, store.__getitem__, "G5"))
    store.remove("G5")
    assert "G5" not in store
