"""coursekit.data: the toy distributions and the digits."""

import numpy as np
import pytest
import torch
from scipy import stats

from coursekit import data


@pytest.mark.parametrize("name", data.TOY_2D)
def test_toy_shapes_and_determinism(name):
    a = data.toy_2d(name, 500, rng=3)
    b = data.toy_2d(name, 500, rng=3)
    c = data.toy_2d(name, 500, rng=4)
    assert a.shape == (500, 2) and np.all(np.isfinite(a))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_unknown_toy_lists_valid_names():
    with pytest.raises(ValueError, match="eight_gaussians.*rings"):
        data.toy_2d("spiral", 10)


@pytest.mark.parametrize("n", [0, -1, 2.5, "10"])
def test_toy_bad_n(n):
    with pytest.raises(ValueError, match="n"):
        data.toy_2d("moons", n)


def test_eight_gaussians_parameters():
    x = data.toy_2d("eight_gaussians", 40_000, rng=0)
    # Each point lies near one of 8 centres at radius 4/1.414, with std 0.5/1.414 per axis.
    angles = np.arange(8) * np.pi / 4
    centres = 4 / 1.414 * np.stack([np.cos(angles), np.sin(angles)], 1)
    d = np.linalg.norm(x[:, None, :] - centres[None], axis=2)
    resid = x - centres[d.argmin(1)]
    assert abs(resid.std() - 0.5 / 1.414) < 0.01
    counts = np.bincount(d.argmin(1), minlength=8)
    assert stats.chisquare(counts).pvalue > 1e-3  # equal weights


def test_grid25_parameters():
    x = data.toy_2d("grid25", 20_000, rng=0)
    centres = np.round(x / 2) * 2
    assert set(np.unique(centres)) <= {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert abs((x - centres).std() - 0.05) < 0.003


def test_checkerboard_is_uniform_on_dark_squares():
    x = data.toy_2d("checkerboard", 50_000, rng=0)
    assert np.all(data.checkerboard_density(x) == 1 / 32)
    # uniform along each axis over [-4, 4]
    assert stats.kstest(x[:, 0], stats.uniform(-4, 8).cdf).pvalue > 1e-3
    # the exact density integrates to 1 on a grid
    xs = np.linspace(-5, 5, 1001)
    xx, yy = np.meshgrid(xs, xs)
    mass = data.checkerboard_density(np.stack([xx, yy], -1)).sum() * (xs[1] - xs[0]) ** 2
    assert abs(mass - 1) < 0.02
    assert data.CHECKERBOARD_ENTROPY == pytest.approx(np.log(32))


def test_rings_radii():
    x = data.toy_2d("rings", 20_000, rng=0)
    r = np.linalg.norm(x, axis=1)
    nearest = np.array([3.0, 2.25, 1.5, 0.75])[np.abs(r[:, None] - [3.0, 2.25, 1.5, 0.75]).argmin(1)]
    assert abs((r - nearest).std() - 0.08) < 0.005


def test_digits_split():
    xtr, ytr = data.load_digits("train")
    xte, yte = data.load_digits("test")
    xall, yall = data.load_digits("all")
    assert xtr.shape == (1437, 1, 8, 8) and xte.shape == (360, 1, 8, 8) and xall.shape[0] == 1797
    assert xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert 0.0 <= float(xall.min()) and float(xall.max()) == 1.0
    # fixed split: the same every call, and train and test are disjoint
    assert torch.equal(data.load_digits("test")[0], xte)
    flat = lambda t: {tuple(r) for r in t.reshape(len(t), -1).numpy().round(4)}
    assert len(flat(xtr) & flat(xte)) < 5  # the data set has a handful of exact duplicate images
    assert torch.equal(torch.bincount(yte), torch.bincount(yte).clamp(min=35))  # stratified


def test_digits_bad_split():
    with pytest.raises(ValueError, match="split"):
        data.load_digits("validation")
