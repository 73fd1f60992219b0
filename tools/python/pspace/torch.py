"""The PyTorch bridge: Fisher matrices of a torch.nn.Module into a pspace store.

    import pspace, pspace.torch as ptorch
    model.eval()                                 # BatchNorm: running statistics
    loader = DataLoader(data, batch_size=128)    # no shuffling: builds may re-read it
    with pspace.Store("fisher.store") as store:
        F = ptorch.fim(model, loader, store, "F", kind="ekfac", variant="classif_logits")
        loss_fn(model(x), y).backward()
        g = ptorch.flatten(model, grad=True)     # the gradient, in layout order
        step = F.solve(g, damping=1e-3)          # (F + 1e-3 I)^-1 g
        ptorch.unflatten(model, ptorch.flatten(model) - 0.1 * step, assign=True)

Parameter order (ptorch.layout, flatten, unflatten) is NNGeometry's
LayerCollection.from_model order: modules in named_modules() order, each
layer's weight.view(-1) then its bias, so a vector means the same thing in
both. Supported layers: Linear, Conv1d, Conv2d (groups = 1), Embedding,
BatchNorm1d/2d (eval mode, running statistics), LayerNorm, GroupNorm.
A module of another type holding parameters is refused; exclude it by
freezing it (requires_grad_(False) on all its parameters): frozen modules
are not part of the layout.

Per-example gradients come from layer tensors captured with forward hooks
on whole batches and K backward passes per batch (torch.autograd.grad with
respect to every layer's output), as NNGeometry does; never one backward
pass per example. capture() gives them for one batch, in the README's
"Layer tensors" format, plus the Jacobian rows of the norm layers.

Streaming: batches go from torch to the builders in memory. Builds that
read the input more than once (out-of-core Dense/BlockDiag, EKFAC's
diagonal update) iterate the loader again: the loader must yield the same
examples in the same order each time (no shuffling, no random
augmentation) -- or fim(..., spill=True) writes what the first pass
computed to a temporary file and serves the later passes from it. The
`mc` variant draws its labels from a generator seeded by (seed, batch
index), so every pass sees the same labels.
"""

import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as tF

from ._errors import Error, InvalidError, NotSupportedError, NumericError
from ._spill import Spill

__all__ = ["layout", "flatten", "unflatten", "capture", "jacobian_rows", "fim",
           "SUPPORTED", "VARIANTS", "UnsupportedModelError", "NonFiniteError"]

#: The module types the bridge knows, by layout kind.
SUPPORTED = {
    nn.Linear: "linear",
    nn.Conv1d: "conv1d",
    nn.Conv2d: "conv2d",
    nn.Embedding: "embedding",
    nn.BatchNorm1d: "norm",
    nn.BatchNorm2d: "norm",
    nn.LayerNorm: "norm",
    nn.GroupNorm: "norm",
}

#: Fisher variants, as `pspace build --variant`.
VARIANTS = ("classif_logits", "mc", "regression", "empirical")

class UnsupportedModelError(NotSupportedError, ValueError):
    """A module or model the bridge cannot handle (a pspace.Error and a ValueError)."""


class NonFiniteError(NumericError, ValueError):
    """A non-finite gradient or input in a batch (a pspace.Error and a ValueError)."""


_NAME_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:/-")


class _Layer:
    """One parametrized module of the layout."""

    def __init__(self, name, module, kind):
        self.name = name
        self.module = module
        self.kind = kind
        self.weight = module.weight
        self.bias = getattr(module, "bias", None)
        if kind == "norm":
            self.shape = (module.weight.numel(),)
        else:
            self.shape = tuple(module.weight.shape)
        self.size = self.weight.numel() + (self.bias.numel() if self.bias is not None else 0)

    @property
    def affine(self):
        """True for the layers with layer tensors (linear, conv, embedding)."""
        return self.kind != "norm"


def _supported_names():
    return ", ".join(sorted({t.__name__ for t in SUPPORTED}))


