"""pspace.torch.fim(..., spill=...): the first pass's batches in a temporary file that the
later passes read, so a loader that changes between passes still gives the Fisher of what
the first pass saw (float64 autograd references, one example at a time)."""

import errno
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_models as tm
import pspace
import pspace._spill
import pspace.torch as ptorch
from test_torch_fim import CountingLoader, block_mask, reference, rel


class Augmenting:
    """Each pass yields other inputs (as random augmentation would): one input repeated,
    shifted by the pass number. Keeps the inputs of every pass."""

    def __init__(self, x, y, bs=4):
        self.x, self.y, self.bs, self.seen = x, y, bs, []

    def __iter__(self):
        x = self.x + 0.1 * len(self.seen)
        self.seen.append(x)
        for i in range(0, x.shape[0], self.bs):
            yield x[i:i + self.bs], self.y[i:i + self.bs]


@pytest.mark.parametrize("name", ("cnn", "norm"))
def test_torch_fim_spill_out_of_core(tmp_path, name):
    """Out-of-core Dense (several passes) from a loader that would end early on its 3rd
    pass: with spill it is iterated twice (counted, then captured), and the file is gone."""
    model, x, y = tm.make(name, n=12)
    R = reference(model, x, y, "regression")
    loader = CountingLoader(x, y, change_at=3)
    where = tmp_path / "spill"
    where.mkdir()
    with pspace.Store(str(tmp_path / "s.store")) as store:
        F = ptorch.fim(model, loader, store, "F", variant="regression", precision="f64",
                       mem="64K", tile=16, progress=False, spill=str(where))
        assert rel(F.dense(), R) < 1e-9
    assert loader.passes == 2 and os.listdir(str(where)) == []


def test_torch_fim_spill_ekfac(tmp_path, monkeypatch):
    """EKFAC's second pass reads the spill: with one input repeated EKFAC is BlockDiag exactly,
    for the inputs of the pass that ran the model; without spill the passes disagree."""
    import tempfile

    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    model, x, y = tm.make("mlp", n=12)
    x = x[:1].repeat(12, 1)
    with pspace.Store(str(tmp_path / "s.store")) as store:
        for spill in (True, False):
            loader = Augmenting(x, y)
            F = ptorch.fim(model, loader, store, "E%d" % spill, kind="ekfac", precision="f64",
                           progress=False, spill=spill)
            R = reference(model, loader.seen[1], y, "classif_logits")  # [0]: the count
            err = rel(F.dense(), R * block_mask(model, R.shape[0]))
            assert (err < 1e-8) if spill else (err > 1e-3), spill
            assert len(loader.seen) == (2 if spill else 3)
    assert os.listdir(str(where)) == []


def test_torch_fim_spill_disk_full(tmp_path, monkeypatch):
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pspace._spill, "_pwrite", full)
    model, x, y = tm.make("mlp", n=8)
    where = tmp_path / "spill"
    where.mkdir()
    with pspace.Store(str(tmp_path / "s.store")) as store:
        with pytest.raises(pspace.FullError,
                           match="spill file %s/pspace-spill-.*: cannot write .*No space left "
                                 "on device.*disk is full" % where):
            ptorch.fim(model, CountingLoader(x, y), store, "F", kind="ekfac", progress=False,
                       spill=where)
    assert os.listdir(str(where)) == []
