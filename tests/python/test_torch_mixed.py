"""pspace.torch.fim with mixed: specs on models with norm layers (KFAC/EKFAC for the
linear and conv layers, a kind from gradients for the norm layers), against float64
references computed one example at a time with plain autograd."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn
import torch.nn.functional as tF

import torch_models as tm
import pspace
import pspace.torch as ptorch
from test_torch_fim import block_mask, blocks, loader_of, quasi_mask, reference, rel


class LinLN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 6)
        self.ln = nn.LayerNorm(6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.ln(self.fc1(x))))


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 3 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def make(cls, x):
    torch.manual_seed(1)
    model = cls().double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval(), x, torch.randint(0, 3, (x.shape[0],))


def kfac_block(model, lname, x):
    """KFAC of one layer for the regression variant (README Formulas: A = E[sum_t a_t a_t^T],
    G = E[sum_k sum_t g_t g_t^T] / T), as a dense block in the layer's parameter order."""
    m = dict(model.named_modules())[lname]
    seen = {}
    h = m.register_forward_hook(lambda mod, i, o: seen.update(x=i[0], z=o))
    A = G = 0
    try:
        for i in range(x.shape[0]):
            out = model(x[i:i + 1])[0]
            if isinstance(m, nn.Conv2d):
                a = tF.unfold(seen["x"], m.kernel_size, m.dilation, m.padding, m.stride)[0].T
            else:
                a = seen["x"]
            a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], 1).detach().numpy()
            A = A + a.T @ a
            for c in range(out.numel()):
                g = torch.autograd.grad(out[c], seen["z"], retain_graph=True)[0][0]
                g = (g.reshape(g.shape[0], -1).T if g.dim() > 1 else g[None]).numpy()
                G = G + g.T @ g / g.shape[0]
    finally:
        h.remove()
    A, G = A / x.shape[0], G / x.shape[0]
    out, inp = G.shape[0], A.shape[0] - 1
    perm = [o * (inp + 1) + j for o in range(out) for j in range(inp)]
    perm += [o * (inp + 1) + inp for o in range(out)]
    return np.kron(G, A)[np.ix_(perm, perm)]


def test_torch_fim_mixed_layernorm(tmp_path):
    """Linear -> LayerNorm -> Linear, one input repeated: KFAC and EKFAC blocks are the exact
    blocks of F; the LayerNorm block is exact (dense) or its diagonal."""
    model, x, y = make(LinLN, torch.randn(1, 5, dtype=torch.float64).repeat(12, 1))
    R = reference(model, x, y, "classif_logits")
    d = R.shape[0]
    s, e, _ = blocks(model)[1]
    diag_ln = block_mask(model, d)
    diag_ln[s:e, s:e] = np.eye(e - s, dtype=bool)
    quasi_ln = block_mask(model, d)
    quasi_ln[s:e, s:e] = quasi_mask(model, d)[s:e, s:e]
    cases = {"linear=kfac;ln=dense": block_mask(model, d), "fc1=ekfac;fc2=kfac;*=diag": diag_ln,
             "fc1=kfac;ln=quasidiag;fc2=lowrank": quasi_ln,
             "fc1=ekfac;ln=blockdiag;fc2=kfac": block_mask(model, d)}
    with pspace.Store(str(tmp_path / "s.store")) as store:
        for i, (spec, mask) in enumerate(cases.items()):
            F = ptorch.fim(model, loader_of(x, y), store, "M%d" % i, kind="mixed:" + spec,
                           precision="f64", progress=False)
            assert F.kind == "mixed" and F.d == d
            assert rel(F.dense(), R * mask) < 1e-8, spec
        assert "M0/ln" in store.names() and store["M0/ln"].kind == "dense"
        assert store["M1/fc1"].kind == "ekfac" and store["M1/ln"].kind == "diag"
        assert store["M2/ln"].kind == "quasidiag" and store["M3/ln"].kind == "blockdiag"


def test_torch_fim_mixed_batchnorm_conv(tmp_path):
    """A conv net with BatchNorm2d (eval): KFAC blocks against the KFAC of the definition, the
    BatchNorm block against the exact Fisher block (dense) or its diagonal."""
    model, x, y = make(ConvBN, torch.randn(8, 2, 3, 4, dtype=torch.float64))
    R = reference(model, x, y, "regression")
    (cs, ce, _), (bs, be, _), (fs, fe, _) = blocks(model)
    Kc, Kf = kfac_block(model, "conv", x), kfac_block(model, "fc", x)
    assert rel(Kc, R[cs:ce, cs:ce]) > 1e-2  # (the last layer's KFAC is exact here)
    with pspace.Store(str(tmp_path / "s.store")) as store:
        for i, spec in enumerate(("conv2d,linear=kfac;bn=dense", "*=kfac;norm=diag")):
            F = ptorch.fim(model, loader_of(x, y, bs=3), store, "M%d" % i, kind="mixed:" + spec,
                           variant="regression", precision="f64", progress=False)
            D = F.dense()
            Rb = R[bs:be, bs:be]
            assert rel(D[cs:ce, cs:ce], Kc) < 1e-9
            assert rel(D[fs:fe, fs:fe], Kf) < 1e-9
            assert rel(D[bs:be, bs:be], Rb if i == 0 else np.diag(np.diag(Rb))) < 1e-9
            D[cs:ce, cs:ce] = D[bs:be, bs:be] = D[fs:fe, fs:fe] = 0
            assert not D.any()  # nothing between the layers


def test_torch_fim_mixed_norm_errors(tmp_path):
    model, x, y = make(LinLN, torch.randn(4, 5, dtype=torch.float64))
    with pspace.Store(str(tmp_path / "s.store")) as store:
        with pytest.raises(pspace.NotSupportedError,
                           match="layer ln: a norm layer has no layer tensors, so its part "
                                 "cannot be ekfac"):
            ptorch.fim(model, loader_of(x, y), store, "M", kind="mixed:*=kfac;ln=ekfac",
                       progress=False)
        assert store.names() == []
        with pytest.raises(pspace.NotSupportedError, match="mixed:norm=diag;\\*=kfac"):
            ptorch.fim(model, loader_of(x, y), store, "K", kind="kfac", progress=False)