def _layers(model):
    """The parametrized layers of @p model in NNGeometry's order; raises on unsupported ones."""
    layers = []
    for name, mod in model.named_modules():
        own = [(pn, p) for pn, p in mod.named_parameters(recurse=False)]
        live = [(pn, p) for pn, p in own if p.requires_grad]
        if not live:
            continue
        lname = name if name else "model"
        kind = SUPPORTED.get(type(mod))
        if kind is None:
            raise UnsupportedModelError(
                "module '%s' (%s) holds parameters (%s) but pspace.torch does not support "
                "%s; supported types: %s. To leave it out of the Fisher, freeze it: "
                "for p in model.%s.parameters(): p.requires_grad_(False)"
                % (lname, type(mod).__name__, ", ".join(pn for pn, _ in live),
                   type(mod).__name__, _supported_names(), name or "<model>"))
        if len(live) != len(own) or any(pn not in ("weight", "bias") for pn, _ in own):
            raise UnsupportedModelError(
                "module '%s' (%s): only some of its parameters require grad; freeze all of "
                "them or none" % (lname, type(mod).__name__))
        if kind in ("conv1d", "conv2d"):
            if mod.groups != 1:
                raise UnsupportedModelError(
                    "module '%s' (%s): groups = %d is not supported (only groups = 1)"
                    % (lname, type(mod).__name__, mod.groups))
            if mod.padding_mode != "zeros":
                raise UnsupportedModelError(
                    "module '%s' (%s): padding_mode '%s' is not supported (only 'zeros')"
                    % (lname, type(mod).__name__, mod.padding_mode))
        if len(lname) > 63 or not set(lname) <= _NAME_CHARS:
            raise UnsupportedModelError("module '%s': a layer name must be 1-63 characters from "
                             "[A-Za-z0-9_.:/-]" % lname)
        layers.append(_Layer(lname, mod, kind))
    if not layers:
        raise InvalidError("the model has no parameters that require grad")
    return layers


def layout(model):
    """The layout file text (README "Layout files") of @p model's parameters."""
    lines = ["# name kind weight-shape bias (pspace.torch, NNGeometry order)"]
    off = 0
    for L in _layers(model):
        bias = "bias" if L.bias is not None else "nobias"
        lines.append("%s %s %s %s # params %d .. %d"
                     % (L.name, L.kind, "x".join(str(s) for s in L.shape), bias, off,
                        off + L.size - 1))
        off += L.size
    return "\n".join(lines) + "\n"


def flatten(model, grad=False):
    """The parameters of @p model in layout order, as a numpy float64 array (d,).

    With grad=True their .grad instead (zeros where a parameter has none).
    """
    parts = []
    for L in _layers(model):
        for p in (L.weight, L.bias):
            if p is None:
                continue
            t = p.detach() if not grad else (p.grad if p.grad is not None
                                             else torch.zeros_like(p))
            parts.append(t.reshape(-1).cpu().double())
    return torch.cat(parts).numpy()


def unflatten(model, vec, assign=False):
    """Splits @p vec (d,) in layout order into the model's parameter shapes.

    Returns a dict {parameter name (as in model.named_parameters()): tensor}
    with each parameter's shape, dtype and device. With assign=True the
    values are also copied into the model's parameters (in place).
    """
    layers = _layers(model)
    vec = torch.as_tensor(np.asarray(vec)).reshape(-1)
    d = sum(L.size for L in layers)
    if vec.numel() != d:
        raise InvalidError("unflatten: the vector has %d entries, the model's layout d = %d"
                           % (vec.numel(), d))
    names = {id(p): n for n, p in model.named_parameters()}
    out, off = {}, 0
    for L in layers:
        for p in (L.weight, L.bias):
            if p is None:
                continue
            t = vec[off:off + p.numel()].reshape(p.shape).to(dtype=p.dtype, device=p.device)
            off += p.numel()
            out[names[id(p)]] = t
            if assign:
                with torch.no_grad():
                    p.copy_(t)
    return out


# --- capture -----------------------------------------------------------------------------


def _check_eval(layers):
    for L in layers:
        m = L.module
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if m.training:
                raise InvalidError("module '%s' (%s) is in training mode: its output mixes the "
                                   "examples of a batch, so per-example gradients are not "
                                   "defined; call model.eval() first" % (L.name, type(m).__name__))
            if m.running_mean is None:
                raise InvalidError("module '%s' (%s) has track_running_stats=False: it uses batch "
                                   "statistics even in eval mode, so examples are not "
                                   "independent" % (L.name, type(m).__name__))


