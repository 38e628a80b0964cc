"""Gaussian mixture models: density, sampling, and fitting by EM or by gradient descent.

The code follows Lecture 1, section 1.3 of the slides:

- :func:`logsumexp`, the stable log-sum-exp behind every mixture log-likelihood;
- :class:`GaussianMixture`, the density p(x) = sum_k pi_k N(x | mu_k, Sigma_k) with its
  log-density, responsibilities and sampler (**Algorithm 3**, "Sampling from a GMM");
- :func:`fit_gd`, maximum likelihood by Adam on an unconstrained parametrisation
  (**Algorithm 4**, "GD step for GMM MLE"; torch);
- :func:`fit_em`, expectation-maximisation (**Algorithm 5**) started from k-means
  (:func:`kmeans`, k-means++ seeding then Lloyd iterations).

Everything but :func:`fit_gd` is plain NumPy.  The E and M steps are vectorised over the
data points; the only Python loops run over the K components or the iterations.
"""

from __future__ import annotations

import numpy as np

from coursekit.numerics import LOG_2PI, logsumexp, softplus_inverse, sq_dists
from coursekit.sampling import sample_categorical
from coursekit.validation import (
    RngLike,
    as_rng,
    check_array,
    check_positive,
    check_positive_int,
    check_probabilities,
    check_spd,
)

# log-sum-exp and the Gaussian constant have one home, coursekit.numerics; they are
# re-exported here because the mixture chapter introduces them (``gmm.logsumexp``).
__all__ = [
    "LOG_2PI", "GaussianMixture", "fit_em", "fit_gd", "initialize", "kmeans", "logsumexp",
]


# --------------------------------------------------------------------------------------
# The mixture density
# --------------------------------------------------------------------------------------


#: Largest |x| the mixture evaluates: (x - mu)^2 must stay far below float64's 1.8e308.
_MAX_ABS_X = 1e150


