"""pspace.torch without the C library: layout, flatten order, captured per-example gradients."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the package tests run without torch too
import torch.nn as nn

import torch_models as tm
import pspace
import pspace.torch as ptorch

MODELS = ("mlp", "cnn", "emb", "norm")
VARIANTS = ("classif_logits", "mc", "regression", "empirical")


@pytest.mark.parametrize("name", MODELS)
def test_torch_layout_and_flatten(name):
    model, x, _ = tm.make(name)
    ps = tm.params(model)
    text = ptorch.layout(model)
    rows = [ln.split("#")[0].split() for ln in text.splitlines()]
    rows = [r for r in rows if r]
    mods = [(n, m) for n, m in model.named_modules() if any(True for _ in m.parameters(False))]
    assert [r[0] for r in rows] == [n for n, _ in mods]
    for r, (_, m) in zip(rows, mods):
        shape = [int(s) for s in r[2].split("x")]
        if r[1] == "norm":
            assert shape == [m.weight.numel()]
        else:
            assert shape == list(m.weight.shape)
        assert r[3] == ("bias" if getattr(m, "bias", None) is not None else "nobias")
    kinds = {"fc1": "linear", "conv1": "conv2d", "c1d": "conv1d", "emb": "embedding",
             "bn": "norm", "ln": "norm", "gn": "norm", "bn2": "norm"}
    for r in rows:
        if r[0] in kinds:
            assert r[1] == kinds[r[0]]
    v = ptorch.flatten(model)
    ref = torch.cat([p.detach().reshape(-1) for p in ps]).numpy()
    assert v.dtype == np.float64 and np.array_equal(v, ref)
    assert v.size == sum(p.numel() for p in model.parameters())
    model.zero_grad()
    out = model(x)
    (out ** 2).sum().backward()
    gref = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in ps]).numpy()
    assert np.array_equal(ptorch.flatten(model, grad=True), gref)
    w = np.arange(v.size, dtype=np.float64)
    parts = ptorch.unflatten(model, w, assign=True)
    assert set(parts) == {n for n, _ in model.named_parameters()}
    assert np.array_equal(ptorch.flatten(model), w)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_capture_rows(name, variant):
    model, x, y = tm.make(name, n=5)
    gen = torch.Generator().manual_seed(3)
    cap = ptorch.capture(model, (x, y), variant, mc_samples=3, generator=gen)
    J = ptorch.jacobian_rows(model, cap)
    K = {"classif_logits": 2, "mc": 3, "regression": 3, "empirical": 1}[variant]
    d = sum(p.numel() for p in model.parameters())
    assert J.shape == (K, 5, d) and J.dtype == np.float64
    ref = tm.per_example_fisher(model, x, y, variant, cap.labels)
    got = np.einsum("kxi,kxj->xij", J, J)
    assert np.allclose(got, ref, rtol=1e-10, atol=1e-12)
    if variant in ("regression", "empirical"):  # rows exactly, not only their products
        for i in range(5):
            Jz, z = tm.out_jacobian(model, x[i])
            if variant == "regression":
                assert np.allclose(J[:, i], Jz, atol=1e-12)
            else:
                p = torch.softmax(z, 0).numpy()
                assert np.allclose(J[0, i], (p - np.eye(3)[int(y[i])]) @ Jz, atol=1e-12)


@pytest.mark.parametrize("name", ("mlp", "cnn", "emb"))
def test_torch_capture_layer_tensors(name):
    """The layer tensors have the README's shapes and give sum_t g_t [a_t; 1]^T."""
    model, x, y = tm.make(name, n=4)
    cap = ptorch.capture(model, (x, y), "regression")
    assert not cap.norm
    for lname, (a, g) in cap.layers.items():
        m = dict(model.named_modules())[lname]
        assert g.shape[:2] == (3, 4)
        if isinstance(m, nn.Embedding):
            assert a.dtype == np.int64 and a.shape == (4, 3) and g.shape == (3, 4, 3, 4)
        elif isinstance(m, nn.Linear):
            assert a.shape == (4, m.in_features) and g.shape == (3, 4, m.out_features)
        else:
            assert a.ndim == 3 and a.shape[2] == m.weight[0].numel()
            assert g.shape == (3, 4, a.shape[1], m.out_channels)
    for i in range(4):  # per-layer weight gradient of output 0 against autograd
        z = model(x[i:i + 1])[0, 0]
        for lname, (a, g) in cap.layers.items():
            m = dict(model.named_modules())[lname]
            gw = torch.autograd.grad(z, m.weight, retain_graph=True)[0].numpy()
            if isinstance(m, nn.Embedding):
                ref = np.zeros_like(gw)
                for t in range(a.shape[1]):
                    ref[a[i, t]] += g[0, i, t]
            elif a.ndim == 2:
                ref = np.outer(g[0, i], a[i])
            else:
                ref = g[0, i].T @ a[i]
            assert np.allclose(ref.reshape(gw.shape), gw, atol=1e-12)