def _classif_factor(p):
    """A factor V (n, C-1, C) with V^T V = diag(p) - p p^T per example (README "Formulas").

    The Cholesky factor with the most probable class last, as the C reference
    networks compute it: every suffix sum stays >= 1/C.
    """
    n, C = p.shape
    m = p.argmax(dim=1)
    ar = torch.arange(C, device=p.device).expand(n, C)
    # order: the classes other than m in increasing order, then m
    key = ar + C * (ar == m[:, None]).to(ar.dtype)
    q = key.argsort(dim=1)
    pq = p.gather(1, q)
    s = torch.cat([pq.flip(1).cumsum(1).flip(1), torch.zeros(n, 1, dtype=p.dtype,
                                                              device=p.device)], dim=1)
    si, si1 = s[:, :C - 1], s[:, 1:C]
    pi = pq[:, :C - 1]
    f = torch.sqrt(pi / (si * si1))
    # Vq[i, j] in the permuted order: diagonal sqrt(pi s_{i+1} / s_i), j > i: -p_qj f_i
    Vq = -pq[:, None, :] * f[:, :, None]
    i = torch.arange(C - 1, device=p.device)
    upper = (torch.arange(C, device=p.device)[None, :] > i[:, None])
    Vq = Vq * upper.to(p.dtype)
    Vq[:, i, i] = torch.sqrt(pi * si1 / si)
    V = torch.zeros_like(Vq)
    V.scatter_(2, q[:, None, :].expand(n, C - 1, C), Vq)
    return V


def _seeds(out, batch, variant, mc_samples, generator):
    """The K output seeds (K, n, C) of @p variant, and the sampled labels for mc."""
    out = out.detach()
    n, C = out.shape
    if variant == "regression":
        return torch.eye(C, dtype=out.dtype, device=out.device)[:, None, :].expand(C, n, C), None
    p = torch.softmax(out, dim=1)
    if variant == "classif_logits":
        if C < 2:
            raise InvalidError("variant classif_logits needs at least 2 classes, the output has %d"
                               % C)
        return _classif_factor(p).permute(1, 0, 2), None
    if variant == "mc":
        y = torch.multinomial(p.cpu().double(), mc_samples, replacement=True,
                              generator=generator).t().to(out.device)  # (T, n)
        onehot = tF.one_hot(y, C).to(out.dtype)
        return (p[None] - onehot) / math.sqrt(mc_samples), y
    if variant == "empirical":
        if len(batch) < 2:
            raise InvalidError("variant empirical needs the labels as the batch's second element")
        y = torch.as_tensor(batch[1], device=out.device).long().reshape(-1)
        if y.numel() != n:
            raise InvalidError("variant empirical: %d labels for %d examples" % (y.numel(), n))
        return (p - tF.one_hot(y, C).to(out.dtype))[None], None
    raise InvalidError("unknown variant '%s' (expected %s)" % (variant, ", ".join(VARIANTS)))