class GaussianMixture:
    """A Gaussian mixture p(x) = sum_k pi_k N(x | mu_k, Sigma_k) on R^d (full covariances).

    Args:
        weights: (K,) probability vector pi.
        means: (K, d) means mu_k.
        covariances: (K, d, d) symmetric positive-definite Sigma_k.

    Raises:
        ValueError: if the weights are not a probability vector, a covariance is not
            symmetric positive definite (the message names the component), or the shapes
            do not agree.
    """

    def __init__(self, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray):
        weights = check_probabilities(weights, "weights")
        means = check_array(means, "means", ndim=2)
        covariances = check_array(covariances, "covariances", ndim=3)
        k, d = means.shape
        if weights.shape[0] != k:
            raise ValueError(
                f"weights and means disagree: {weights.shape[0]} weights but {k} means "
                f"(means must have shape (K, d) = ({weights.shape[0]}, d))"
            )
        if covariances.shape != (k, d, d):
            raise ValueError(
                f"covariances: expected shape (K, d, d) = ({k}, {d}, {d}), got {covariances.shape}"
            )
        chol = np.stack([check_spd(c, "covariances", component=j)
                         for j, c in enumerate(covariances)])
        self._set(weights, means, covariances, chol)

    # A trusted constructor for the fitting loops: the parameters come from an M-step, and
    # the Cholesky factors are already computed (validation would only repeat the work).
    @classmethod
    def _trusted(cls, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray,
                 chol: np.ndarray) -> GaussianMixture:
        obj = cls.__new__(cls)
        obj._set(weights, means, covariances, chol)
        return obj

    def _set(self, weights, means, covariances, chol) -> None:
        self.weights = weights
        self.means = means
        self.covariances = covariances
        self.cholesky = chol  # (K, d, d) lower-triangular, L_k L_k^T = Sigma_k
        # Precision factors P_k = L_k^{-T}: ||L_k^{-1}(x - mu_k)||^2 = ||(x - mu_k) P_k||^2, so the
        # Mahalanobis terms of all K components come out of one matrix product.
        eye = np.eye(self.dim)
        self._prec_chol = np.linalg.solve(chol, np.broadcast_to(eye, chol.shape)).transpose(0, 2, 1)
        self._half_logdet = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)  # log|Sigma|/2
        with np.errstate(divide="ignore"):
            self._log_weights = np.log(weights)  # a zero weight gives -inf: that is right

    @property
    def n_components(self) -> int:
        """K, the number of components."""
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        """d, the dimension of the data space."""
        return self.means.shape[1]

    @property
    def n_parameters(self) -> int:
        """Free parameters: (K - 1) weights + K d means + K d (d + 1) / 2 covariance entries."""
        k, d = self.n_components, self.dim
        return (k - 1) + k * d + k * d * (d + 1) // 2

    def __repr__(self) -> str:
        return f"GaussianMixture(n_components={self.n_components}, dim={self.dim})"

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        if np.ndim(x) == 1 and self.dim == 1:
            raise ValueError(f"x: expected shape (n, 1), got {np.shape(x)} (use x[:, None])")
        x = check_array(x, "x", ndim=2, min_rows=1)
        if x.shape[1] != self.dim:
            raise ValueError(f"x: expected shape (n, {self.dim}), got {x.shape}")
        if np.abs(x).max() > _MAX_ABS_X:  # beyond, squared distances overflow: NaN posteriors
            raise ValueError(f"x: values up to {_MAX_ABS_X:g} in magnitude are supported, got "
                             f"{np.abs(x).max():.3g}")
        return x

    def _log_joint(self, x: np.ndarray) -> np.ndarray:
        """(n, K) matrix of log pi_k + log N(x_n | mu_k, Sigma_k), without validation."""
        n, d = x.shape
        k = self.n_components
        # y[n, k] = (x_n - mu_k) P_k = [x_n, 1] [P_k; -mu_k P_k]: all K components in a single
        # (n, d + 1) x (d + 1, K d) matrix product (no separate subtraction on an (n, K d) array).
        p = np.empty((d + 1, k * d))
        p[:d] = self._prec_chol.transpose(1, 0, 2).reshape(d, k * d)
        p[d] = -np.einsum("kd,kde->ke", self.means, self._prec_chol).reshape(k * d)
        x1 = np.empty((n, d + 1))
        x1[:, :d] = x
        x1[:, d] = 1.0
        y = (x1 @ p).reshape(n, k, d)
        maha = np.einsum("nkd,nkd->nk", y, y)
        log_gauss = -0.5 * (d * LOG_2PI + maha) - self._half_logdet
        return log_gauss + self._log_weights

    def log_joint(self, x: np.ndarray) -> np.ndarray:
        """The terms a_nk = log pi_k + log N(x_n | mu_k, Sigma_k) whose log-sum-exp is log p(x_n).

        Args:
            x: (n, d) points.

        Returns:
            (n, K) log joint densities of (point, component).
        """
        return self._log_joint(self._check_x(x))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """Log-density log p(x_n) = LSE_k(log pi_k + log N(x_n | mu_k, Sigma_k)).

        Args:
            x: (n, d) points.

        Returns:
            (n,) log-densities.
        """
        return logsumexp(self._log_joint(self._check_x(x)), axis=1)

    def score(self, x: np.ndarray) -> float:
        """Mean log-likelihood (1/n) sum_n log p(x_n) of the points x: (n, d)."""
        return float(np.mean(self.log_prob(x)))

    def responsibilities(self, x: np.ndarray) -> np.ndarray:
        """Posterior probabilities gamma_nk = P(z = k | x_n) = softmax_k(log pi_k + log N_k).

        Args:
            x: (n, d) points.

        Returns:
            (n, K) responsibilities; each row sums to 1.
        """
        log_joint = self._log_joint(self._check_x(x))
        resp = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
        # far from the means (|log_joint| > 1e16) adding log K to the max is lost to rounding
        # and each row would sum to more than 1: renormalise
        return resp / resp.sum(axis=1, keepdims=True)

    def sample(self, n: int, rng: RngLike = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw n points (Algorithm 3, "Sampling from a GMM"), vectorised over the points.

        1. component labels k_i ~ Categorical(pi), by a prefix-sum table
           (:func:`coursekit.sampling.sample_categorical`);
        2. x_i = mu_{k_i} + L_{k_i} z_i with z_i ~ N(0, I_d) and L_k L_k^T = Sigma_k (Cholesky).

        Args:
            n: number of points.
            rng: a NumPy Generator, an int seed or None.

        Returns:
            x: (n, d) samples; labels: (n,) component index of each sample.
        """
        n = check_positive_int(n, "n")
        rng = as_rng(rng)
        labels = sample_categorical(self.weights, n, rng)
        z = rng.standard_normal((n, self.dim))
        x = np.empty_like(z)
        # One matrix product per component (a loop over K, not over the n points).
        for k in range(self.n_components):
            idx = labels == k
            x[idx] = self.means[k] + z[idx] @ self.cholesky[k].T
        return x, labels

    def mean(self) -> np.ndarray:
        """(d,) mean of the mixture: sum_k pi_k mu_k."""
        return self.weights @ self.means

    def covariance(self) -> np.ndarray:
        """(d, d) covariance of the mixture: sum_k pi_k (Sigma_k + mu_k mu_k^T) - m m^T.

        (Law of total covariance: the mean of the within-component covariances plus the
        covariance of the component means.)
        """
        m = self.mean()
        centred = self.means - m
        within = np.einsum("k,kij->ij", self.weights, self.covariances)
        between = (self.weights[:, None] * centred).T @ centred
        return within + between


# --------------------------------------------------------------------------------------
# Initialisation: k-means++ and Lloyd
# --------------------------------------------------------------------------------------


def _check_data(x: np.ndarray, n_components: int,
                name: str = "n_components") -> tuple[np.ndarray, int]:
    if np.ndim(x) == 1:
        raise ValueError(f"x: expected shape (n, d), got {np.shape(x)} (use x[:, None])")
    x = check_array(x, "x", ndim=2, min_rows=1)
    if x.shape[1] == 0:
        raise ValueError(f"x: expected at least one feature per point, got shape {x.shape}")
    n_components = check_positive_int(n_components, name)
    if n_components > x.shape[0]:
        raise ValueError(
            f"{name}: {n_components} components but only {x.shape[0]} data points; "
            "use at most as many components as points"
        )
    return x, n_components


def _data_scale(x: np.ndarray) -> float:
    """The mean per-coordinate variance of x: the unit in which ``reg`` is measured.

    Falls back to 1 for constant data (all points equal), where there is no scale.
    """
    v = float(np.mean(np.var(x, axis=0)))
    return v if v > 0 and np.isfinite(v) else 1.0


def _sq_dists(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(n, K) squared Euclidean distances (centred: stable for data far from the origin)."""
    return sq_dists(x, centres, name_x="x", name_y="centres")


def kmeans(x: np.ndarray, n_clusters: int, *, n_iter: int = 100,
           rng: RngLike = None) -> tuple[np.ndarray, np.ndarray]:
    """k-means: k-means++ seeding (Arthur & Vassilvitskii, 2007), then Lloyd iterations.

    Seeding picks the first centre uniformly among the points, then each next one with
    probability proportional to the squared distance to the nearest centre chosen so far
    (greedy version: the best of 2 + log K such draws).
    Lloyd alternates "assign each point to its nearest centre" and "move each centre to the
    mean of its points"; it stops when the assignment no longer changes or after ``n_iter``.

    Args:
        x: (n, d) data (array or tensor).
        n_clusters: K <= n.
        n_iter: maximum number of Lloyd iterations.
        rng: a NumPy Generator, an int seed or None (a seed drawn from NumPy's global state).

    Returns:
        centres: (K, d); labels: (n,) index of the nearest centre of each point.

    Distances are computed on data centred on their mean (the clustering does not change
    under a translation, but ||x||^2 - 2 x.c + ||c||^2 loses every digit for ``x + 3e8``).
    """
    x, k = _check_data(x, n_clusters, "n_clusters")
    n_iter = check_positive_int(n_iter, "n_iter", minimum=0)
    rng = as_rng(rng)
    offset = x.mean(axis=0)
    x = x - offset  # centred once; the centres are shifted back at the end
    n = x.shape[0]
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    d2 = _sq_dists(x, centres[:1])[:, 0]
    # Greedy variant: draw a few candidates and keep the one that lowers the k-means cost
    # sum_n d2_n the most (more robust than a single draw against a bad local optimum).
    n_trials = 2 + int(np.log(k))
    for j in range(1, k):
        total = d2.sum()
        # All remaining points sit on chosen centres (duplicates): any point will do.
        probs = d2 / total if total > 0 else np.full(n, 1.0 / n)
        candidates = sample_categorical(probs, n_trials, rng)
        new_d2 = np.minimum(d2[:, None], _sq_dists(x, x[candidates]))  # (n, n_trials)
        best = int(new_d2.sum(0).argmin())
        centres[j] = x[candidates[best]]
        d2 = new_d2[:, best]
    labels = _sq_dists(x, centres).argmin(1)
    for _ in range(n_iter):
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, x)
        nonempty = counts > 0  # an empty cluster keeps its previous centre
        centres[nonempty] = sums[nonempty] / counts[nonempty, None]
        new = _sq_dists(x, centres).argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
    return centres + offset, labels


