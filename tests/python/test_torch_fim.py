"""pspace.torch.fim into a store, against a float64 autograd reference one example at a time."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the package tests run without torch too
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import torch_models as tm
import pspace
import pspace.torch as ptorch

KINDS = ("dense", "blockdiag", "diag", "quasidiag", "lowrank")
VARIANTS = ("classif_logits", "mc", "regression", "empirical")


def loader_of(x, y, bs=4):
    return DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=False)


def reference(model, x, y, variant, labels=None):
    return tm.per_example_fisher(model, x, y, variant, labels).mean(0)


def mc_labels(model, x, bs, T, seed=0):
    """The labels fim's mc variant draws: the generator of (seed, batch index) per batch."""
    out = []
    for bi, i in enumerate(range(0, x.shape[0], bs)):
        gen = torch.Generator().manual_seed(seed * 1000003 + bi)
        cap = ptorch.capture(model, (x[i:i + bs],), "mc", mc_samples=T, generator=gen)
        out.append(cap.labels)
    return np.concatenate(out, axis=1)


def blocks(model):
    """(start, end) of every layer's slice of the parameter vector."""
    res, off = [], 0
    for p in (r.split("#")[0].split() for r in ptorch.layout(model).splitlines()):
        if not p:
            continue
        shape = [int(s) for s in p[2].split("x")]
        n = int(np.prod(shape)) + (shape[0] if p[3] == "bias" else 0)
        res.append((off, off + n, p))
        off += n
    return res


def block_mask(model, d):
    m = np.zeros((d, d), dtype=bool)
    for s, e, _ in blocks(model):
        m[s:e, s:e] = True
    return m


def quasi_mask(model, d):
    m = np.eye(d, dtype=bool)
    for s, _, p in blocks(model):
        if p[3] != "bias":
            continue
        shape = [int(t) for t in p[2].split("x")]
        out, per = shape[0], int(np.prod(shape[1:]))
        for o in range(out):
            b = s + out * per + o
            m[b, s + o * per:s + (o + 1) * per] = True
            m[s + o * per:s + (o + 1) * per, b] = True
    return m


def rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