def _conv_geometry(m, x):
    """Pads @p x for a string padding and returns (x4, kernel, stride, padding, dilation) 2-D."""
    one = m.kernel_size if isinstance(m, nn.Conv2d) else (1,) + tuple(m.kernel_size)
    if isinstance(m, nn.Conv1d):
        x = x.unsqueeze(2)
        stride, dil = (1,) + tuple(m.stride), (1,) + tuple(m.dilation)
        pad = m.padding if isinstance(m.padding, str) else (0,) + tuple(m.padding)
    else:
        stride, dil, pad = tuple(m.stride), tuple(m.dilation), m.padding
    if isinstance(pad, str):
        if pad == "valid":
            pad = (0, 0)
        else:  # 'same': total dilation * (k - 1), the extra one on the right as torch does
            lr = []
            for k, dl in zip(one[::-1], dil[::-1]):
                tot = dl * (k - 1)
                lr += [tot // 2, tot - tot // 2]
            x = tF.pad(x, lr)
            pad = (0, 0)
    return x, tuple(one), stride, tuple(pad), dil


def _acts(L, x):
    """The layer tensor 'acts' of @p L from its input @p x (torch, detached)."""
    if L.kind == "embedding":
        return x.reshape(x.shape[0], -1) if x.dim() > 2 else x
    if L.kind == "linear":
        return x if x.dim() == 2 else x.reshape(x.shape[0], -1, x.shape[-1])
    x4, k, s, p, d = _conv_geometry(L.module, x)
    return tF.unfold(x4, k, dilation=d, padding=p, stride=s).transpose(1, 2)


def _grads(L, g):
    """The layer tensor 'grads' of @p L from the gradients (K, n, ...) of its output."""
    K, n = g.shape[:2]
    if L.kind in ("linear", "embedding"):
        if g.dim() == 3:
            return g
        return g.reshape(K, n, -1, g.shape[-1])
    out = g.shape[2]
    return g.reshape(K, n, out, -1).transpose(2, 3)


def _norm_rows(L, x, g):
    """Per-example gradient rows (K, n, size) of norm layer @p L: input x, output grads g."""
    m = L.module
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        shp = (1, -1) + (1,) * (x.dim() - 2)
        xh = (x - m.running_mean.reshape(shp)) / torch.sqrt(m.running_var.reshape(shp) + m.eps)
    elif isinstance(m, nn.LayerNorm):
        xh = tF.layer_norm(x, m.normalized_shape, None, None, m.eps)
    else:
        xh = tF.group_norm(x, m.num_groups, None, None, m.eps)
    K, n = g.shape[:2]
    if isinstance(m, nn.LayerNorm):
        P = L.weight.numel()
        gw = (xh[None] * g).reshape(K, n, -1, P).sum(2)
        gb = g.reshape(K, n, -1, P).sum(2)
    else:
        C = x.shape[1]
        gw = (xh[None] * g).reshape(K, n, C, -1).sum(3)
        gb = g.reshape(K, n, C, -1).sum(3)
    return torch.cat([gw, gb], dim=2) if L.bias is not None else gw


class Capture:
    """What one batch gives: n examples, K outputs per example.

    layers: {layer name: (acts, grads)} numpy, README "Layer tensors" format, for
    the linear/conv/embedding layers. norm: {layer name: rows (K, n, size)} numpy
    for the norm layers. labels: the mc variant's sampled labels (T, n), else None.
    """

    def __init__(self, n, K, layers, norm, labels):
        self.n, self.K, self.layers, self.norm, self.labels = n, K, layers, norm, labels


def _np(t, dtype):
    return t.detach().to("cpu").numpy().astype(dtype, copy=False)


def capture(model, batch, variant="classif_logits", function=None, mc_samples=1,
            generator=None, dtype=None, _layers_list=None):
    """Layer tensors and norm-layer Jacobian rows of one batch (see Capture).

    @p batch is a tuple or list as a DataLoader yields (its tensors are moved
    to the model's device); function(*batch) gives the outputs (n, C)
    (default model(batch[0]); regression flattens any (n, ...) output).
    dtype: numpy dtype of the results (default the model's: float32 or
    float64). generator: the torch.Generator of the mc variant's labels.
    """
    layers = _layers_list if _layers_list is not None else _layers(model)
    _check_eval(layers)
    if not isinstance(batch, (tuple, list)):
        batch = (batch,)
    dev = layers[0].weight.device
    batch = [b.to(dev, non_blocking=True) if torch.is_tensor(b) and b.device != dev else b
             for b in batch]
    inputs, outputs = {}, {}

    def hook(L):
        def f(mod, inp, out):
            if L.name in outputs:
                raise UnsupportedModelError(
                    "module '%s' is called more than once in one forward pass (shared "
                    "layers are not supported)" % L.name)
            inputs[L.name] = (inp[0].detach(), inp[0]._version)
            outputs[L.name] = out
            # the rest of the model sees a copy: an in-place op after the layer (ReLU(inplace=
            # True)) would otherwise change the tensor whose gradient we ask for
            return out.clone()
        return f

    handles = [L.module.register_forward_hook(hook(L)) for L in layers]
    try:
        with torch.enable_grad():
            out = function(*batch) if function is not None else model(batch[0])
    finally:
        for h in handles:
            h.remove()
    if not torch.is_tensor(out):
        raise UnsupportedModelError("the model's output is a %s, not a tensor (pass function= "
                                    "to pick it)" % type(out).__name__)
    if out.dim() != 2 and variant != "regression":
        raise InvalidError("variant %s needs outputs (n, C), the model gives %s (pass "
                           "function= to reshape them)" % (variant, tuple(out.shape)))
    out = out.reshape(out.shape[0], -1)
    missing = [L.name for L in layers if L.name not in outputs]
    if missing:
        raise UnsupportedModelError("layers %s were not used by the forward pass"
                                    % ", ".join(missing))
    for L in layers:
        x, version = inputs[L.name]
        if x._version != version:
            raise UnsupportedModelError("the input of layer '%s' is changed in place after the "
                                        "layer reads it; make that operation out of place"
                                        % L.name)
        inputs[L.name] = x
    seeds, labels = _seeds(out, batch, variant, mc_samples, generator)
    K, n = seeds.shape[0], out.shape[0]
    dtype = np.dtype(dtype) if dtype is not None else (
        np.float64 if layers[0].weight.dtype == torch.float64 else np.float32)
    outs = [outputs[L.name] for L in layers]
    gs = [[] for _ in layers]
    for k in range(K):
        got = torch.autograd.grad(out, outs, grad_outputs=seeds[k].contiguous(),
                                  retain_graph=k + 1 < K, allow_unused=True)
        for i, g in enumerate(got):
            gs[i].append(torch.zeros_like(outs[i]) if g is None else g.detach())
    lt, nr = {}, {}
    for i, L in enumerate(layers):
        g = torch.stack(gs[i])
        x = inputs[L.name]
        bad = "gradient" if not bool(torch.isfinite(g).all()) else (
            "input" if x.is_floating_point() and not bool(torch.isfinite(x).all()) else None)
        if bad:
            raise NonFiniteError("layer '%s': a non-finite %s in the batch (variant %s)"
                                 % (L.name, bad, variant))
        if L.affine:
            a = _acts(L, x)
            if L.kind == "embedding" and L.module.padding_idx is not None:
                # torch gives the padding row no gradient
                keep = (a != L.module.padding_idx).to(g.dtype)
                g = g * keep.reshape((1,) + tuple(x.shape) + (1,))
            lt[L.name] = (_np(a, np.int64 if L.kind == "embedding" else dtype),
                          _np(_grads(L, g), dtype))
        else:
            nr[L.name] = _np(_norm_rows(L, x, g), dtype)
    return Capture(n, K, lt, nr, None if labels is None else labels.cpu().numpy())


def jacobian_rows(model, cap, _layers_list=None):
    """The Jacobian rows (K, n, d) of a Capture, per example sum_t g_t [a_t; 1]^T per layer."""
    layers = _layers_list if _layers_list is not None else _layers(model)
    parts = []
    for L in layers:
        if not L.affine:
            parts.append(cap.norm[L.name])
            continue
        a, g = cap.layers[L.name]
        K, n = g.shape[:2]
        if L.kind == "embedding":
            ids = a.reshape(n, -1)
            g = g.reshape(K, n, ids.shape[1], -1)
            num, dim = L.shape
            J = np.zeros((K, n, num, dim), dtype=g.dtype)
            for t in range(ids.shape[1]):
                np.add.at(J, (slice(None), np.arange(n), ids[:, t]), g[:, :, t])
            parts.append(J.reshape(K, n, -1))
            continue
        if g.ndim == 3:
            a, g = a[:, None], g[:, :, None]
        parts.append(np.matmul(g.swapaxes(2, 3), a[None]).reshape(K, n, -1))
        if L.bias is not None:
            parts.append(g.sum(axis=2))
    return np.ascontiguousarray(np.concatenate(parts, axis=2))


# --- fim ---------------------------------------------------------------------------------


class _Progress:
    def __init__(self, on, total):
        self.on = on and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
        self.total, self.done, self.t0, self.last = total, 0, time.time(), 0.0

    def step(self, n):
        self.done += n
        if not self.on:
            return
        now = time.time()
        if now - self.last < 0.2:
            return
        self.last = now
        rate = self.done / max(now - self.t0, 1e-9)
        msg = "pspace.torch: %d examples, %.0f examples/s" % (self.done, rate)
        if self.total:
            left = max(self.total - self.done, 0) / max(rate, 1e-9)
            msg += ", pass %.0f%%, ETA %.0f s" % (100.0 * min(self.done, self.total) / self.total,
                                                    left)
        sys.stderr.write("\r" + msg + "   ")
        sys.stderr.flush()

    def close(self):
        if self.on:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _count(loader):
    """The number of examples @p loader yields: len(dataset) for a sequential DataLoader,
    else counted by one pass over the loader without the model."""
    from torch.utils.data import DataLoader, SequentialSampler

    if (isinstance(loader, DataLoader) and isinstance(loader.sampler, SequentialSampler)
            and not loader.drop_last):
        try:
            return len(loader.dataset)
        except TypeError:
            pass
    n = 0
    for batch in loader:
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        n += len(first)
    return n


def fim(model, loader, store, name, kind="dense", variant="classif_logits", function=None,
        mc_samples=1, precision="f32", mem="1G", threads=None, progress=True, seed=0,
        tile=None, spill=False):
    """Builds the Fisher of @p model over @p loader into @p store as matrix @p name.

    kind: as `pspace build --kind`. KFAC and EKFAC need every parametrized
    layer to be Linear/Conv/Embedding; the other kinds work with norm layers
    too, and so does mixed:SPEC as long as it gives the norm layers one of
    them (e.g. "mixed:norm=diag;*=kfac": the norm blocks are then built from
    their exact per-example gradients, the others from layer tensors).
    variant: classif_logits, mc (mc_samples labels from the model per
    example, seeded by @p seed and the batch index), regression, empirical
    (labels = the batch's second element). The loader is iterated once per
    pass the build makes; it must yield the same examples in the same order
    every time -- unless spill: True (a file in tempfile's directory) or a
    directory writes what the first pass computed (the layer tensors or
    Jacobian rows, in the model's float type) to a temporary file that the
    later passes read instead of running the model again (so a shuffling
    loader or an expensive model is fine; it costs that much disk, and the
    file is removed when fim returns or fails). Returns the built
    pspace.Matrix. tile: the tile size of Dense/BlockDiag (None: the default).
    """
    if variant not in VARIANTS:
        raise InvalidError("unknown variant '%s' (expected %s)" % (variant, ", ".join(VARIANTS)))
    if variant == "mc" and (not isinstance(mc_samples, int) or mc_samples < 1):
        raise InvalidError("mc_samples must be a positive integer, not %r" % (mc_samples,))
    layers = _layers(model)
    _check_eval(layers)
    text = layout(model)
    base = kind.split(":", 1)[0]
    all_affine = all(L.affine for L in layers)
    if base in ("kfac", "ekfac") and not all_affine:
        norms = [L.name for L in layers if not L.affine]
        raise UnsupportedModelError(
            "kind '%s' needs layer tensors, which the norm layers %s do not have; use dense, "
            "blockdiag, diag, quasidiag or lowrank, or a mixed spec giving the norm layers one "
            "of those (e.g. 'mixed:norm=diag;*=%s')" % (kind, ", ".join(norms), base))
    # layer tensors (the norm layers' Jacobian rows beside them) where the kind can use them
    use_layers = all_affine or base == "mixed"
    total = _count(loader)
    sp = None if spill is None or spill is False else Spill(None if spill is True else spill)
    state = {"first": True, "spilled": 0}

    def computed():
        bar = _Progress(progress, total)
        try:
            for bi, batch in enumerate(loader):
                gen = torch.Generator().manual_seed(int(seed) * 1000003 + bi)
                cap = capture(model, batch, variant, function, mc_samples, gen,
                              _layers_list=layers)
                bar.step(cap.n)
                if use_layers:
                    item = dict(cap.layers)
                    item.update(cap.norm)
                else:
                    item = jacobian_rows(model, cap, layers)
                if sp is not None:
                    sp.put(item)
                    state["spilled"] += cap.n
                yield item
        finally:
            bar.close()

    def batches():
        if sp is None or state["first"]:
            state["first"] = False
            return computed()
        if state["spilled"] < total:
            raise Error("spill file %s: a pass began before the first one had read all %d "
                        "examples (%d spilled)" % (sp.path, total, state["spilled"]))
        return sp.batches()

    opts = dict(kind=kind, precision=precision, mem=mem, examples=total)
    if threads is not None:
        opts["threads"] = threads
    if tile is not None:
        opts["tile"] = tile
    build = store.build_layers if use_layers else store.build_jacobian
    try:
        return build(name, text, batches, **opts)
    finally:
        if sp is not None:
            sp.close()