#: A component whose responsibilities sum to less than this many points is "empty".
_EMPTY = 1e-8


def _m_step(x: np.ndarray, resp: np.ndarray, reg: float) -> GaussianMixture:
    """M-step of Algorithm 5 from responsibilities resp: (n, K); returns the new mixture.

    ``reg`` is absolute here (the callers scale it by the data's variance). An empty
    component (total responsibility below 1e-8 points, e.g. k-means left it without points)
    would get the mean 0 / 0; it is re-seeded instead, like a k-means++ centre: on the data
    point farthest from the other means, with the data's covariance and one point's weight.
    """
    n, d = x.shape
    nk = resp.sum(0)  # (K,)
    empty = nk < _EMPTY
    nk_safe = np.where(empty, 1.0, nk)
    means = (resp.T @ x) / nk_safe[:, None]  # (K, d)
    covs = np.empty((resp.shape[1], d, d))
    data_cov = None
    for k in range(resp.shape[1]):
        if empty[k]:
            others = means[~empty]
            far = int(_sq_dists(x, others).min(1).argmax()) if len(others) else 0
            means[k] = x[far]
            if data_cov is None:
                data_cov = np.atleast_2d(np.cov(x, rowvar=False, bias=True))
            covs[k] = data_cov
            nk_safe[k] = 1.0  # the weight of one point, so that the component can grow again
        else:
            # Centred first (no cancellation as in E[xx^T] - mu mu^T), and written as W^T W
            # with W = sqrt(gamma) (x - mu_k): NumPy then uses a symmetric product.
            w = np.sqrt(resp[:, k, None]) * (x - means[k])
            covs[k] = w.T @ w / nk[k]
        covs[k].flat[:: d + 1] += reg  # Sigma_k + eps I keeps Sigma_k positive definite
    weights = nk_safe / nk_safe.sum()
    try:
        chol = np.linalg.cholesky(covs)
    except np.linalg.LinAlgError:
        bad = [k for k in range(len(covs)) if np.any(np.linalg.eigvalsh(covs[k]) <= 0)]
        raise ValueError(
            f"EM: the covariance of component(s) {bad} is no longer positive definite "
            "(a component collapsed); increase reg"
        ) from None
    return GaussianMixture._trusted(weights, means, covs, chol)


