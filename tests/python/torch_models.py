"""Small models and a float64 autograd reference, one example at a time, for the torch tests."""

import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tools", "python"))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 7)
        self.fc2 = nn.Linear(7, 4, bias=False)
        self.fc3 = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(3, 2, (2, 3), dilation=(1, 2), bias=False)
        self.c1d = nn.Conv1d(2, 2, 3, padding="same")
        self.fc = nn.Linear(2 * 2 * 1 + 2 * 5, 3)

    def forward(self, x):
        h = torch.relu(self.conv1(x))            # (n, 3, 3, 5)
        h = torch.tanh(self.conv2(h))            # (n, 2, 2, 1)
        s = torch.tanh(self.c1d(x[:, :, 0, :5]))  # (n, 2, 5)
        return self.fc(torch.cat([h.flatten(1), s.flatten(1)], 1))


class Emb(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(6, 4, padding_idx=2)
        self.fc = nn.Linear(4, 3)

    def forward(self, ids):
        return self.fc(torch.tanh(self.emb(ids)).mean(1))


class Norm(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 6)
        self.bn = nn.BatchNorm1d(6)
        self.ln = nn.LayerNorm(6)
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn2 = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.fc2 = nn.Linear(6 + 4, 3)

    def forward(self, x):
        h = torch.tanh(self.ln(self.bn(self.fc1(x))))
        img = x[:, :4].reshape(-1, 1, 2, 2).repeat(1, 1, 2, 2)   # (n, 1, 4, 4)
        c = self.gn(torch.relu(self.bn2(self.conv(img))))          # (n, 4, 2, 2)
        return self.fc2(torch.cat([h, c.mean((2, 3))], 1))


def make(name, n=6, seed=0):
    """A float64 model in eval mode and a batch (x, y) of n examples."""
    torch.manual_seed(seed)
    model = {"mlp": MLP, "cnn": CNN, "emb": Emb, "norm": Norm}[name]().double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    model.eval()
    if name == "cnn":
        x = torch.randn(n, 2, 5, 9, dtype=torch.float64)
    elif name == "emb":
        x = torch.randint(0, 6, (n, 3))
    else:
        x = torch.randn(n, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (n,))
    return model, x, y


def params(model):
    """The parameters in NNGeometry order (modules in order, weight then bias), independently."""
    out = []
    for _, m in model.named_modules():
        for pn in ("weight", "bias"):
            p = m._parameters.get(pn) if hasattr(m, "_parameters") else None
            if p is not None:
                out.append(p)
    return out


def out_jacobian(model, x1):
    """The output Jacobian (C, d) of one example, float64, by plain autograd."""
    ps = params(model)
    z = model(x1[None])[0]
    rows = []
    for c in range(z.numel()):
        gs = torch.autograd.grad(z[c], ps, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                               for g, p in zip(gs, ps)]))
    return torch.stack(rows).numpy(), z.detach()


def per_example_fisher(model, x, y, variant, labels=None):
    """sum_k J_k^T J_k per example, (n, d, d), float64, from the output Jacobian."""
    res = []
    for i in range(x.shape[0]):
        Jz, z = out_jacobian(model, x[i])
        p = torch.softmax(z, 0).numpy()
        C = p.size
        if variant == "regression":
            M = np.eye(C)
        elif variant == "classif_logits":
            M = np.diag(p) - np.outer(p, p)
        elif variant == "empirical":
            r = p - np.eye(C)[int(y[i])]
            M = np.outer(r, r)
        else:  # mc with the given labels (T, n)
            T = labels.shape[0]
            M = sum(np.outer(p - np.eye(C)[int(labels[t, i])], p - np.eye(C)[int(labels[t, i])])
                    for t in range(T)) / T
        res.append(Jz.T @ M @ Jz)
    return np.stack(res)
