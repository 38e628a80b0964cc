"""coursekit.plot: every figure helper draws labelled axes without error."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from coursekit import plot


def test_samples_vs_data_labels():
    ax = plot.samples_vs_data(np.zeros((5, 2)), torch.ones(5, 2), title="t", lim=3)
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() == "t"
    assert len(ax.get_legend().get_texts()) == 2
    plt.close("all")


def test_density_2d_integrates():
    log_p = lambda x: -0.5 * (x**2).sum(1) - np.log(2 * np.pi)
    ax = plot.density_2d(log_p, lim=5, n=50)
    assert ax.get_xlabel() == "$x_1$"
    xx, yy, pts = plot.grid_2d(6, 301)
    cell = (xx[0, 1] - xx[0, 0]) * (yy[1, 0] - yy[0, 0])
    assert np.exp(log_p(pts)).sum() * cell == pytest.approx(1.0, abs=1e-3)
    plt.close("all")


def test_image_grid_shapes():
    ax = plot.image_grid(torch.rand(13, 1, 8, 8), nrow=5)
    assert ax.images[0].get_array().shape == (3 * 9 + 1, 5 * 9 + 1)
    with pytest.raises(ValueError, match="images"):
        plot.image_grid(np.zeros((8, 8)))
    plt.close("all")


def test_training_curve():
    ax = plot.training_curve({"a": [3, 2, 1], "b": [1, 1, 1]}, smooth=2)
    assert ax.get_ylabel() == "loss" and ax.get_legend() is not None
    plt.close("all")