def initialize(x: np.ndarray, n_components: int, *, method: str = "kmeans", reg: float = 1e-6,
               rng: RngLike = None) -> GaussianMixture:
    """A starting mixture for EM or GD.

    ``"kmeans"``: run :func:`kmeans`, then one M-step with the hard assignments (weights =
    cluster sizes / n, means = centres, covariances = within-cluster covariances + reg I).
    ``"random"``: K distinct data points as means, equal weights, and every covariance equal
    to the data covariance + reg I.

    Args:
        x: (n, d) data.
        n_components: K <= n.
        method: ``"kmeans"`` or ``"random"``.
        reg: relative regulariser: ``reg * s2`` is added to every covariance diagonal, with
            s2 the mean per-coordinate variance of x (so rescaling the data rescales the fit).
        rng: a NumPy Generator, an int seed or None (a seed drawn from NumPy's global state).
    """
    x, k = _check_data(x, n_components)
    reg = check_positive(reg, "reg") * _data_scale(x)
    return _initialize(x, k, method, reg, as_rng(rng), "method")


def _initialize(x: np.ndarray, k: int, method: str, reg: float, rng: np.random.Generator,
                name: str) -> GaussianMixture:
    """:func:`initialize` on checked data, with an absolute ``reg``."""
    if method == "kmeans":
        _, labels = kmeans(x, k, rng=rng)
        return _m_step(x, np.eye(k)[labels], reg)
    if method == "random":
        n, d = x.shape
        means = x[rng.choice(n, size=k, replace=False)]
        cov = np.atleast_2d(np.cov(x, rowvar=False)) + reg * np.eye(d)
        return GaussianMixture(np.full(k, 1.0 / k), means, np.broadcast_to(cov, (k, d, d)).copy())
    expected = "'kmeans' or 'random'" + (" or a GaussianMixture" if name == "init" else "")
    raise ValueError(f"{name}: expected {expected}, got {method!r}")


