"""The book's figures: one look for every chapter.

Each function draws on a matplotlib ``Axes`` (a new one when ``ax`` is None),
labels its axes, and returns the ``Axes`` so that a notebook can add to it.
Inputs may be NumPy arrays or tensors (detached, moved to the CPU).

Importing this module changes no global matplotlib setting: a notebook calls
:func:`use_style` once, after its imports, to get the book's look.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from coursekit.validation import check_array, check_positive, check_positive_int

DATA_COLOR = "#4C72B0"  # data is always blue
MODEL_COLOR = "#DD8452"  # model samples are always orange
STYLE = {
    "figure.figsize": (5.0, 4.0),
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "image.cmap": "viridis",
}


def use_style() -> None:
    """Apply the book's matplotlib style (:data:`STYLE`) to matplotlib's global settings.

    Called explicitly by each chapter (``plot.use_style()``), never on import.
    """
    mpl.rcParams.update(STYLE)


def _to_numpy(x: Any, name: str = "x", *, ndim: int | tuple[int, ...] | None = None,
              finite: bool = False) -> np.ndarray:
    return check_array(x, name, ndim=ndim, finite=finite)


def _points_2d(x: Any, name: str) -> np.ndarray:
    # NaN points would silently vanish from the scatter: refuse them.
    arr = _to_numpy(x, name, ndim=2, finite=True)
    if arr.shape[1] != 2:
        raise ValueError(f"{name}: expected 2-D points of shape (n, 2), got {arr.shape}")
    return arr


def _axes(ax: plt.Axes | None, figsize: tuple[float, float] | None = None) -> plt.Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def grid_2d(
    lim: float | tuple[float, float, float, float] = 4.0, n: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A regular grid over a square (or a box ``(xmin, xmax, ymin, ymax)``).

    Returns:
        xx, yy: (n, n) coordinate arrays (for ``contour``/``pcolormesh``);
        points: (n * n, 2) the same points as rows (to feed a density).
    """
    n = check_positive_int(n, "n", minimum=2)
    if np.isscalar(lim):
        lim = check_positive(lim, "lim")
        box = (-lim, lim, -lim, lim)
    else:
        box = tuple(float(v) for v in _to_numpy(lim, "lim", ndim=1, finite=True))
        if len(box) != 4 or box[0] >= box[1] or box[2] >= box[3]:
            raise ValueError(f"lim: expected a number > 0 or a box (xmin, xmax, ymin, ymax), got {lim!r}")
    xs = np.linspace(box[0], box[1], n)
    ys = np.linspace(box[2], box[3], n)
    xx, yy = np.meshgrid(xs, ys)
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], axis=1)


def samples_vs_data(
    data: Any | None = None,
    samples: Any | None = None,
    *,
    ax: plt.Axes | None = None,
    title: str | None = None,
    lim: float | None = None,
    data_label: str = "data $x \\sim P$",
    sample_label: str = "model $x \\sim \\hat P_\\theta$",
    s: float = 3.0,
) -> plt.Axes:
    """Scatter data points (blue) and model samples (orange) on the same 2-D axes."""
    ax = _axes(ax)
    if data is not None:
        d = _points_2d(data, "data")
        ax.scatter(d[:, 0], d[:, 1], s=s, alpha=0.5, color=DATA_COLOR, label=data_label)
    if samples is not None:
        m = _points_2d(samples, "samples")
        ax.scatter(m[:, 0], m[:, 1], s=s, alpha=0.5, color=MODEL_COLOR, label=sample_label)
    if lim is not None:
        lim = check_positive(lim, "lim")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if data is not None or samples is not None:
        ax.legend(loc="upper right", markerscale=3, framealpha=0.8)
    if title:
        ax.set_title(title)
    return ax