@pytest.mark.parametrize("name", ("mlp", "cnn", "emb", "norm"))
@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_fim_kinds(tmp_path, name, variant):
    model, x, y = tm.make(name, n=10)
    labels = mc_labels(model, x, 4, 2) if variant == "mc" else None
    R = reference(model, x, y, variant, labels)
    d = R.shape[0]
    with pspace.Store(str(tmp_path / "s.store")) as store:
        for kind in KINDS:
            F = ptorch.fim(model, loader_of(x, y), store, kind, kind=kind, variant=variant,
                           mc_samples=2, precision="f64", progress=False)
            assert F.d == d
            if kind == "diag":
                assert np.allclose(F.diag(), np.diag(R), rtol=1e-9, atol=1e-12)
                continue
            want = {"dense": R, "lowrank": R, "blockdiag": R * block_mask(model, d),
                    "quasidiag": R * quasi_mask(model, d)}[kind]
            assert rel(F.dense(), want) < 1e-9, kind
            v = np.linspace(-1, 1, d)
            assert np.allclose(F.mv(v), want @ v, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_fim_kfac_equals_blockdiag(tmp_path, variant):
    """KFAC (and EKFAC) equal BlockDiag when every example has the same single input."""
    model, x, y = tm.make("mlp", n=12)
    x = x[:1].repeat(12, 1)
    labels = mc_labels(model, x, 4, 3) if variant == "mc" else None
    R = reference(model, x, y, variant, labels)
    want = R * block_mask(model, R.shape[0])
    with pspace.Store(str(tmp_path / "s.store")) as store:
        for kind in ("kfac", "ekfac"):
            F = ptorch.fim(model, loader_of(x, y), store, kind, kind=kind, variant=variant,
                           mc_samples=3, precision="f64", progress=False)
            assert rel(F.dense(), want) < 1e-8, kind


def test_torch_fim_float32(tmp_path):
    model, x, y = tm.make("cnn", n=10)
    R = reference(model, x, y, "classif_logits")
    with pspace.Store(str(tmp_path / "s.store")) as store:
        F = ptorch.fim(model.float(), loader_of(x.float(), y), store, "F", progress=False)
        assert rel(F.dense(), R) < 1e-3


def test_torch_fim_errors(tmp_path):
    model, x, y = tm.make("norm", n=4)
    with pspace.Store(str(tmp_path / "s.store")) as store:
        with pytest.raises(pspace.NotSupportedError, match="kind 'kfac' needs layer tensors.*bn"):
            ptorch.fim(model, loader_of(x, y), store, "K", kind="kfac", progress=False)
        model.train()
        with pytest.raises(ValueError, match="training mode"):
            ptorch.fim(model, loader_of(x, y), store, "T", progress=False)
        bad = nn.Sequential(nn.Linear(5, 3), nn.PReLU())
        with pytest.raises(pspace.Error, match=r"'1' \(PReLU\).*supported types"):
            ptorch.fim(bad, loader_of(x, y), store, "U", progress=False)
        model.eval()
        ptorch.fim(model, loader_of(x, y), store, "F", kind="diag", progress=False)
        with pytest.raises(pspace.ExistsError, match="matrix F already exists"):
            ptorch.fim(model, loader_of(x, y), store, "F", kind="diag", progress=False)


class CountingLoader:
    """A re-iterable loader that counts its passes; changes its data from pass `change_at` on."""

    def __init__(self, x, y, bs=4, change_at=None):
        self.x, self.y, self.bs, self.change_at, self.passes = x, y, bs, change_at, 0

    def __iter__(self):
        self.passes += 1
        n = self.x.shape[0]
        if self.change_at is not None and self.passes >= self.change_at:
            n -= self.bs
        for i in range(0, n, self.bs):
            yield self.x[i:i + self.bs], self.y[i:i + self.bs]


@pytest.mark.parametrize("name", ("cnn", "norm"))
def test_torch_fim_out_of_core(tmp_path, name):
    """Dense larger than mem: built in bands, the loader iterated once per band."""
    model, x, y = tm.make(name, n=48)
    R = reference(model, x, y, "regression")
    loader = CountingLoader(x, y)
    with pspace.Store(str(tmp_path / "s.store")) as store:
        F = ptorch.fim(model, loader, store, "F", variant="regression", precision="f64",
                       mem="64K", tile=16, progress=False)
        assert rel(F.dense(), R) < 1e-9
    assert loader.passes > 2


def test_torch_fim_loader_changes(tmp_path):
    model, x, y = tm.make("cnn", n=12)
    loader = CountingLoader(x, y, change_at=3)
    with pspace.Store(str(tmp_path / "s.store")) as store:
        with pytest.raises(pspace.Error, match="same examples"):
            ptorch.fim(model, loader, store, "F", mem="64K", tile=16, progress=False)


def test_torch_fim_non_finite(tmp_path):
    model, x, y = tm.make("mlp", n=8)
    with torch.no_grad():
        model.fc3.bias[0] = float("inf")
    with pspace.Store(str(tmp_path / "s.store")) as store:
        with pytest.raises(pspace.NumericError, match="layer 'fc1': a non-finite gradient"):
            ptorch.fim(model, loader_of(x, y), store, "F", progress=False)


def test_torch_fim_mixed(tmp_path):
    model, x, y = tm.make("mlp", n=12)
    x = x[:1].repeat(12, 1)
    R = reference(model, x, y, "classif_logits")
    with pspace.Store(str(tmp_path / "s.store")) as store:
        F = ptorch.fim(model, loader_of(x, y), store, "M", kind="mixed:fc1=kfac;*=diag",
                       precision="f64", progress=False)
        want = np.diag(np.diag(R))
        want[:42, :42] = R[:42, :42]
        assert rel(F.dense(), want) < 1e-8


def test_torch_fim_progress(tmp_path, monkeypatch, capsys):
    import io
    import sys

    class Tty(io.StringIO):
        def isatty(self):
            return True

    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(ptorch.time, "time", iter(range(0, 1000, 1)).__next__)
    model, x, y = tm.make("mlp", n=8)
    with pspace.Store(str(tmp_path / "s.store")) as store:
        ptorch.fim(model, loader_of(x, y), store, "F", kind="diag")
    assert "examples/s" in err.getvalue() and "ETA" in err.getvalue()


@pytest.mark.parametrize("name", ("mlp", "cnn"))
def test_torch_fim_ekfac_closer_than_kfac(tmp_path, name):
    """EKFAC after its diagonal update is at least as close to BlockDiag as KFAC is."""
    model, x, y = tm.make(name, n=12)
    R = reference(model, x, y, "classif_logits")
    want = R * block_mask(model, R.shape[0])
    with pspace.Store(str(tmp_path / "s.store")) as store:
        e = {k: rel(ptorch.fim(model, loader_of(x, y), store, k, kind=k, precision="f64",
                               progress=False).dense(), want) for k in ("kfac", "ekfac")}
    assert e["ekfac"] <= e["kfac"] + 1e-12 and e["kfac"] > 1e-3


def test_torch_fim_reopened(tmp_path):
    """The stored matrix, reopened in a fresh process, gives the same products."""
    import subprocess
    import sys

    model, x, y = tm.make("norm", n=8)
    path = str(tmp_path / "s.store")
    v = np.linspace(-1, 1, ptorch.flatten(model).size)
    with pspace.Store(path) as store:
        want = ptorch.fim(model, loader_of(x, y), store, "F", kind="dense", progress=False).mv(v)
    np.save(str(tmp_path / "v.npy"), v)
    code = ("import sys, numpy as np, pspace; s = pspace.Store(sys.argv[1]); "
            "np.save(sys.argv[2], s['F'].mv(np.load(sys.argv[3])))")
    here = os.path.dirname(os.path.abspath(tm.__file__))
    env = dict(os.environ, PYTHONPATH=os.path.normpath(os.path.join(here, "..", "..", "tools",
                                                                    "python")))
    subprocess.run([sys.executable, "-c", code, path, str(tmp_path / "w.npy"),
                    str(tmp_path / "v.npy")], check=True, env=env)
    assert np.array_equal(np.load(str(tmp_path / "w.npy")), want)


def test_torch_fim_natural_gradient_step(tmp_path):
    """The module docstring's example: a damped natural-gradient step applied to the model."""
    model, x, y = tm.make("cnn", n=8)
    with pspace.Store(str(tmp_path / "s.store")) as store:
        # EKFAC: its damping is exact (KFAC's default is pi-damping)
        F = ptorch.fim(model, loader_of(x, y), store, "F", kind="ekfac", precision="f64",
                       progress=False)
        nn.functional.cross_entropy(model(x), y).backward()
        g = ptorch.flatten(model, grad=True)
        step = F.solve(g, damping=1e-3)
        Fd = F.dense()
    assert np.allclose((Fd + 1e-3 * np.eye(g.size)) @ step, g, rtol=1e-6, atol=1e-9)
    theta = ptorch.flatten(model)
    ptorch.unflatten(model, theta - 0.1 * step, assign=True)
    assert np.allclose(ptorch.flatten(model), theta - 0.1 * step)