def _start(x: np.ndarray, k: int, init: str | GaussianMixture, reg: float,
           rng: np.random.Generator) -> GaussianMixture:
    if isinstance(init, GaussianMixture):
        if init.n_components != k or init.dim != x.shape[1]:
            raise ValueError(
                f"init: a mixture with {init.n_components} components in dimension {init.dim}, "
                f"expected {k} components in dimension {x.shape[1]}"
            )
        return init
    return _initialize(x, k, init, reg, rng, "init")


# --------------------------------------------------------------------------------------
# EM (Algorithm 5)
# --------------------------------------------------------------------------------------


def fit_em(
    x: np.ndarray,
    n_components: int,
    *,
    max_iter: int = 200,
    tol: float = 1e-6,
    reg: float = 1e-6,
    init: str | GaussianMixture = "kmeans",
    rng: RngLike = None,
    n_init: int = 1,
) -> tuple[GaussianMixture, list[float]]:
    """Fit a full-covariance Gaussian mixture by EM (Algorithm 5), started from k-means.

    One iteration is an M-step (closed-form weights, means and covariances + reg I from the
    current responsibilities) followed by an E-step (the new responsibilities
    gamma_nk = softmax_k(log pi_k + log N(x_n | mu_k, Sigma_k)), whose log-sum-exp is also the
    log-likelihood of the new parameters).  EM never decreases the log-likelihood
    (Dempster, Laird & Rubin, 1977); it stops when an iteration gains less than ``tol``.

    Args:
        x: (n, d) data, finite.
        n_components: K <= n.
        max_iter: maximum number of iterations.
        tol: stop when the mean log-likelihood changes by less than this.
        reg: relative regulariser: ``reg * s2`` is added to each covariance diagonal, s2 the
            mean per-coordinate variance of x (prevents collapse onto a point, at any scale
            of the data: ``fit_em(1e-5 * x)`` gives 1e-5 times the means of ``fit_em(x)``).
        init: ``"kmeans"``, ``"random"`` (see :func:`initialize`) or a starting mixture.
        rng: a NumPy Generator, an int seed or None (a seed drawn from NumPy's global
            state), for the initialisation.
        n_init: number of EM runs from different random initialisations; the run with the
            highest final log-likelihood is returned (EM only finds a local optimum, and
            which one depends on the start). Must be 1 when ``init`` is a mixture.

    Returns:
        (mixture, history): the fitted mixture and the mean log-likelihood
        (1/n) sum_n log p(x_n) after each iteration of the returned run;
        ``history[-1]`` is the returned mixture's.
    """
    x, k = _check_data(x, n_components)
    max_iter = check_positive_int(max_iter, "max_iter")
    tol = check_positive(tol, "tol")
    reg = check_positive(reg, "reg") * _data_scale(x)
    n_init = check_positive_int(n_init, "n_init")
    if n_init > 1 and isinstance(init, GaussianMixture):
        raise ValueError("n_init: a given starting mixture allows only one run (n_init=1)")
    generator = as_rng(rng)
    best: tuple[GaussianMixture, list[float]] | None = None
    for _ in range(n_init):
        run = _em_run(x, k, _start(x, k, init, reg, generator), max_iter, tol, reg)
        if best is None or run[1][-1] > best[1][-1]:
            best = run
    return best