def density_2d(
    log_prob: Callable[[np.ndarray], Any],
    *,
    lim: float | tuple[float, float, float, float] = 4.0,
    n: int = 150,
    ax: plt.Axes | None = None,
    title: str | None = None,
    points: Any | None = None,
    log_scale: bool = False,
    colorbar: bool = True,
) -> plt.Axes:
    """Heat map of a 2-D density given its log-density.

    Args:
        log_prob: maps an (m, 2) NumPy array to (m,) log-densities (NumPy or torch).
        lim: half-width of the square, or a box ``(xmin, xmax, ymin, ymax)``.
        n: grid resolution per axis.
        points: optional (k, 2) points drawn on top (e.g. data).
        log_scale: show log p instead of p.
    """
    if not callable(log_prob):
        raise TypeError(f"log_prob: expected a callable (m, 2) -> (m,), got {type(log_prob).__name__}")
    xx, yy, pts = grid_2d(lim, n)
    values = _to_numpy(log_prob(pts), "log_prob(points)")
    if values.size != xx.size:
        raise ValueError(f"log_prob: expected {xx.size} log-densities for the grid, got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("log_prob: returned NaN on the grid")
    values = values.reshape(xx.shape)
    ax = _axes(ax)
    shown = values if log_scale else np.exp(values)
    mesh = ax.pcolormesh(xx, yy, shown, shading="auto")
    if colorbar:
        plt.colorbar(mesh, ax=ax, label="$\\log p(x)$" if log_scale else "$p(x)$")
    if points is not None:
        p = _points_2d(points, "points")
        ax.scatter(p[:, 0], p[:, 1], s=1, color="white", alpha=0.4)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.grid(False)
    if title:
        ax.set_title(title)
    return ax


def image_grid(
    images: Any,
    *,
    nrow: int = 10,
    ax: plt.Axes | None = None,
    title: str | None = None,
    cmap: str = "gray_r",
    vmin: float = 0.0,
    vmax: float = 1.0,
    pad: int = 1,
) -> plt.Axes:
    """Tile grayscale images into one picture.

    Args:
        images: (n, 1, h, w) or (n, h, w) array or tensor, values in [vmin, vmax].
        nrow: images per row.
    """
    imgs = _to_numpy(images, "images", finite=True)
    nrow = check_positive_int(nrow, "nrow")
    pad = check_positive_int(pad, "pad", minimum=0)
    if imgs.ndim == 4 and imgs.shape[1] == 1:
        imgs = imgs[:, 0]
    if imgs.ndim != 3 or imgs.shape[0] == 0:
        raise ValueError(f"images: expected shape (n, 1, h, w) or (n, h, w), got {imgs.shape}")
    n, h, w = imgs.shape
    ncol = min(nrow, n)
    rows = int(np.ceil(n / ncol))
    canvas = np.full((rows * (h + pad) + pad, ncol * (w + pad) + pad), np.nan)
    for i in range(n):
        r, c = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        canvas[top : top + h, left : left + w] = imgs[i]
    ax = _axes(ax, figsize=(0.6 * ncol + 0.5, 0.6 * rows + 0.5))
    cm = mpl.colormaps[cmap].with_extremes(bad="white")  # the padding (NaN) shows white
    ax.imshow(canvas, cmap=cm, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return ax


def training_curve(
    history: Sequence[float] | dict[str, Sequence[float]],
    *,
    ax: plt.Axes | None = None,
    xlabel: str = "step",
    ylabel: str = "loss",
    title: str | None = None,
    smooth: int = 1,
    logy: bool = False,
) -> plt.Axes:
    """Plot one loss history, or several (a dict name -> history) on the same axes.

    Args:
        smooth: width of a moving average drawn over the raw curve (1 = none).
    """
    smooth = check_positive_int(smooth, "smooth")
    curves = history if isinstance(history, dict) else {ylabel: history}
    if not curves:
        raise ValueError("history: expected a loss history or a non-empty dict of them")
    checked = {}
    for name, values in curves.items():
        what = "history" if not isinstance(history, dict) else f"history[{name!r}]"
        v = _to_numpy(values, what, ndim=1, finite=True)
        if v.size == 0:
            raise ValueError(f"{what}: expected at least one value, got an empty history")
        checked[name] = v
    ax = _axes(ax)
    for name, v in checked.items():
        steps = np.arange(1, len(v) + 1)
        if smooth > 1 and len(v) >= smooth:
            kernel = np.ones(smooth) / smooth
            line = ax.plot(steps, v, alpha=0.25)[0]
            ax.plot(steps[smooth - 1 :], np.convolve(v, kernel, mode="valid"),
                    color=line.get_color(), label=name)
        else:
            ax.plot(steps, v, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(curves) > 1:
        ax.legend()
    if title:
        ax.set_title(title)
    return ax
