"""The bridge's layout text and captured tensors through `pspace build` (the CLI), no package.

Runs when the pspace binary is found: $PSPACE_BIN, else beside $PSPACE_LIB, else
build/pspace of this repository.
"""

import os
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the package tests run without torch too

import torch_models as tm
import pspace.torch as ptorch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BIN = os.environ.get("PSPACE_BIN") or (
    os.path.join(os.path.dirname(os.environ["PSPACE_LIB"]), "pspace")
    if os.environ.get("PSPACE_LIB") else os.path.join(ROOT, "build", "pspace"))
if not os.access(BIN, os.X_OK):
    pytest.skip("no pspace binary at %s" % BIN, allow_module_level=True)


def run(*args):
    r = subprocess.run([BIN] + list(args), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def dense(tmp, store, name):
    out = os.path.join(tmp, name + ".npy")
    run("export", store, name, "--npy", out)
    return np.load(out).astype(np.float64)


@pytest.mark.parametrize("name", ("mlp", "cnn", "emb", "norm"))
def test_torch_cli_dense(tmp_path, name):
    tmp = str(tmp_path)
    model, x, y = tm.make(name, n=8)
    R = tm.per_example_fisher(model, x, y, "classif_logits").mean(0)
    with open(os.path.join(tmp, "L.txt"), "w") as f:
        f.write(ptorch.layout(model))
    cap = ptorch.capture(model, (x, y), "classif_logits")
    np.save(os.path.join(tmp, "J.npy"), ptorch.jacobian_rows(model, cap))
    store = os.path.join(tmp, "s")
    run("build", store, "J", "--kind", "dense", "--layout", os.path.join(tmp, "L.txt"),
        "--jacobian", os.path.join(tmp, "J.npy"), "--precision", "f64")
    assert np.linalg.norm(dense(tmp, store, "J") - R) < 1e-6 * np.linalg.norm(R)
    if cap.norm:
        return
    lt = os.path.join(tmp, "lt")
    os.mkdir(lt)
    for lname, (a, g) in cap.layers.items():
        np.save(os.path.join(lt, lname + ".acts.npy"), a)
        np.save(os.path.join(lt, lname + ".grads.npy"), g)
    run("build", store, "T", "--kind", "dense", "--layout", os.path.join(tmp, "L.txt"),
        "--layer-tensors", lt, "--precision", "f64")
    assert np.linalg.norm(dense(tmp, store, "T") - R) < 1e-6 * np.linalg.norm(R)