def _em_run(
    x: np.ndarray, k: int, gm: GaussianMixture, max_iter: int, tol: float, reg: float
) -> tuple[GaussianMixture, list[float]]:
    """One EM run from the mixture ``gm`` (see :func:`fit_em`)."""

    def e_step(model: GaussianMixture) -> tuple[np.ndarray, float]:
        log_joint = model._log_joint(x)  # (n, K)
        log_px = logsumexp(log_joint, axis=1)  # (n,) log p(x_n), the log-sum-exp
        return np.exp(log_joint - log_px[:, None]), float(log_px.mean())

    resp, ll = e_step(gm)
    history: list[float] = []
    for _ in range(max_iter):
        gm = _m_step(x, resp, reg)
        resp, new_ll = e_step(gm)
        history.append(new_ll)
        if abs(new_ll - ll) < tol:
            break
        ll = new_ll
    return gm, history


# --------------------------------------------------------------------------------------
# Gradient descent (Algorithm 4), in torch
# --------------------------------------------------------------------------------------


def fit_gd(
    x: np.ndarray,
    n_components: int,
    *,
    n_steps: int,
    lr: float,
    batch_size: int | None = None,
    reg: float = 1e-6,
    init: str | GaussianMixture = "kmeans",
    rng: RngLike = None,
    show_progress: bool = True,
) -> tuple[GaussianMixture, list[float]]:
    """Fit a full-covariance Gaussian mixture by Adam on the negative log-likelihood (Algorithm 4).

    Unconstrained parametrisation (so any step of Adam gives a valid mixture):
    pi = softmax(w); Sigma_k = L_k L_k^T + eps I with L_k lower-triangular and a positive
    diagonal softplus(a_k) > 0.  The loss of a batch B is the mean negative log-likelihood
    J = -(1/|B|) sum_b LSE_k(log pi_k + log N(x_b | mu_k, Sigma_k)) (Kingma & Ba, 2015, for
    Adam).  Computed in float64, with a tqdm bar (``coursekit.train``).

    Args:
        x: (n, d) data, finite.
        n_components: K <= n.
        n_steps: number of Adam steps (the name of :func:`coursekit.utils.train`).
        lr: learning rate.
        batch_size: mini-batch size (None: the full data, i.e. plain gradient descent).
        reg: relative eps: Sigma_k = L_k L_k^T + reg * s2 I, s2 the mean variance of x.
        init: ``"kmeans"``, ``"random"`` or a starting mixture (see :func:`initialize`).
        rng: a NumPy Generator, an int seed or None (initialisation and batch order).
        show_progress: show the tqdm bar.

    Returns:
        (mixture, history): the fitted mixture and, for each step, the mean log-likelihood
        of the step's batch before the update (= -J; with ``batch_size=None`` it is the mean
        training log-likelihood).
    """
    # torch (and the training loop) only for this gradient-descent variant: the NumPy
    # chapters that import gmm do not pay torch's import time.
    import torch

    from coursekit.utils import train

    x, k = _check_data(x, n_components)
    n_steps = check_positive_int(n_steps, "n_steps")
    lr = check_positive(lr, "lr")
    reg = check_positive(reg, "reg") * _data_scale(x)
    rng = as_rng(rng)
    n, d = x.shape
    batch_size = n if batch_size is None else check_positive_int(batch_size, "batch_size")
    gm0 = _start(x, k, init, reg, rng)

    dt = torch.float64
    # Start from gm0: w = log pi, L_k = chol(Sigma_k - eps I) (when that is still PD), and the
    # diagonal a = softplus^{-1}(diag L) (stable: exact also where expm1 would overflow).
    covs0 = gm0.covariances - reg * np.eye(d)
    try:
        chol0 = np.linalg.cholesky(covs0)
    except np.linalg.LinAlgError:
        chol0 = gm0.cholesky
    diag0 = np.diagonal(chol0, axis1=1, axis2=2)
    logits = torch.tensor(np.log(gm0.weights), dtype=dt, requires_grad=True)
    means = torch.tensor(gm0.means, dtype=dt, requires_grad=True)
    offdiag = torch.tensor(np.tril(chol0, -1), dtype=dt, requires_grad=True)
    diag_raw = torch.tensor(softplus_inverse(diag0), dtype=dt, requires_grad=True)
    tril_mask = torch.tril(torch.ones(d, d, dtype=dt), -1)
    eye = torch.eye(d, dtype=dt)

    def covariances() -> torch.Tensor:
        lower = offdiag * tril_mask + torch.diag_embed(torch.nn.functional.softplus(diag_raw))
        return lower @ lower.transpose(1, 2) + reg * eye  # (K, d, d), SPD by construction

    def neg_log_lik(batch: torch.Tensor) -> torch.Tensor:
        chol = torch.linalg.cholesky(covariances())  # (K, d, d)
        diff = (batch[:, None, :] - means[None]).permute(1, 2, 0)  # (K, d, B)
        y = torch.linalg.solve_triangular(chol, diff, upper=False)  # L_k^{-1}(x_b - mu_k)
        half_logdet = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)  # (K,)
        log_gauss = -0.5 * (d * LOG_2PI + (y * y).sum(1)).T - half_logdet  # (B, K)
        log_pi = torch.log_softmax(logits, 0)
        return -torch.logsumexp(log_gauss + log_pi, dim=1).mean()

    generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
    # These tensors are tiny (K d x d matrices, a few thousand points): thread start-up costs
    # more than it saves, and on a busy machine it can slow each step down a hundredfold.
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        losses = train(
            neg_log_lik, [logits, means, offdiag, diag_raw], torch.tensor(x, dtype=dt),
            n_steps=n_steps, batch_size=batch_size, lr=lr, generator=generator,
            desc="GMM by gradient descent", show_progress=show_progress,
        )
    finally:
        torch.set_num_threads(n_threads)
    with torch.no_grad():
        covs = covariances().numpy()
        weights = torch.softmax(logits, 0).numpy()
        mu = means.numpy().copy()
    covs = 0.5 * (covs + covs.transpose(0, 2, 1))  # exact symmetry for the validation
    return GaussianMixture(weights, mu, covs), [-v for v in losses]
