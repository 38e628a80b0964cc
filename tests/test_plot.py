"""coursekit.plot: the figures show the numbers they are given, checked independently."""

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from scipy import stats

from coursekit import plot


def test_samples_vs_data_plots_the_points():
    data, samples = np.arange(10.0).reshape(5, 2), torch.ones(5, 2, requires_grad=True)
    ax = plot.samples_vs_data(data, samples, title="t", lim=3)
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() == "t"
    assert len(ax.get_legend().get_texts()) == 2
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), data)
    np.testing.assert_array_equal(ax.collections[1].get_offsets(), np.ones((5, 2)))
    with pytest.raises(ValueError, match="data"):
        plot.samples_vs_data(np.zeros((5, 3)))
    plt.close("all")


def test_density_2d_shows_the_density():
    # The mesh holds p(x) on the grid: compare with scipy's Gaussian density (independent).
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    ref = stats.multivariate_normal([0.5, -0.2], cov)
    ax = plot.density_2d(ref.logpdf, lim=3, n=41)
    shown = np.asarray(ax.collections[0].get_array()).reshape(41, 41)
    xs = np.linspace(-3, 3, 41)
    xx, yy = np.meshgrid(xs, xs)
    expected = ref.pdf(np.stack([xx, yy], axis=-1))
    np.testing.assert_allclose(shown, expected, rtol=1e-12)
    assert ax.get_xlabel() == "$x_1$"
    with pytest.raises(ValueError, match="log_prob"):
        plot.density_2d(lambda p: np.full(len(p), np.nan), n=5)
    with pytest.raises(TypeError, match="log_prob"):
        plot.density_2d(None)
    plt.close("all")


def test_grid_2d_matches_meshgrid():
    xx, yy, pts = plot.grid_2d((-1, 2, 0, 1), 4)
    ex, ey = np.meshgrid(np.linspace(-1, 2, 4), np.linspace(0, 1, 4))
    np.testing.assert_array_equal(xx, ex)
    np.testing.assert_array_equal(pts, np.column_stack([ex.ravel(), ey.ravel()]))
    for bad in (0, -1, (1, 0, 0, 1), float("nan")):
        with pytest.raises(ValueError, match="lim"):
            plot.grid_2d(bad)


def test_image_grid_places_each_image():
    images = torch.rand(13, 1, 8, 8)
    ax = plot.image_grid(images, nrow=5)
    canvas = ax.images[0].get_array()
    assert canvas.shape == (3 * 9 + 1, 5 * 9 + 1)
    # image 7 is in row 1, column 2 (raster order), after a 1-pixel padding
    np.testing.assert_array_equal(canvas[1 + 9 : 1 + 9 + 8, 1 + 18 : 1 + 18 + 8], images[7, 0].numpy())
    with pytest.raises(ValueError, match="images"):
        plot.image_grid(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="nrow"):
        plot.image_grid(images, nrow=0)
    plt.close("all")


def test_training_curve():
    ax = plot.training_curve({"a": [3, 2, 1], "b": [1, 1, 1]}, smooth=2)
    assert ax.get_ylabel() == "loss" and ax.get_legend() is not None
    # the smoothed line is the 2-point moving average
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [2.5, 1.5])
    with pytest.raises(ValueError, match="history"):
        plot.training_curve([])
    with pytest.raises(ValueError, match="smooth"):
        plot.training_curve([1.0, 2.0], smooth=0)
    plt.close("all")


def test_import_does_not_change_matplotlib_settings():
    code = (
        "import matplotlib as mpl; before = dict(mpl.rcParams); import coursekit.plot as p; "
        "assert dict(mpl.rcParams) == before, 'import changed rcParams'; p.use_style(); "
        "assert mpl.rcParams['axes.grid'] is True"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