def test_torch_float32_model():
    model, x, y = tm.make("cnn", n=3)
    model = model.float()
    cap = ptorch.capture(model, (x.float(), y), "classif_logits")
    a, g = cap.layers["conv1"]
    assert a.dtype == np.float32 and g.dtype == np.float32
    assert ptorch.jacobian_rows(model, cap).dtype == np.float32


def test_torch_unsupported_module():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.s

    model = nn.Sequential(nn.Linear(2, 3), Scale())
    with pytest.raises(ptorch.UnsupportedModelError,
                       match=r"module '1' \(Scale\) holds parameters.*supported types: .*Linear"):
        ptorch.layout(model)
    model[1].s.requires_grad_(False)  # frozen: left out
    assert len(ptorch.flatten(model)) == 9
    with pytest.raises(ValueError, match="groups = 2"):
        ptorch.layout(nn.Conv2d(2, 2, 3, groups=2))


def test_torch_train_mode_batchnorm():
    model, x, y = tm.make("norm")
    model.train()
    with pytest.raises(pspace.InvalidError, match=r"'bn' \(BatchNorm1d\) is in training mode"):
        ptorch.capture(model, (x, y))


def test_torch_mc_labels_are_reproducible():
    model, x, y = tm.make("mlp", n=50)
    c1 = ptorch.capture(model, (x,), "mc", mc_samples=4,
                        generator=torch.Generator().manual_seed(1))
    c2 = ptorch.capture(model, (x,), "mc", mc_samples=4,
                        generator=torch.Generator().manual_seed(1))
    assert c1.labels.shape == (4, 50) and np.array_equal(c1.labels, c2.labels)


def test_torch_output_shape():
    model = nn.Sequential(nn.Linear(3, 6), nn.Unflatten(1, (2, 3))).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(pspace.InvalidError, match=r"needs outputs \(n, C\), the model gives "
                                                  r"\(4, 2, 3\)"):
        ptorch.capture(model, (x,), "classif_logits")
    cap = ptorch.capture(model, (x,), "regression")
    J = ptorch.jacobian_rows(model, cap)
    assert J.shape == (6, 4, 24)
    assert np.allclose(J[:, 0, :18].reshape(6, 6, 3), np.eye(6)[:, :, None] * x[0].numpy())


def test_torch_inplace_activation():
    """An in-place op after a layer does not change the gradient captured for it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(inplace=True), nn.Linear(5, 3)).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    J = ptorch.jacobian_rows(model, ptorch.capture(model, (x,), "regression"))
    ref = np.stack([tm.out_jacobian(model, x[i])[0] for i in range(6)], axis=1)
    assert np.allclose(J, ref, atol=1e-12)

    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            x = x * 1
            y = self.fc(x)
            x.mul_(2)
            return y + x[:, :3]

    with pytest.raises(ptorch.UnsupportedModelError, match="input of layer 'fc' is changed"):
        ptorch.capture(Bad().double(), (x,), "regression")
