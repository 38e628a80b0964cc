"""Data sets of the course: 2-D toy distributions and the scikit-learn 8x8 digits.

Nothing here touches the network: the toys are simulated and the digits ship
inside scikit-learn.

The 2-D toys follow the parameters used in the generative-modelling
literature, so that figures can be compared with the papers:

============== ==================================================================
name           distribution
============== ==================================================================
eight_gaussians 8 Gaussians, centres on a circle of radius 4, std 0.5, all divided
               by 1.414 (FFJORD, Grathwohl et al. 2019)
grid25         25 Gaussians on the grid {-4,-2,0,2,4}^2, std 0.05 (VEEGAN,
               Srivastava et al. 2017; PacGAN)
moons          two interleaved half-circles, noise 0.1, scaled by 2 and shifted
               by (-1, -0.2) (FFJORD)
checkerboard   uniform on the 8 dark squares of a 4x4 board of side-2 squares
               covering [-4, 4]^2: density 1/32, entropy log 32 nats (FFJORD)
swiss_roll     scikit-learn's swiss roll with noise 1.0, coordinates (x, z)
               divided by 5 (FFJORD)
rings          4 concentric circles of radii 3, 2.25, 1.5, 0.75, equal mass,
               Gaussian noise 0.08 (FFJORD)
============== ==================================================================
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits as _sk_load_digits
from sklearn.model_selection import train_test_split

from coursekit.validation import RngLike, as_rng, check_array, check_positive_int

TOY_2D = ("eight_gaussians", "grid25", "moons", "checkerboard", "swiss_roll", "rings")

#: Entropy (nats) of the checkerboard's uniform density 1/32: a floor for any model's NLL.
CHECKERBOARD_ENTROPY = float(np.log(32.0))

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    angles = rng.integers(0, 8, size=n) * (np.pi / 4)
    centres = 4.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return (centres + 0.5 * rng.standard_normal((n, 2))) / 1.414


def _grid25(n: int, rng: np.random.Generator) -> np.ndarray:
    ticks = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
    centres = np.stack([rng.choice(ticks, size=n), rng.choice(ticks, size=n)], axis=1)
    return centres + 0.05 * rng.standard_normal((n, 2))


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    # Upper moon: angles in [0, pi] around (0, 0); lower moon: flipped and shifted to (1, 0.5).
    upper = rng.random(n) < 0.5
    t = rng.uniform(0.0, np.pi, size=n)
    x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x, y], axis=1) + 0.1 * rng.standard_normal((n, 2))
    return 2.0 * pts + np.array([-1.0, -0.2])


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    x1 = rng.uniform(-2.0, 2.0, size=n)
    # Pick one of the two dark squares in the column of x1: the row parity follows floor(x1).
    x2 = rng.uniform(0.0, 1.0, size=n) - 2.0 * rng.integers(0, 2, size=n)
    x2 = x2 + np.mod(np.floor(x1), 2.0)
    return 2.0 * np.stack([x1, x2], axis=1)


def _swiss_roll(n: int, rng: np.random.Generator) -> np.ndarray:
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    pts = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    return (pts + 1.0 * rng.standard_normal((n, 2))) / 5.0


def _rings(n: int, rng: np.random.Generator) -> np.ndarray:
    radii = np.array([3.0, 2.25, 1.5, 0.75])
    r = radii[rng.integers(0, 4, size=n)]
    angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
    pts = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    return pts + 0.08 * rng.standard_normal((n, 2))


_SAMPLERS = {
    "eight_gaussians": _eight_gaussians,
    "grid25": _grid25,
    "moons": _moons,
    "checkerboard": _checkerboard,
    "swiss_roll": _swiss_roll,
    "rings": _rings,
}


def toy_2d(name: str, n: int, rng: RngLike = None) -> np.ndarray:
    """Draw ``n`` points from a 2-D toy distribution.

    Args:
        name: one of :data:`TOY_2D` (see the module docstring for parameters).
        n: number of points.
        rng: a NumPy ``Generator``, an int seed or None (a seed drawn from NumPy's global
            state, which ``seed_everything`` seeds), like every NumPy function of coursekit.

    Returns:
        x: (n, 2) float64 array.
    """
    if not isinstance(name, str) or name not in _SAMPLERS:
        raise ValueError(f"name: unknown toy data set {name!r}; valid names: {', '.join(TOY_2D)}")
    n = check_positive_int(n, "n")
    return _SAMPLERS[name](n, as_rng(rng, "rng"))


def checkerboard_density(x: np.ndarray) -> np.ndarray:
    """Exact density of the ``checkerboard`` toy at points ``x`` of shape (..., 2)."""
    x = check_array(x, "x")
    if x.ndim == 0 or x.shape[-1] != 2:
        raise ValueError(f"x: expected points of shape (..., 2), got {x.shape}")
    inside = np.all(np.abs(x) <= 4.0, axis=-1)
    col = np.floor(x[..., 0] / 2.0)
    row = np.floor(x[..., 1] / 2.0)
    dark = np.mod(col + row, 2.0) == 0
    return np.where(inside & dark, 1.0 / 32.0, 0.0)


def load_digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The scikit-learn 8x8 digits, with the course's fixed train/test split.

    The 1,797 images ship with scikit-learn (no download). The split is
    stratified by label, 80 % / 20 %, with a fixed seed, so every chapter and
    every student sees the same test set.

    Args:
        split: ``"train"`` (1,437 images), ``"test"`` (360) or ``"all"`` (1,797).

    Returns:
        images: (n, 1, 8, 8) float32 tensor with values in [0, 1];
        labels: (n,) int64 tensor of digit classes 0-9.
    """
    if not isinstance(split, str) or split not in ("train", "test", "all"):
        raise ValueError(f"split: expected 'train', 'test' or 'all', got {split!r}")
    bunch = _sk_load_digits()
    images = bunch.images.astype(np.float32) / 16.0  # pixel intensities are integers 0..16
    labels = bunch.target.astype(np.int64)
    if split != "all":
        idx = np.arange(len(labels))
        train_idx, test_idx = train_test_split(
            idx,
            test_size=DIGITS_TEST_FRACTION,
            random_state=DIGITS_SPLIT_SEED,
            stratify=labels,
        )
        keep = np.sort(train_idx if split == "train" else test_idx)
        images, labels = images[keep], labels[keep]
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)
