"""log det, the diagonal of the inverse and samples against numpy float64
(numpy.linalg.slogdet, numpy.linalg.inv) on the same dense matrices."""

import numpy as np
import pytest

import pspace
from conftest import dense_pair

D = 40


@pytest.fixture()
def store(tmp_path):
    yield from dense_pair(tmp_path, 11, D)


def test_logdet_exact(store):
    s, F, _ = store
    M = s["F"]
    sign, want = np.linalg.slogdet(F + 0.1 * np.eye(D))
    assert sign == 1
    assert M.logdet(damping=0.1) == pytest.approx(want, rel=1e-10)
    assert M.logdet_exact and M.logdet_stderr == 0
    E = 2 * M + 0.05 * pspace.I
    assert E.logdet(damping=0.1) == pytest.approx(
        np.linalg.slogdet(2 * F + 0.15 * np.eye(D))[1], rel=1e-10)


def test_logdet_estimated(store):
    s, F, G = store
    E = s["F"] + s["G"]
    got = E.logdet(damping=0.2, probes=300, steps=D)
    want = np.linalg.slogdet(F + G + 0.2 * np.eye(D))[1]
    assert not E.logdet_exact and E.logdet_stderr > 0
    assert abs(got - want) <= 4 * E.logdet_stderr


def test_diag_inverse(store):
    s, F, G = store
    want = np.diag(np.linalg.inv(F + 0.1 * np.eye(D)))
    np.testing.assert_allclose(s["F"].diag_inverse(damping=0.1), want, rtol=1e-10)
    E = s["F"] + s["G"]
    got = E.diag_inverse(damping=0.2, probes=400)
    want = np.diag(np.linalg.inv(F + G + 0.2 * np.eye(D)))
    assert not E.diag_inverse_exact
    assert np.all(np.abs(got - want) <= 5 * E.diag_inverse_stderr + 1e-12)


def test_sample(store):
    s, F, _ = store
    n = 20000
    C = np.linalg.inv(F + 0.1 * np.eye(D))
    for X, want in ((s["F"].sample(n, damping=0.1, seed=3), C),
                    (s["F"].sample(n, damping=0.1, seed=4, cov=True), F + 0.1 * np.eye(D))):
        assert X.shape == (n, D) and X.dtype == np.float64
        got = X.T @ X / n
        bound = 5 * np.sqrt((np.outer(np.diag(want), np.diag(want)) + want**2) / n)
        assert np.all(np.abs(got - want) <= bound)
    # the same seed gives the same draws
    np.testing.assert_array_equal(s["F"].sample(3, damping=0.1, seed=3),
                                  s["F"].sample(3, damping=0.1, seed=3))
    with pytest.raises(pspace.Error, match="no exact sampling"):
        (s["F"] + s["G"]).sample(2, damping=0.1)
