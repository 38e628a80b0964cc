"""The package's conventions, checked for every public function (CONTRIBUTING.md).

1. Bad and edge inputs: each public function and method is called with valid arguments, then
   with one argument at a time replaced by a bad value of its kind (wrong type, wrong shape,
   empty, NaN/inf, the other library's array or generator, out of range). Each must raise a
   ValueError/TypeError whose message names that argument, or (for an empty input) return an
   empty result; never a NaN, an AttributeError, an IndexError or a crash deep inside
   NumPy or torch.
2. Same seed, same numbers: every sampler and fit, with an int, the equivalent generator, or
   None under ``seed_everything``; and no function touches the global random state when it
   is given its own seed.
3. Boundaries: torch code accepts NumPy arrays and any float dtype; NumPy code accepts tensors
   (also ones that require grad).
4. Numerics at the edges, each against an independent reference (SciPy, scikit-learn,
   torch.distributions): centred distances, block-wise MMD, scale-free EM, empty
   components, dtype-aware probability tolerance, stable inverse softplus.
5. Tooling: the package data ships, the version is defined once, the dependencies cover
   what notebooks and tests import, the progress-bar extension is still needed.
"""

from __future__ import annotations

import ast
import copy
import glob
import importlib
import importlib.util
import inspect
import json
import math
import pkgutil
import re
import sys
import tracemalloc
import types
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from scipy import special, stats
from scipy.spatial.distance import cdist

import coursekit
from coursekit import (
    autoregressive as ar,
)
from coursekit import (
    baselines,
    data,
    divergences,
    ebm,
    gan,
    gmm,
    mcmc,
    metrics,
    numerics,
    plot,
    project,
    quality_diversity,
    sampling,
    sandbox,
    seeding,
    tokenizer,
    transport,
    utils,
    vae,
    validation,
)
from coursekit import (
    diffusion as df,
)
from coursekit import (
    flow_matching as fm,
)
from coursekit import (
    language_model as lm,
)
from coursekit import (
    normalizing_flows as flows,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")

# ---------------------------------------------------------------------------------------------
# Small valid inputs and models (cheap: the whole sweep runs in seconds)
# ---------------------------------------------------------------------------------------------

torch.manual_seed(0)
_R = np.random.default_rng(0)
X2 = _R.normal(size=(20, 2))  # (n, 2) float64 points
X2T = torch.from_numpy(X2).float()
IMG = (torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
LABELS = torch.tensor([0, 1, 2, 3, 4, 5])
BIN4 = (torch.rand(5, 4, generator=torch.Generator().manual_seed(1)) > 0.5).float()
GM = gmm.GaussianMixture([0.3, 0.7], [[0.0, 0.0], [2.0, 1.0]], [np.eye(2), 0.5 * np.eye(2)])
FLOW = flows.RealNVP(2, 2, hidden=8)
MONO = flows.Monotone1d(3)
COUPLING = flows.AffineCoupling(torch.tensor([1.0, 0.0]), hidden=8)
ENERGY = ebm.EnergyMLP(2, 8, 1)
VAE_ = vae.VAE(latent_dim=2, hidden=(16,))
CVAE = vae.ConditionalVAE(latent_dim=2, hidden=(16,))
AE = vae.Autoencoder(latent_dim=2, hidden=(16,))
VQ = vae.VQVAE(n_codes=8, code_dim=2, hidden=(16,))
VQ_RESET = vae.VQVAE(n_codes=8, code_dim=2, hidden=(16,), dead_threshold=1.0)
MADE = ar.MADE(4, 8)
PCNN = ar.PixelCNN(2, hidden=8, n_layers=1, kernel_size=3)
VOCAB = lm.CharVocab("abcab cab")
CHARLM = lm.CharTransformer(len(VOCAB), context=8, d_model=8, n_heads=2, n_layers=1)
TOKENS = VOCAB.encode("abcab cab")
LOGITS = torch.randn(3, 5)
MC_P = np.array([0.5, 0.5])
MC_T = np.array([[0.9, 0.1], [0.2, 0.8]])


def _mask_logits(x: torch.Tensor, i: int) -> torch.Tensor:
    return torch.zeros(x.shape[0], 3)


# ---------------------------------------------------------------------------------------------
# 1. The sweep: one bad argument at a time
# ---------------------------------------------------------------------------------------------


def _bad_arrays(valid):
    """Bad versions of a valid array argument: (label, value, empty_ok)."""
    is_t = isinstance(valid, torch.Tensor)
    arr = valid.detach().cpu().numpy() if is_t else np.asarray(valid)
    out = [("str", "oops", False), ("object", object(), False),
           ("torch.Generator", torch.Generator(), False)]
    if arr.ndim >= 1:
        out.append(("extra-axis", (valid[None] if is_t else arr[None]), False))
        empty = arr[:0]
        out.append(("empty", torch.from_numpy(empty.copy()) if is_t else empty, True))
    if np.issubdtype(arr.dtype, np.floating):
        nan = arr.copy()
        nan.reshape(-1)[0] = np.nan
        inf = arr.copy()
        inf.reshape(-1)[-1] = np.inf
        out += [("nan", torch.from_numpy(nan) if is_t else nan, False),
                ("inf", torch.from_numpy(inf) if is_t else inf, False),
                ("complex", torch.from_numpy(arr + 1j) if is_t else arr + 1j, False)]
    return out


_BAD = {
    "int": [("negative", -1), ("float", 1.5), ("str", "3"), ("bool", True), ("nan", math.nan)],
    "int1": [("zero", 0), ("negative", -1), ("float", 1.5), ("str", "3"), ("bool", True)],
    "pos": [("zero", 0.0), ("negative", -1.0), ("nan", math.nan), ("inf", math.inf),
            ("str", "x")],
    "nonneg": [("negative", -1.0), ("nan", math.nan), ("inf", math.inf), ("str", "x")],
    "rng": [("torch.Generator", torch.Generator()), ("str", "seed"), ("float", 1.5),
            ("negative", -1)],
    "gen": [("numpy Generator", np.random.default_rng(0)), ("str", "seed"), ("float", 1.5),
            ("negative", -1)],
    "prob": [("zero", 0.0), ("negative", -0.1), ("above one", 1.5), ("nan", math.nan),
             ("str", "x")],
    "unit": [("negative", -0.1), ("above one", 1.5), ("nan", math.nan), ("str", "x")],
    "callable": [("None", None), ("int", 3)],
    "choice": [("unknown", "no-such-choice"), ("int", 3)],
    "text": [("int", 3), ("empty", ""), ("object", object())],
    "path": [("int", 3), ("object", object())],
}

# (id, function, valid keyword arguments, {argument: kind}); kind "array" derives its bad
# values from the valid one. Every argument a caller may get wrong is listed.
SWEEP = [
    ("sampling.box_muller", sampling.box_muller, dict(u1=[0.2, 0.5], u2=[0.3, 0.9]),
     {"u1": "array", "u2": "array"}),
    ("sampling.marsaglia_polar", sampling.marsaglia_polar, dict(n=5, rng=0),
     {"n": "int1", "rng": "rng"}),
    ("sampling.inverse_cdf_sample", sampling.inverse_cdf_sample,
     dict(ppf=stats.norm.ppf, n=5, rng=0), {"ppf": "callable", "n": "int1", "rng": "rng"}),
    ("sampling.tabulated_inverse_cdf", sampling.tabulated_inverse_cdf,
     dict(grid=np.linspace(0, 1, 5), density=np.ones(5), n=4, rng=0),
     {"grid": "array", "density": "array", "n": "int1", "rng": "rng"}),
    ("sampling.sample_categorical", sampling.sample_categorical,
     dict(probs=[0.2, 0.8], n=4, rng=0), {"probs": "array", "n": "int1", "rng": "rng"}),
    ("sampling.sample_markov_chain", sampling.sample_markov_chain,
     dict(init=MC_P, transition=MC_T, length=3, n=2, rng=0),
     {"init": "array", "transition": "array", "length": "int1", "n": "int1", "rng": "rng"}),
    ("sampling.sample_tree_bn", sampling.sample_tree_bn,
     dict(parents=[-1, 0], cpts=[MC_P, MC_T], n=3, rng=0), {"n": "int1", "rng": "rng"}),
    ("sampling.sample_mvn", sampling.sample_mvn, dict(mean=[0.0, 1.0], cov=np.eye(2), n=3, rng=0),
     {"mean": "array", "cov": "array", "n": "int1", "rng": "rng"}),
    ("sampling.mvn_log_prob", sampling.mvn_log_prob, dict(x=X2, mean=[0.0, 1.0], cov=np.eye(2)),
     {"x": "array", "mean": "array", "cov": "array"}),
    ("sampling.lcg", sampling.lcg, dict(n=3, seed=1, **sampling.MINSTD),
     {"n": "int1", "seed": "int", "a": "int1", "m": "int1"}),
    ("gmm.GaussianMixture", gmm.GaussianMixture,
     dict(weights=[0.3, 0.7], means=[[0.0, 0.0], [1.0, 1.0]], covariances=np.stack([np.eye(2)] * 2)),
     {"weights": "array", "means": "array", "covariances": "array"}),
    ("gmm.GaussianMixture.log_prob", GM.log_prob, dict(x=X2), {"x": "array"}),
    ("gmm.GaussianMixture.responsibilities", GM.responsibilities, dict(x=X2), {"x": "array"}),
    ("gmm.GaussianMixture.sample", GM.sample, dict(n=3, rng=0), {"n": "int1", "rng": "rng"}),
    ("gmm.kmeans", gmm.kmeans, dict(x=X2, n_clusters=2, n_iter=5, rng=0),
     {"x": "array", "n_clusters": "int1", "n_iter": "int", "rng": "rng"}),
    ("gmm.initialize", gmm.initialize, dict(x=X2, n_components=2, method="kmeans", reg=1e-6, rng=0),
     {"x": "array", "n_components": "int1", "method": "choice", "reg": "pos", "rng": "rng"}),
    ("gmm.fit_em", gmm.fit_em, dict(x=X2, n_components=2, max_iter=3, tol=1e-6, reg=1e-6, rng=0),
     {"x": "array", "n_components": "int1", "max_iter": "int1", "tol": "pos", "reg": "pos",
      "rng": "rng", "init": "choice"}),
    ("gmm.fit_gd", gmm.fit_gd,
     dict(x=X2, n_components=2, n_steps=2, lr=0.01, rng=0, show_progress=False),
     {"x": "array", "n_components": "int1", "n_steps": "int1", "lr": "pos", "rng": "rng",
      "batch_size": "int1"}),
    ("numerics.logsumexp", numerics.logsumexp, dict(a=X2), {"a": "array"}),
    ("numerics.sq_dists", numerics.sq_dists, dict(x=X2, y=X2[:3]), {"x": "array", "y": "array"}),
    ("numerics.softplus_inverse", numerics.softplus_inverse, dict(y=[0.5, 2.0]), {"y": "array"}),
    ("numerics.standard_normal_log_prob", numerics.standard_normal_log_prob, dict(z=X2T), {}),
    ("divergences.kl_gaussian", divergences.kl_gaussian,
     dict(mean0=[0.0], cov0=[[1.0]], mean1=[1.0], cov1=[[2.0]]),
     {"mean0": "array", "cov0": "array", "mean1": "array", "cov1": "array"}),
    ("divergences.total_variation", divergences.total_variation, dict(p=[0.5, 0.5], q=[0.2, 0.8]),
     {"p": "array", "q": "array"}),
    ("divergences.wasserstein_1d", divergences.wasserstein_1d, dict(x=X2[:, 0], y=X2[:5, 1]),
     {"x": "array", "y": "array"}),
    ("divergences.sliced_wasserstein", divergences.sliced_wasserstein,
     dict(x=X2, y=X2[:5] + 1, n_projections=4, rng=0),
     {"x": "array", "y": "array", "n_projections": "int1", "rng": "rng"}),
    ("divergences.mmd", divergences.mmd, dict(x=X2, y=X2[:5] + 1, bandwidth=1.0),
     {"x": "array", "y": "array", "bandwidth": "pos"}),
    ("divergences.kl_monte_carlo", divergences.kl_monte_carlo,
     dict(log_p=stats.norm.logpdf, log_q=stats.norm(1).logpdf, samples=X2[:, 0]),
     {"log_p": "callable", "log_q": "callable"}),
    ("data.toy_2d", data.toy_2d, dict(name="moons", n=5, rng=0),
     {"name": "choice", "n": "int1", "rng": "rng"}),
    ("data.load_digits", data.load_digits, dict(split="test"), {"split": "choice"}),
    ("data.checkerboard_density", data.checkerboard_density, dict(x=X2), {"x": "array"}),
    ("baselines.independent_pixels_nll", baselines.independent_pixels_nll,
     dict(x_fit=IMG, x_eval=IMG[:2]), {"x_fit": "array", "x_eval": "array"}),
    ("baselines.independent_pixels_log_prob", baselines.independent_pixels_log_prob,
     dict(x_fit=IMG, x_eval=IMG[:2]), {"x_fit": "array", "x_eval": "array"}),
    ("flows.RealNVP", flows.RealNVP, dict(dim=2, n_layers=1, hidden=4),
     {"dim": "int1", "n_layers": "int1", "hidden": "int1", "scale_bound": "pos"}),
    ("flows.RealNVP.log_prob", FLOW.log_prob, dict(x=X2T), {"x": "array"}),
    ("flows.RealNVP.forward", FLOW.forward, dict(x=X2T), {"x": "array"}),
    ("flows.RealNVP.inverse", FLOW.inverse, dict(z=X2T), {"z": "array"}),
    ("flows.RealNVP.sample", FLOW.sample, dict(n=3, generator=0),
     {"n": "int1", "generator": "gen"}),
    ("flows.Monotone1d.log_prob", MONO.log_prob, dict(x=X2T[:, :1]), {"x": "array"}),
    ("flows.Monotone1d.inverse", MONO.inverse, dict(z=X2T[:, :1], n_iter=5),
     {"z": "array", "n_iter": "int1"}),
    ("flows.Monotone1d.sample", MONO.sample, dict(n=3, generator=0),
     {"n": "int1", "generator": "gen"}),
    ("flows.AffineCoupling.forward", COUPLING.forward, dict(x=X2T), {"x": "array"}),
    ("flows.AffineCoupling", flows.AffineCoupling, dict(mask=[1.0, 0.0], hidden=4),
     {"mask": "array", "hidden": "int1", "scale_bound": "pos"}),
    ("ebm.EnergyMLP.forward", ENERGY.forward, dict(x=X2T), {"x": "array"}),
    ("ebm.energy_grad", ebm.energy_grad, dict(energy=ENERGY, x=X2T), {"x": "array",
                                                                        "energy": "callable"}),
    ("ebm.langevin", ebm.langevin,
     dict(energy=ENERGY, x0=X2T, step_size=0.01, n_steps=2, generator=0),
     {"energy": "callable", "x0": "array", "step_size": "pos", "n_steps": "int1",
      "generator": "gen", "noise_scale": "nonneg", "clip_energy_grad": "pos"}),
    ("ebm.grid_log_prob", ebm.grid_log_prob, dict(energy=ENERGY, x=X2T, n=10),
     {"x": "array", "lim": "pos", "n": "int1"}),
    ("ebm.train_ebm", ebm.train_ebm,
     dict(model=ENERGY, data=X2T, n_steps=1, batch_size=4, langevin_steps=1, buffer_size=8,
          generator=0, show_progress=False),
     {"data": "array", "n_steps": "int1", "batch_size": "int1", "lr": "pos",
      "langevin_steps": "int1", "step_size": "pos", "noise_scale": "nonneg",
      "buffer_size": "int1", "reinit_prob": "unit", "init_lim": "pos", "energy_reg": "nonneg",
      "clip_grad": "pos", "clip_energy_grad": "pos", "generator": "gen"}),
    ("vae.VAE", vae.VAE, dict(latent_dim=2, hidden=(4,)), {"latent_dim": "int1",
                                                             "beta": "nonneg"}),
    ("vae.VAE.encode", VAE_.encode, dict(x=IMG), {"x": "array"}),
    ("vae.VAE.decode", VAE_.decode, dict(z=X2T), {"z": "array"}),
    ("vae.VAE.elbo", VAE_.elbo, dict(x=IMG, generator=0), {"x": "array", "generator": "gen"}),
    ("vae.VAE.loss", VAE_.loss, dict(x=IMG, generator=0), {"x": "array", "generator": "gen"}),
    ("vae.VAE.iwae", VAE_.iwae, dict(x=IMG, k=3, generator=0),
     {"x": "array", "k": "int1", "generator": "gen", "chunk_size": "int1"}),
    ("vae.VAE.sample", VAE_.sample, dict(n=3, generator=0), {"n": "int1", "generator": "gen"}),
    ("vae.VAE.reparameterize", vae.VAE.reparameterize,
     dict(mu=X2T, logvar=X2T, n_samples=2, generator=0),
     {"mu": "array", "logvar": "array", "n_samples": "int1", "generator": "gen"}),
    ("vae.VAE.log_px_quadrature", VAE_.log_px_quadrature, dict(x=IMG[:2], n_grid=5),
     {"x": "array", "n_grid": "int1", "limit": "pos"}),
    ("vae.ConditionalVAE.sample", CVAE.sample, dict(labels=LABELS, generator=0),
     {"labels": "array", "generator": "gen"}),
    ("vae.ConditionalVAE.loss", CVAE.loss, dict(x=IMG, y=LABELS), {"x": "array", "y": "array"}),
    ("vae.Autoencoder.loss", AE.loss, dict(x=IMG), {"x": "array"}),
    ("vae.Autoencoder.decode", AE.decode, dict(z=X2T), {"z": "array"}),
    ("vae.VQVAE.loss", VQ.loss, dict(x=IMG), {"x": "array"}),
    ("vae.VQVAE.codes", VQ.codes, dict(x=IMG), {"x": "array"}),
    ("vae.nearest_distance", vae.nearest_distance, dict(images=IMG[:2], reference=IMG),
     {"images": "array", "reference": "array"}),
    ("vae.perplexity", vae.perplexity, dict(indices=torch.tensor([0, 1, 1]), n_codes=4),
     {"indices": "array", "n_codes": "int1"}),
    ("vae.fit", vae.fit, dict(model=VAE_, images=IMG, n_steps=1, batch_size=4, generator=0,
                              show_progress=False),
     {"images": "array", "n_steps": "int1", "batch_size": "int1", "lr": "pos",
      "generator": "gen"}),
    ("vae.log_marginal_quadrature", vae.log_marginal_quadrature,
     dict(log_likelihood=lambda z: -(z**2).sum(1, keepdim=True), latent_dim=1, n_grid=5),
     {"log_likelihood": "callable", "latent_dim": "int1", "n_grid": "int1", "limit": "pos"}),
    ("ar.sample_logits", ar.sample_logits, dict(logits=LOGITS, generator=0),
     {"logits": "array", "temperature": "pos", "top_k": "int1", "top_p": "prob",
      "generator": "gen"}),
    ("ar.top_k_filter", ar.top_k_filter, dict(logits=LOGITS, k=2), {"logits": "array"}),
    ("ar.ancestral_sample", ar.ancestral_sample,
     dict(conditional_logits=_mask_logits, d=3, n=2, generator=0),
     {"conditional_logits": "callable", "d": "int1", "n": "int1", "generator": "gen"}),
    ("ar.MADE.log_prob", MADE.log_prob, dict(x=BIN4), {"x": "array"}),
    ("ar.MADE.sample", MADE.sample, dict(n=2, generator=0), {"n": "int1", "generator": "gen"}),
    ("ar.PixelCNN.log_prob", PCNN.log_prob, dict(x=IMG.long()), {"x": "array"}),
    ("ar.PixelCNN.sample", PCNN.sample, dict(n=2, shape=(2, 2), generator=0),
     {"n": "int1", "generator": "gen", "temperature": "pos"}),
    ("ar.chain_rule_conditionals", ar.chain_rule_conditionals,
     dict(joint=np.full((2, 2), 0.25)), {"joint": "array"}),
    ("lm.text_windows", lm.text_windows, dict(tokens=TOKENS, length=3),
     {"tokens": "array", "length": "int1"}),
    ("lm.sequence_log_prob", lm.sequence_log_prob, dict(model=CHARLM, tokens=TOKENS),
     {"tokens": "array", "batch_size": "int1"}),
    ("lm.generate", lm.generate, dict(model=CHARLM, vocab=VOCAB, prompt="ab", n_new=3, generator=0),
     {"n_new": "int", "generator": "gen", "temperature": "pos", "top_k": "int1",
      "top_p": "prob"}),
    ("lm.CharTransformer.loss", CHARLM.loss, dict(batch=TOKENS[None]), {"batch": "array"}),
    ("utils.train", utils.train,
     dict(loss_fn=lambda b: (b.sum() * 0 + FLOW.loc.sum()) ** 2, parameters=[FLOW.loc],
          data=X2T, n_steps=1, batch_size=4, generator=0, show_progress=False),
     {"loss_fn": "callable", "data": "array", "n_steps": "int1", "batch_size": "int1",
      "lr": "pos", "clip_grad": "pos", "generator": "gen"}),
    ("ebm.EnergyMLP", ENERGY, dict(x=X2T), {"x": "array"}),
    ("vae.Encoder.forward", VAE_.encoder, dict(x=IMG), {"x": "array"}),
    ("vae.Decoder.forward", VAE_.decoder, dict(z=X2T), {"z": "array"}),
    ("vae.ConditionalVAE.encoder", CVAE.encoder,
     dict(x=IMG, y_onehot=torch.eye(10)[LABELS]), {"x": "array", "y_onehot": "array"}),
    ("vae.VQVAE.decode", VQ.decode, dict(z_q=torch.zeros(2, 2, 4, 4)), {"z_q": "array"}),
    ("vae.VQVAE", vae.VQVAE, dict(n_codes=4, code_dim=2, hidden=(4,)),
     {"n_codes": "int1", "code_dim": "int1", "commitment": "nonneg",
      "dead_threshold": "nonneg", "usage_decay": "unit"}),
    ("ar.MaskedConv2d.forward", PCNN.net[0], dict(x=torch.zeros(1, 2, 4, 4)), {"x": "array"}),
    ("ar.PixelCNN.forward_onehot", PCNN.forward_onehot, dict(h=torch.zeros(1, 2, 4, 4)),
     {"h": "array"}),
    ("utils.progress", utils.progress, dict(iterable=range(2), disable=True), {}),
    ("sampling.topological_order", sampling.topological_order, dict(parents=[-1, 0, 0]),
     {"parents": "array"}),
    ("sampling.tree_bn_marginals", sampling.tree_bn_marginals,
     dict(parents=[-1, 0], cpts=[MC_P, MC_T]), {"parents": "array", "cpts": "choice"}),
    ("sampling.tabulated_cdf", sampling.tabulated_cdf,
     dict(grid=np.linspace(0, 1, 5), density=np.ones(5)), {"grid": "array", "density": "array"}),
    ("sampling.marsaglia_polar_transform", sampling.marsaglia_polar_transform,
     dict(v1=[0.2, -0.5], v2=[0.3, 0.1]), {"v1": "array", "v2": "array"}),
    ("gmm.GaussianMixture.log_joint", GM.log_joint, dict(x=X2), {"x": "array"}),
    ("gmm.GaussianMixture.score", GM.score, dict(x=X2), {"x": "array"}),
    ("ar.joint_from_conditionals", ar.joint_from_conditionals,
     dict(conditionals=ar.chain_rule_conditionals(np.full((2, 2), 0.25)), order=[1, 0]),
     {"order": "array"}),
    ("ar.chain_rule_conditionals-order", ar.chain_rule_conditionals,
     dict(joint=np.full((2, 2), 0.25), order=[1, 0]), {"order": "array"}),
    ("ar.top_p_filter", ar.top_p_filter, dict(logits=LOGITS, p=0.9),
     {"logits": "array", "p": "prob"}),
    ("ar.filtered_probs", ar.filtered_probs, dict(logits=LOGITS, temperature=0.5, top_k=2),
     {"logits": "array", "temperature": "pos", "top_k": "int1", "top_p": "prob"}),
    ("vae.gaussian_kl", vae.gaussian_kl, dict(mu=X2T, logvar=X2T), {"mu": "array",
                                                                      "logvar": "array"}),
    ("vae.gaussian_log_prob", vae.gaussian_log_prob, dict(z=X2T, mu=X2T, logvar=X2T),
     {"z": "array", "mu": "array", "logvar": "array"}),
    ("vae.bernoulli_log_prob", vae.bernoulli_log_prob, dict(logits=IMG - 0.5, x=IMG),
     {"logits": "array", "x": "array"}),
    ("ebm.grid_log_partition", ebm.grid_log_partition, dict(energy=ENERGY, n=10),
     {"energy": "callable", "lim": "pos", "n": "int1"}),
    ("ebm.ula_gaussian_variance", ebm.ula_gaussian_variance, dict(sigma2=1.0, step_size=0.1),
     {"sigma2": "pos", "step_size": "pos"}),
    ("lm.CharVocab", lm.CharVocab, dict(text="abc"), {"text": "text"}),
    ("lm.CharVocab.encode", VOCAB.encode, dict(text="ab"), {"text": "choice"}),
    ("lm.CharVocab.decode", VOCAB.decode, dict(tokens=TOKENS), {"tokens": "array"}),
    ("lm.load_book_text", lm.load_book_text, dict(book_dir=None), {"book_dir": "path"}),
    ("baselines.independent_pixels_probs", baselines.independent_pixels_probs,
     dict(x_fit=IMG), {"x_fit": "array"}),
    ("divergences.kl_monte_carlo-samples", divergences.kl_monte_carlo,
     dict(log_p=stats.norm.logpdf, log_q=stats.norm(1).logpdf, samples=X2[:, 0]),
     {"samples": "array"}),
    ("plot.training_curve", plot.training_curve, dict(history=[3.0, 2.0, 1.0]),
     {"history": "array", "smooth": "int1"}),
    ("plot.image_grid", plot.image_grid, dict(images=IMG), {"images": "array", "nrow": "int1"}),
    ("plot.samples_vs_data", plot.samples_vs_data, dict(data=X2, samples=X2),
     {"data": "array", "samples": "array", "lim": "pos"}),
    ("plot.density_2d", plot.density_2d, dict(log_prob=GM.log_prob, n=10),
     {"log_prob": "callable", "n": "int1", "lim": "pos"}),
]


# ---------------------------------------------------------------------------------------------
# The modules the first table missed (issue 21): diffusion, gan, metrics, mcmc, transport,
# tokenizer, and the remaining public names of the others (found by the discovery below).
# ---------------------------------------------------------------------------------------------

_G = torch.Generator().manual_seed(2)
BETAS = df.linear_betas(10)
NCMLP = df.NoiseConditionalMLP(2, hidden=8, n_layers=1, emb_dim=4)
NCMLP3 = df.NoiseConditionalMLP(2, hidden=8, n_layers=1, emb_dim=4, n_classes=3)
EPS_MODEL = df.DDPMEpsModel(NCMLP, BETAS)
DENOISER = df.EDMDenoiser(NCMLP)
CDENOISER = df.EDMDenoiser(NCMLP3)
SIGMAS = df.edm_sigmas(3, sigma_max=2.0)
NGM = df.NoisedGaussianMixture([0.3, 0.7], [[0.0, 0.0], [2.0, 1.0]],
                               np.stack([np.eye(2), 0.5 * np.eye(2)]))
T_IDX = torch.tensor([0, 3, 9, 5])  # diffusion steps of X2T[:4]
GEN = gan.Generator(latent_dim=2, out_shape=(2,), hidden=(8,))
CRITIC = gan.Critic(in_shape=(2,), hidden=(8,))
V5 = torch.randn(5, generator=_G)  # logits / critic values
MODES, MODE_STD = gan.toy_modes("eight_gaussians")
CLF = metrics.DigitsClassifier(hidden=8, feature_dim=4, generator=0)
DIGITS = torch.randint(0, 17, (12, 1, 8, 8), generator=_G).float() / 16  # load_digits' levels
FEAT = _R.normal(size=(12, 3))
PROBS3 = special.softmax(_R.normal(size=(12, 3)), axis=1)
SLM = transport.StochasticLinearMap([0.4, 0.6], np.stack([np.eye(2), 2 * np.eye(2)]),
                                    [[0.0, 0.0], [1.0, -1.0]])
BPE = tokenizer.BytePairEncoder.train("abab abab abab", 3)
BPE_IDS = BPE.encode("abab ab")
SHARED = project.SharedGenerator()
CONV_VQ = vae.ConvVQVAE(n_codes=4, code_dim=2, hidden=4)
_PRECISION, _RECALL = metrics.prd_from_histograms([0.5, 0.5], [0.2, 0.8], num_angles=5)

_BAD.update({
    # a diffusion step index t in 0..T-1 (T = len(BETAS) = 10): never wrapped or truncated
    "step": [("negative", torch.tensor([-1, 0, 0, 0])), ("fractional", torch.tensor([2.7, 0, 0, 0])),
             ("T", torch.tensor([10, 0, 0, 0])), ("str", "3")],
    "real": [("nan", math.nan), ("inf", math.inf), ("str", "x")],
    "model": [("int", 3), ("str", "x")],  # None: the default model
    "curve5": [("above one", np.full(5, 1.5)), ("negative", np.full(5, -0.5))],  # a PRD curve
    "betas2": [("above one", (0.5, 1.5)), ("negative", (-0.1, 0.9)), ("one value", (0.5,)),
               ("str", "x")],
})

SWEEP += [
    # mcmc
    ("mcmc.mala", mcmc.mala, dict(energy=ENERGY, x0=X2T[:4], step_size=0.1, n_steps=2,
                                  generator=0),
     {"energy": "callable", "x0": "array", "step_size": "pos", "n_steps": "int1",
      "generator": "gen"}),
    ("mcmc.hmc", mcmc.hmc, dict(energy=ENERGY, x0=X2T[:4], step_size=0.1, n_leapfrog=2,
                                n_steps=2, generator=0),
     {"energy": "callable", "x0": "array", "step_size": "pos", "n_leapfrog": "int1",
      "n_steps": "int1", "generator": "gen"}),
    ("mcmc.effective_sample_size", mcmc.effective_sample_size, dict(chain=X2[:, 0]),
     {"chain": "array"}),
    # transport
    ("transport.StochasticLinearMap", transport.StochasticLinearMap,
     dict(weights=[0.4, 0.6], matrices=np.stack([np.eye(2), 2 * np.eye(2)]),
          shifts=[[0.0, 0.0], [1.0, -1.0]]),
     {"weights": "array", "matrices": "array", "shifts": "array"}),
    ("transport.StochasticLinearMap.push", SLM.push, dict(z=X2, rng=0),
     {"z": "array", "rng": "rng"}),
    ("transport.StochasticLinearMap.sample", SLM.sample, dict(n=3, rng=0),
     {"n": "int1", "rng": "rng"}),
    ("transport.StochasticLinearMap.log_prob", SLM.log_prob, dict(x=X2), {"x": "array"}),
    ("transport.monge_map_1d", transport.monge_map_1d,
     dict(x=X2[:, 0], source=stats.norm(), target=stats.expon()),
     {"x": "array", "source": "callable", "target": "callable"}),
    # tokenizer
    ("tokenizer.BytePairEncoder.train", tokenizer.BytePairEncoder.train,
     dict(text="abab abab", n_merges=2), {"text": "path", "n_merges": "int1"}),
    ("tokenizer.BytePairEncoder.encode", BPE.encode, dict(text="abab", n_merges=1),
     {"text": "path", "n_merges": "int"}),
    ("tokenizer.BytePairEncoder.decode", BPE.decode, dict(ids=BPE_IDS), {"ids": "array"}),
    ("tokenizer.BytePairEncoder.token_strings", BPE.token_strings, dict(ids=BPE_IDS),
     {"ids": "array"}),
    ("tokenizer.pair_counts", tokenizer.pair_counts, dict(ids=[1, 2, 1, 2]), {"ids": "array"}),
    ("tokenizer.merge_pair", tokenizer.merge_pair, dict(ids=[1, 2, 1, 2], pair=(1, 2),
                                                        new_id=300),
     {"ids": "array", "pair": "array", "new_id": "int"}),
    # diffusion
    ("df.NoisedGaussianMixture", df.NoisedGaussianMixture,
     dict(weights=[0.3, 0.7], means=[[0.0, 0.0], [2.0, 1.0]],
          covariances=np.stack([np.eye(2), 0.5 * np.eye(2)])),
     {"weights": "array", "means": "array", "covariances": "array"}),
    ("df.NoisedGaussianMixture.log_joint", NGM.log_joint, dict(x=X2, sigma=0.5),
     {"x": "array", "sigma": "nonneg"}),
    ("df.NoisedGaussianMixture.log_prob", NGM.log_prob, dict(x=X2, sigma=0.5),
     {"x": "array", "sigma": "nonneg"}),
    ("df.NoisedGaussianMixture.responsibilities", NGM.responsibilities, dict(x=X2, sigma=0.5),
     {"x": "array", "sigma": "nonneg"}),
    ("df.NoisedGaussianMixture.score", NGM.score, dict(x=X2, sigma=0.5),
     {"x": "array", "sigma": "nonneg"}),
    ("df.NoisedGaussianMixture.denoise", NGM.denoise, dict(x=X2, sigma=0.5),
     {"x": "array", "sigma": "nonneg"}),
    ("df.NoisedGaussianMixture.class_log_prob", NGM.class_log_prob,
     dict(x=X2, sigma=0.5, classes=[1]), {"x": "array", "sigma": "nonneg", "classes": "array"}),
    ("df.NoisedGaussianMixture.subset", NGM.subset, dict(components=[1]),
     {"components": "array"}),
    ("df.NoisedGaussianMixture.sample", NGM.sample, dict(n=3, sigma=0.5, rng=0),
     {"n": "int1", "sigma": "nonneg", "rng": "rng"}),
    ("df.linear_betas", df.linear_betas, dict(T=10),
     {"T": "int1", "beta_start": "prob", "beta_end": "prob"}),
    ("df.alpha_bars", df.alpha_bars, dict(betas=BETAS), {"betas": "array"}),
    ("df.vp_sigmas", df.vp_sigmas, dict(betas=BETAS), {"betas": "array"}),
    ("df.edm_sigmas", df.edm_sigmas, dict(n_steps=3),
     {"n_steps": "int1", "sigma_min": "pos", "sigma_max": "pos", "rho": "pos"}),
    ("df.ddim_timesteps", df.ddim_timesteps, dict(T=10, n_steps=3),
     {"T": "int1", "n_steps": "int1", "spacing": "choice"}),
    ("df.eps_from_denoiser", df.eps_from_denoiser, dict(denoiser=DENOISER, betas=BETAS),
     {"denoiser": "callable", "betas": "array"}),
    ("df.q_sample", df.q_sample, dict(x0=X2T[:4], t=T_IDX, betas=BETAS, generator=0),
     {"x0": "array", "t": "step", "betas": "array", "generator": "gen"}),
    ("df.ddpm_sample", df.ddpm_sample, dict(eps_model=EPS_MODEL, x=X2T[:4], betas=BETAS,
                                            generator=0),
     {"eps_model": "callable", "x": "array", "betas": "array", "variance": "choice",
      "generator": "gen"}),
    ("df.ddim_sample", df.ddim_sample, dict(eps_model=EPS_MODEL, x=X2T[:4], betas=BETAS,
                                            n_steps=3, generator=0),
     {"eps_model": "callable", "x": "array", "betas": "array", "n_steps": "int1",
      "eta": "nonneg", "spacing": "choice", "generator": "gen"}),
    ("df.euler_sample", df.euler_sample, dict(denoiser=DENOISER, x=X2T[:4], sigmas=SIGMAS),
     {"denoiser": "callable", "x": "array", "sigmas": "array"}),
    ("df.heun_sample", df.heun_sample, dict(denoiser=DENOISER, x=X2T[:4], sigmas=SIGMAS,
                                            churn=0.5, generator=0),
     {"denoiser": "callable", "x": "array", "sigmas": "array", "churn": "nonneg",
      "s_noise": "nonneg", "generator": "gen"}),
    ("df.euler_maruyama", df.euler_maruyama, dict(denoiser=DENOISER, x=X2T[:4], sigmas=SIGMAS,
                                                  generator=0),
     {"denoiser": "callable", "x": "array", "sigmas": "array", "generator": "gen"}),
    ("df.langevin_corrector", df.langevin_corrector,
     dict(denoiser=DENOISER, x=X2T[:4], sigma=0.5, n_steps=2, generator=0),
     {"denoiser": "callable", "x": "array", "sigma": "pos", "n_steps": "int1", "snr": "pos",
      "step_size": "pos", "generator": "gen"}),
    ("df.solve_pf_ode", df.solve_pf_ode,
     dict(denoiser=DENOISER, x=X2T[:4], sigma_start=1.0, sigma_end=0.1, rtol=1e-3, atol=1e-3),
     {"denoiser": "callable", "x": "array", "sigma_start": "pos", "sigma_end": "nonneg",
      "rtol": "pos", "atol": "pos"}),
    ("df.pf_ode_log_likelihood", df.pf_ode_log_likelihood,
     dict(denoiser=DENOISER, x=X2T[:4], sigma_min=0.1, sigma_max=2.0, n_steps=3),
     {"denoiser": "callable", "x": "array", "sigma_min": "pos", "sigma_max": "pos",
      "n_steps": "int1"}),
    ("df.NoiseConditionalMLP", df.NoiseConditionalMLP,
     dict(dim=2, hidden=8, n_layers=1, emb_dim=4, n_classes=3),
     {"dim": "int1", "hidden": "int1", "n_layers": "int1", "emb_dim": "int1",
      "n_classes": "int"}),
    ("df.EDMDenoiser", df.EDMDenoiser, dict(net=NCMLP, sigma_data=0.5),
     {"net": "callable", "sigma_data": "pos"}),
    ("df.DDPMEpsModel", df.DDPMEpsModel, dict(net=NCMLP, betas=BETAS),
     {"net": "callable", "betas": "array"}),
    ("df.edm_loss", df.edm_loss, dict(denoiser=CDENOISER, y=X2T[:3],
                                      labels=torch.tensor([0, 1, 2]), p_uncond=0.5, generator=0),
     {"y": "array", "labels": "array", "p_uncond": "unit", "p_mean": "real", "p_std": "pos",
      "generator": "gen"}),
    ("df.ddpm_loss", df.ddpm_loss, dict(eps_model=EPS_MODEL, x0=X2T, betas=BETAS, generator=0),
     {"x0": "array", "betas": "array", "generator": "gen"}),
    ("df.guided_denoiser", df.guided_denoiser, dict(cond=DENOISER, uncond=DENOISER, w=1.0),
     {"cond": "callable", "uncond": "callable", "w": "real"}),
    # gan
    ("gan.Generator", gan.Generator, dict(latent_dim=2, out_shape=(2,), hidden=(8,)),
     {"latent_dim": "int1", "output": "choice", "scale": "pos"}),
    ("gan.Generator.sample", GEN.sample, dict(n=3, generator=0), {"n": "int1", "generator": "gen"}),
    ("gan.Critic", gan.Critic, dict(in_shape=(2,), hidden=(8,)), {"scale": "pos"}),
    ("gan.DigitGenerator", gan.DigitGenerator, dict(latent_dim=2, hidden=(8,)),
     {"latent_dim": "int1"}),
    ("gan.DigitCritic", gan.DigitCritic, dict(hidden=(8,)), {}),
    ("gan.FDivergence.conjugate_of_activation",
     gan.F_DIVERGENCES["kl"].conjugate_of_activation, dict(v=V5), {"v": "array"}),
    ("gan.get_divergence", gan.get_divergence, dict(key="kl", name="key"), {"key": "choice"}),
    ("gan.loss_pair", gan.loss_pair, dict(loss="f_gan", divergence="kl", f_gan_objective="saddle"),
     {"loss": "choice", "divergence": "choice", "f_gan_objective": "choice"}),
    ("gan.clip_weights", gan.clip_weights,
     dict(module=gan.Critic(in_shape=(2,), hidden=(8,)), clip=0.01), {"clip": "pos"}),
    ("gan.critic_gradient_norms", gan.critic_gradient_norms, dict(critic=CRITIC, x=X2T),
     {"critic": "callable", "x": "array"}),
    ("gan.discriminator_loss", gan.discriminator_loss, dict(real_logits=V5, fake_logits=V5[:3]),
     {"real_logits": "array", "fake_logits": "array"}),
    ("gan.generator_loss_saturating", gan.generator_loss_saturating, dict(fake_logits=V5),
     {"fake_logits": "array"}),
    ("gan.generator_loss_nonsaturating", gan.generator_loss_nonsaturating, dict(fake_logits=V5),
     {"fake_logits": "array"}),
    ("gan.wgan_critic_loss", gan.wgan_critic_loss, dict(real_scores=V5, fake_scores=V5[:3]),
     {"real_scores": "array", "fake_scores": "array"}),
    ("gan.wgan_generator_loss", gan.wgan_generator_loss, dict(fake_scores=V5),
     {"fake_scores": "array"}),
    ("gan.f_gan_critic_loss", gan.f_gan_critic_loss,
     dict(real_v=V5, fake_v=V5[:3], divergence="kl"),
     {"real_v": "array", "fake_v": "array", "divergence": "choice"}),
    ("gan.f_gan_generator_loss", gan.f_gan_generator_loss, dict(fake_v=V5, divergence="kl"),
     {"fake_v": "array", "divergence": "choice"}),
    ("gan.variational_bound", gan.variational_bound,
     dict(divergence="kl", real_v=V5, fake_v=V5[:3]),
     {"divergence": "choice", "real_v": "array", "fake_v": "array"}),
    ("gan.gradient_penalty", gan.gradient_penalty,
     dict(critic=CRITIC, real=X2T, fake=X2T + 1, generator=0),
     {"critic": "callable", "real": "array", "fake": "array", "generator": "gen"}),
    ("gan.r1_penalty", gan.r1_penalty, dict(critic=CRITIC, real=X2T),
     {"critic": "callable", "real": "array"}),
    ("gan.mode_metrics", gan.mode_metrics, dict(samples=X2, centers=MODES, std=MODE_STD),
     {"samples": "array", "centers": "array", "std": "pos", "threshold": "pos"}),
    ("gan.between_modes_fraction", gan.between_modes_fraction,
     dict(samples=X2, centers=MODES, std=MODE_STD),
     {"samples": "array", "centers": "array", "std": "pos", "width": "pos"}),
    ("gan.spectral_norm", gan.spectral_norm, dict(weight=torch.randn(3, 2, generator=_G),
                                                  n_iter=3, generator=0),
     {"weight": "array", "n_iter": "int1", "generator": "gen"}),
    ("gan.toy_modes", gan.toy_modes, dict(name="grid25"), {"name": "choice"}),
    ("gan.drs_accept_prob", gan.drs_accept_prob, dict(logits=V5, max_logit=2.0, gamma=0.1),
     {"logits": "array", "max_logit": "real", "gamma": "real", "eps": "pos"}),
    ("gan.estimate_max_logit", gan.estimate_max_logit,
     dict(sample_fn=lambda m: torch.randn(m, 2, generator=_G), logit_fn=lambda x: x.sum(1),
          n_burn_in=10,
          batch_size=4),
     {"sample_fn": "callable", "logit_fn": "callable", "n_burn_in": "int1",
      "batch_size": "int1"}),
    ("gan.drs_sample", gan.drs_sample,
     dict(sample_fn=lambda m: torch.randn(m, 2, generator=_G), logit_fn=lambda x: x.sum(1), n=3,
          max_logit=0.0, batch_size=4, generator=0),
     {"sample_fn": "callable", "logit_fn": "callable", "n": "int1", "max_logit": "real",
      "eps": "pos", "batch_size": "int1", "max_batches": "int1", "generator": "gen"}),
    ("gan.obrs_log_constant", gan.obrs_log_constant, dict(logits=V5, budget=2.0),
     {"logits": "array", "budget": "pos"}),
    ("gan.obrs_accept_prob", gan.obrs_accept_prob, dict(logits=V5, log_constant=-1.0),
     {"logits": "array", "log_constant": "real"}),
    ("gan.obrs_sample", gan.obrs_sample,
     dict(sample_fn=lambda m: torch.randn(m, 2, generator=_G), logit_fn=lambda x: x.sum(1), n=3,
          budget=2.0, n_burn_in=8, batch_size=4, generator=0),
     {"sample_fn": "callable", "logit_fn": "callable", "n": "int1", "budget": "pos",
      "n_burn_in": "int1", "batch_size": "int1", "max_batches": "int1", "generator": "gen"}),
    ("gan.train_gan", gan.train_gan,
     dict(generator_net=gan.Generator(latent_dim=2, out_shape=(2,), hidden=(8,)),
          critic=gan.Critic(in_shape=(2,), hidden=(8,)), data=X2T, n_steps=1, batch_size=4,
          generator=0, show_progress=False),
     {"data": "array", "loss": "choice", "n_steps": "int1", "batch_size": "int1",
      "lr_g": "pos", "lr_d": "pos", "betas": "betas2", "n_critic": "int1",
      "gp_weight": "nonneg", "clip": "pos", "r1_weight": "nonneg", "lr_schedule": "choice",
      "generator": "gen"}),
    # metrics
    ("metrics.DigitsClassifier", metrics.DigitsClassifier,
     dict(hidden=8, feature_dim=4, generator=0),
     {"hidden": "int1", "feature_dim": "int1", "generator": "gen"}),
    ("metrics.DigitsClassifier.features", CLF.features, dict(x=DIGITS), {"x": "array"}),
    ("metrics.DigitsClassifier.probs", CLF.probs, dict(x=DIGITS), {"x": "array"}),
    ("metrics.bits_per_dim", metrics.bits_per_dim,
     dict(log_prob=torch.tensor([-30.0, -40.0]), n_dims=64),
     {"log_prob": "array", "n_dims": "int1"}),
    ("metrics.dequantize_digits", metrics.dequantize_digits, dict(images=DIGITS, rng=0),
     {"images": "array", "rng": "rng"}),
    ("metrics.digits_features", metrics.digits_features, dict(images=DIGITS, model=CLF),
     {"images": "array", "model": "model"}),
    ("metrics.digits_probs", metrics.digits_probs, dict(images=DIGITS, model=CLF),
     {"images": "array", "model": "model"}),
    ("metrics.digits_fid", metrics.digits_fid, dict(images_a=DIGITS, images_b=DIGITS, model=CLF),
     {"images_a": "array", "images_b": "array"}),
    ("metrics.digits_inception_score", metrics.digits_inception_score,
     dict(images=DIGITS, splits=2, model=CLF), {"images": "array", "splits": "int1"}),
    ("metrics.train_digits_classifier", metrics.train_digits_classifier,
     dict(seed=0, n_steps=1, batch_size=8, show_progress=False),
     {"seed": "int", "n_steps": "int1", "batch_size": "int1", "lr": "pos"}),
    ("metrics.digits_classifier", metrics.digits_classifier, dict(seed=0), {"seed": "int"}),
    ("metrics.fid", metrics.fid, dict(features_a=FEAT, features_b=FEAT + 1),
     {"features_a": "array", "features_b": "array"}),
    ("metrics.frechet_distance", metrics.frechet_distance,
     dict(mu1=np.zeros(2), sigma1=np.eye(2), mu2=np.ones(2), sigma2=2 * np.eye(2)),
     {"mu1": "array", "sigma1": "array", "mu2": "array", "sigma2": "array"}),
    ("metrics.gaussian_statistics", metrics.gaussian_statistics, dict(features=FEAT),
     {"features": "array"}),
    ("metrics.sqrtm_psd", metrics.sqrtm_psd, dict(a=np.eye(2)), {"a": "array"}),
    ("metrics.inception_score", metrics.inception_score, dict(probs=PROBS3, splits=2),
     {"probs": "array", "splits": "int1"}),
    ("metrics.kth_neighbour_sq_distances", metrics.kth_neighbour_sq_distances,
     dict(x=FEAT, k=2), {"x": "array", "k": "int1", "block_size": "int1"}),
    ("metrics.nearest_neighbour_distances", metrics.nearest_neighbour_distances,
     dict(x=FEAT, reference=FEAT + 1), {"x": "array", "reference": "array",
                                        "block_size": "int1"}),
    ("metrics.nearest_neighbour_memorisation", metrics.nearest_neighbour_memorisation,
     dict(generated=FEAT, train=FEAT + 1, test=FEAT - 1),
     {"generated": "array", "train": "array", "test": "array", "copy_tol": "nonneg"}),
    ("metrics.prdc", metrics.prdc, dict(real_features=FEAT, fake_features=FEAT + 0.5,
                                        nearest_k=2),
     {"real_features": "array", "fake_features": "array", "nearest_k": "int1",
      "block_size": "int1"}),
    ("metrics.prd_curve", metrics.prd_curve,
     dict(real_features=FEAT, fake_features=FEAT + 0.5, num_clusters=2, num_angles=5,
          num_runs=1, rng=0),
     {"real_features": "array", "fake_features": "array", "num_clusters": "int1",
      "num_angles": "int1", "num_runs": "int1", "rng": "rng"}),
    ("metrics.prd_from_histograms", metrics.prd_from_histograms,
     dict(real_hist=[0.5, 0.5], fake_hist=[0.2, 0.8], num_angles=5),
     {"real_hist": "array", "fake_hist": "array", "num_angles": "int1", "epsilon": "pos"}),
    ("metrics.prd_f_beta", metrics.prd_f_beta, dict(precision=_PRECISION, recall=_RECALL),
     {"precision": "array", "recall": "array", "beta": "pos"}),
    ("metrics.prd_f_beta-range", metrics.prd_f_beta, dict(precision=_PRECISION, recall=_RECALL),
     {"precision": "curve5", "recall": "curve5"}),
    # seeding and validation (the validators: the argument they check is named by `name`)
    ("seeding.derive_seed", seeding.derive_seed, dict(seed=3), {"seed": "int"}),
    ("seeding.rng", seeding.rng, dict(seed=3), {"seed": "int"}),
    ("seeding.generator", seeding.generator, dict(seed=3), {"seed": "int"}),
    ("seeding.manual_seed", seeding.manual_seed, dict(seed=3), {"seed": "int"}),
    ("seeding.seed_everything", seeding.seed_everything, dict(seed=3),
     {"seed": "int", "torch_threads": "int1"}),
    ("validation.as_rng", validation.as_rng, dict(rng=3), {"rng": "rng"}),
    ("validation.as_generator", validation.as_generator, dict(generator=3),
     {"generator": "gen"}),
    ("validation.as_tensor", validation.as_tensor, dict(x=X2T, name="x", shape=(None, 2)),
     {"x": "array"}),
    ("validation.check_array", validation.check_array, dict(x=X2, name="x", ndim=2),
     {"x": "array"}),
    ("validation.check_positive_int", validation.check_positive_int,
     dict(value=3, name="value"), {"value": "int1"}),
    ("validation.check_positive", validation.check_positive, dict(value=3.0, name="value"),
     {"value": "pos"}),
    ("validation.check_nonnegative", validation.check_nonnegative,
     dict(value=3.0, name="value"), {"value": "nonneg"}),
    ("validation.check_finite", validation.check_finite, dict(value=-3.0, name="value"),
     {"value": "real"}),
    ("validation.check_callable", validation.check_callable, dict(value=len, name="value"),
     {"value": "callable"}),
    ("validation.check_probabilities", validation.check_probabilities,
     dict(p=[0.4, 0.6], name="p"), {"p": "array"}),
    ("validation.check_spd", validation.check_spd, dict(cov=np.eye(2), name="cov"),
     {"cov": "array"}),
    ("validation.module_dtype_device", validation.module_dtype_device, dict(module=ENERGY), {}),
    # project (the cheap, in-process names; see SWEEP_EXEMPT for the rest)
    ("project.SharedGenerator.sample", SHARED.sample, dict(n=2, generator=0),
     {"n": "int1", "generator": "gen"}),
    ("project.check_n", project.check_n, dict(n=1000), {"n": "int1"}),
    ("project.check_timeout", project.check_timeout, dict(timeout=1.0), {"timeout": "pos"}),
    ("project.read_history", project.read_history, dict(path=ROOT / "no-such-history.csv"),
     {"path": "path"}),
    ("project.train_baseline", project.train_baseline,
     dict(n_steps=1, seed=0, show_progress=False),
     {"n_steps": "int1", "seed": "int", "beta": "pos"}),
    # the remaining names of the first table's modules
    ("utils.get_device", utils.get_device, dict(prefer_gpu=False), {}),
    ("sampling.lcg_states", sampling.lcg_states, dict(n=3, seed=1, **sampling.MINSTD),
     {"n": "int1", "seed": "int", "a": "int1", "m": "int1"}),
    ("ebm.EnergyMLP-init", ebm.EnergyMLP, dict(dim=2, hidden=4, n_hidden=1),
     {"dim": "int1", "hidden": "int1", "n_hidden": "int1", "out_scale": "pos"}),
    ("ebm.contrastive_divergence_loss", ebm.contrastive_divergence_loss,
     dict(energy=ENERGY, x=X2T, u=X2T + 1, energy_reg=0.1),
     {"energy": "callable", "x": "array", "u": "array", "energy_reg": "nonneg"}),
    ("ebm.grid_points", ebm.grid_points, dict(lim=2.0, n=5), {"lim": "pos", "n": "int1"}),
    ("lm.CharTransformer", lm.CharTransformer,
     dict(vocab_size=5, context=4, d_model=4, n_heads=2, n_layers=1),
     {"vocab_size": "int1", "context": "int1", "d_model": "int1", "n_heads": "int1",
      "n_layers": "int1"}),
    ("ar.MADE", ar.MADE, dict(d=4, hidden=8), {"d": "int1", "hidden": "int1"}),
    ("ar.MaskedConv2d", ar.MaskedConv2d,
     dict(mask_type="A", in_channels=2, out_channels=4, kernel_size=3, padding=1),
     {"mask_type": "choice", "in_channels": "int1", "out_channels": "int1",
      "kernel_size": "int1"}),
    ("ar.PixelCNN", ar.PixelCNN, dict(n_classes=2, hidden=4, n_layers=1, kernel_size=3),
     {"n_classes": "int1", "hidden": "int1", "n_layers": "int", "kernel_size": "int1"}),
    ("flows.Monotone1d", flows.Monotone1d, dict(n_components=3), {"n_components": "int1"}),
    ("flows.AffineCoupling.inverse", COUPLING.inverse, dict(z=X2T), {"z": "array"}),
    ("vae.Encoder", vae.Encoder, dict(out_features=4, hidden=(8,)),
     {"out_features": "int1", "n_classes": "int"}),
    ("vae.Decoder", vae.Decoder, dict(latent_dim=2, hidden=(8,)),
     {"latent_dim": "int1", "n_classes": "int"}),
    ("vae.Autoencoder", vae.Autoencoder, dict(latent_dim=2, hidden=(8,)), {"latent_dim": "int1"}),
    ("vae.Autoencoder.encode", AE.encode, dict(x=IMG), {"x": "array"}),
    ("vae.Autoencoder.reconstruction_error", AE.reconstruction_error, dict(x=IMG),
     {"x": "array"}),
    ("vae.ConditionalVAE", vae.ConditionalVAE, dict(n_classes=3, latent_dim=2, hidden=(8,)),
     {"n_classes": "int1", "latent_dim": "int1", "beta": "nonneg"}),
    ("vae.VAE.elbo_terms", VAE_.elbo_terms, dict(x=IMG, generator=0),
     {"x": "array", "generator": "gen"}),
    ("vae.VAE.reconstruct", VAE_.reconstruct, dict(x=IMG), {"x": "array"}),
    ("vae.VQVAE.encode", VQ.encode, dict(x=IMG), {"x": "array"}),
    ("vae.VQVAE.quantize", VQ.quantize, dict(z_e=torch.zeros(2, 2, 4, 4)), {"z_e": "array"}),
    ("vae.VQVAE.embed", VQ.embed, dict(indices=torch.zeros(2, 4, 4, dtype=torch.long)),
     {"indices": "array"}),
    ("vae.VQVAE.decode_indices", VQ.decode_indices,
     dict(indices=torch.zeros(2, 4, 4, dtype=torch.long)), {"indices": "array"}),
    ("vae.VQVAE.loss_terms", VQ.loss_terms, dict(x=IMG), {"x": "array"}),
    ("vae.VQVAE.reconstruct", VQ.reconstruct, dict(x=IMG), {"x": "array"}),
    ("vae.ConvVQVAE", vae.ConvVQVAE, dict(n_codes=4, code_dim=2, hidden=4),
     {"n_codes": "int1", "code_dim": "int1", "hidden": "int1", "commitment": "nonneg",
      "dead_threshold": "nonneg", "usage_decay": "unit"}),
    ("vae.ConvVQVAE.encode", CONV_VQ.encode, dict(x=IMG), {"x": "array"}),
    ("vae.ConvVQVAE.decode", CONV_VQ.decode, dict(z_q=CONV_VQ.encode(IMG).detach()),
     {"z_q": "array"}),
]


#: Bad values a function accepts by design, with the documented result (checked below).
ACCEPTED = {
    # any shape (..., K) or any number of axes is part of the contract
    ("numerics.logsumexp", "a", "extra-axis"), ("numerics.softplus_inverse", "y", "extra-axis"),
    ("data.checkerboard_density", "x", "extra-axis"), ("vae.VAE.decode", "z", "extra-axis"),
    ("vae.Autoencoder.decode", "z", "extra-axis"), ("vae.perplexity", "indices", "extra-axis"),
    ("vae.Decoder.forward", "z", "extra-axis"),
    ("ar.top_p_filter", "logits", "extra-axis"), ("ar.filtered_probs", "logits", "extra-axis"),
    ("vae.gaussian_log_prob", "z", "extra-axis"), ("vae.gaussian_log_prob", "mu", "extra-axis"),
    ("vae.gaussian_log_prob", "logvar", "extra-axis"),
    ("vae.bernoulli_log_prob", "logits", "extra-axis"),
    ("vae.bernoulli_log_prob", "x", "extra-axis"),
    ("baselines.independent_pixels_probs", "x_fit", "extra-axis"),
    ("ar.sample_logits", "logits", "extra-axis"), ("ar.top_k_filter", "logits", "extra-axis"),
    ("ar.chain_rule_conditionals", "joint", "extra-axis"), ("utils.train", "data", "extra-axis"),
    # LSE of a slice with +inf is +inf (documented), not an error
    ("numerics.logsumexp", "a", "inf"),
    # elementwise on logits of any shape; a weight of any conv layer (out, in, kh, kw)
    ("gan.FDivergence.conjugate_of_activation", "v", "extra-axis"),
    ("gan.spectral_norm", "weight", "extra-axis"),
}


# ---------------------------------------------------------------------------------------------
# Names added since: diffusion's grid TV, flow_matching, the Dirac-GAN, KID and C_T,
# the sandbox's in-process helpers, quality_diversity
# ---------------------------------------------------------------------------------------------

_R2 = np.random.default_rng(5)
NGM1 = df.NoisedGaussianMixture([0.5, 0.5], [[-1.0], [1.0]], np.full((2, 1, 1), 0.25))
MEM_TRAIN = _R2.normal(size=(30, 2))
MEM_TEST = _R2.normal(size=(20, 2))
MEM_GEN = _R2.normal(size=(20, 2))
_FM_VELOCITY = lambda x, t: 0.5 * x  # noqa: E731  (any shape, like a network's)

_BAD.update({
    "mixture": [("int", 3), ("str", "x"), ("gmm.GaussianMixture", GM)],
    "argv": [("str", "python"), ("empty", []), ("int", 3), ("non-str item", ["python", 3])],
    # a valid lr whose spiral outgrows float64 (Dirac-GAN, WGAN losses): named, not a NaN
    "diverging": [("overflow", 10.0)],
})

SWEEP += [
    # diffusion: the grid total variation
    ("df.grid_cell_probabilities", df.grid_cell_probabilities,
     dict(mixture=NGM1, sigma=0.1, bins=4),
     {"mixture": "mixture", "sigma": "nonneg", "bins": "int1", "lim": "pos"}),
    ("df.grid_tv", df.grid_tv, dict(samples=X2, mixture=NGM, bins=4),
     {"samples": "array", "mixture": "mixture", "sigma": "nonneg", "bins": "int1",
      "lim": "pos"}),
    ("df.grid_tv_floor", df.grid_tv_floor,
     dict(mixture=NGM1, n=10, bins=4, n_repeats=2, rng=0),
     {"mixture": "mixture", "n": "int1", "sigma": "nonneg", "bins": "int1", "lim": "pos",
      "n_repeats": "int1", "rng": "rng"}),
    # flow_matching
    ("fm.marginal_log_prob", fm.marginal_log_prob, dict(mixture=NGM, x=X2, t=0.5),
     {"mixture": "mixture", "x": "array", "t": "prob"}),
    ("fm.marginal_log_prob-t", fm.marginal_log_prob,
     dict(mixture=NGM, x=X2T, t=torch.full((20,), 0.5)), {"x": "array", "t": "array"}),
    ("fm.exact_velocity", fm.exact_velocity, dict(mixture=NGM, x=X2, t=0.5),
     {"mixture": "mixture", "x": "array", "t": "prob"}),
    ("fm.exact_velocity-t", fm.exact_velocity, dict(mixture=NGM, x=X2, t=np.full(20, 0.5)),
     {"t": "array"}),
    ("fm.sample_ode", fm.sample_ode,
     dict(velocity=_FM_VELOCITY, x1=X2T[:4], n_steps=3, method="heun"),
     {"velocity": "callable", "x1": "array", "n_steps": "int1", "method": "choice"}),
    ("fm.cfm_loss", fm.cfm_loss, dict(model=_FM_VELOCITY, x0=X2T, generator=0),
     {"model": "callable", "x0": "array", "generator": "gen"}),
    # gan
    ("gan.dirac_gan_trajectory", gan.dirac_gan_trajectory,
     dict(method="alternating", n_steps=3, lr=0.1, reg="r1", loss="wgan", gamma=1.0,
          start=np.array([1.0, 1.0])),
     {"method": "choice", "n_steps": "int1", "lr": "pos", "reg": "choice", "loss": "choice",
      "gamma": "nonneg", "start": "array"}),
    ("gan.dirac_gan_trajectory-overflow", gan.dirac_gan_trajectory,
     dict(method="simultaneous", n_steps=300, lr=0.1, loss="wgan"), {"lr": "diverging"}),
    ("gan.lipschitz_upper_bound", gan.lipschitz_upper_bound, dict(critic=CRITIC),
     {"critic": "model"}),
    # metrics
    ("metrics.mmd2_unbiased", metrics.mmd2_unbiased, dict(x=FEAT, y=FEAT + 1),
     {"x": "array", "y": "array"}),
    ("metrics.kid", metrics.kid,
     dict(real_features=FEAT, fake_features=FEAT + 0.5, n_subsets=3, subset_size=4, rng=0),
     {"real_features": "array", "fake_features": "array", "n_subsets": "int1",
      "subset_size": "int1", "rng": "rng"}),
    ("metrics.memorisation_ct", metrics.memorisation_ct,
     dict(train=MEM_TRAIN, test=MEM_TEST, generated=MEM_GEN, n_cells=2, min_generated=2,
          rng=0),
     {"train": "array", "test": "array", "generated": "array", "n_cells": "int1",
      "min_generated": "int1", "rng": "rng"}),
    # project
    ("project.safe_group_name", project.safe_group_name, dict(name="group-a"),
     {"name": "text"}),
    # sandbox: the helpers that start no process (run's tests: tests/test_project_hostile.py)
    ("sandbox.Limits", sandbox.Limits,
     dict(memory=2**30, processes=8, disk=2**20, open_files=16, output=2**10),
     {"memory": "int1", "processes": "int1", "disk": "int1", "open_files": "int1",
      "output": "int1"}),
    ("sandbox.bwrap_command", sandbox.bwrap_command,
     dict(argv=["python", "-c", "pass"], submission=ROOT, limits=sandbox.Limits()),
     {"argv": "argv", "submission": "path", "limits": "model", "bwrap": "text"}),
    ("sandbox.process_tree", sandbox.process_tree, dict(pid=1), {"pid": "int1"}),
    ("sandbox.sanitise", sandbox.sanitise, dict(text="a\nb", limit=20), {"limit": "int1"}),
]

# quality_diversity
QD_P, QD_Q = np.array([0.5, 0.3, 0.2, 0.0]), np.array([0.1, 0.4, 0.2, 0.3])
_BAD["mixture_spec"] = [  # a mixture, or a tuple (weights, means, covariances)
    ("int", 3), ("str", "x"), ("pair", ([1.0], [[0.0]])),
    ("weights sum 1.1", ([0.5, 0.6], [[0.0], [1.0]], np.ones((2, 1, 1))))]
SWEEP += [
    ("qd.prd_alpha_beta", quality_diversity.prd_alpha_beta,
     dict(p=QD_P, q=QD_Q, lambdas=np.array([0.0, 0.5, 1.0, np.inf])),
     {"p": "array", "q": "array", "lambdas": "array"}),
    ("qd.prd_curve_exact", quality_diversity.prd_curve_exact, dict(p=QD_P, q=QD_Q, n_angles=5),
     {"p": "array", "q": "array", "n_angles": "int1"}),
    ("qd.pr_divergence", quality_diversity.pr_divergence, dict(p=QD_P, q=QD_Q, lam=2.0),
     {"p": "array", "q": "array", "lam": "pos"}),
    ("qd.pr_f_divergence", quality_diversity.pr_f_divergence, dict(lam=2.0), {"lam": "pos"}),
    ("qd.prd_curve_mixtures", quality_diversity.prd_curve_mixtures,
     dict(p_mixture=GM, q_mixture=NGM, n_angles=5, n_samples=40, rng=0),
     {"p_mixture": "mixture_spec", "q_mixture": "mixture_spec", "n_angles": "int1",
      "n_samples": "int1", "rng": "rng"}),
    ("qd.alpha_precision_beta_recall", quality_diversity.alpha_precision_beta_recall,
     dict(real_features=FEAT, fake_features=FEAT + 0.5, n_levels=5, center=np.zeros(3)),
     {"real_features": "array", "fake_features": "array", "n_levels": "int1",
      "center": "array"}),
    ("qd.authenticity", quality_diversity.authenticity,
     dict(real_features=FEAT, fake_features=FEAT + 0.5),
     {"real_features": "array", "fake_features": "array"}),
    ("qd.authenticity-blocked", quality_diversity.authenticity,
     dict(real_features=_R2.normal(size=(12, 9)), fake_features=_R2.normal(size=(5, 9))),
     {"real_features": "array", "fake_features": "array"}),
]

ACCEPTED |= {
    # (n, ...) of any shape: the velocity / model decides
    ("fm.sample_ode", "x1", "extra-axis"), ("fm.cfm_loss", "x0", "extra-axis"),
    # lambda = inf is a slope of the PRD curve (its end point alpha(inf) = Q(supp P))
    ("qd.prd_alpha_beta", "lambdas", "inf"),
}


def _sweep_params():
    for fid, fn, kwargs, kinds in SWEEP:
        for arg, kind in kinds.items():
            bads = (_bad_arrays(kwargs[arg]) if kind == "array"
                    else [(label, value, False) for label, value in _BAD[kind]])
            for label, value, empty_ok in bads:
                ok = empty_ok or (fid, arg, label) in ACCEPTED
                yield pytest.param(fn, kwargs, arg, value, ok, id=f"{fid}-{arg}-{label}")


@pytest.mark.parametrize("fid, fn, kwargs, kinds", [pytest.param(*c, id=c[0]) for c in SWEEP])
def test_valid_call_works(fid, fn, kwargs, kinds):
    fn(**kwargs)  # the reference call of the sweep is itself valid


def _has_nan(out) -> bool:
    if isinstance(out, (tuple, list)):
        return any(_has_nan(o) for o in out)
    if isinstance(out, dict):
        return any(_has_nan(o) for o in out.values())
    if isinstance(out, torch.Tensor):
        return bool(torch.isnan(out.detach()).any()) if out.is_floating_point() else False
    if isinstance(out, (np.ndarray, float, np.floating)):
        return bool(np.isnan(np.asarray(out, dtype=float)).any())
    return False


@pytest.mark.parametrize("fn, kwargs, arg, value, empty_ok", list(_sweep_params()))
def test_bad_argument_is_named(fn, kwargs, arg, value, empty_ok):
    bad = dict(kwargs)
    bad[arg] = value
    try:
        out = fn(**bad)
    except (ValueError, TypeError) as err:
        # A clear error that names the caller's argument ...
        assert arg in str(err), f"the message does not name {arg!r}: {err}"
        return
    # ... or, for an empty input or a shape the contract allows, a NaN-free result.
    assert empty_ok, f"{arg}={value!r:.60} was accepted and returned {type(out).__name__}"
    assert not _has_nan(out)


# ---------------------------------------------------------------------------------------------
# Every public name is swept: discovered, not hand-kept
# ---------------------------------------------------------------------------------------------

#: Modules the discovery skips: the figures (drawn, not computed; a few plot helpers are swept
#: above all the same) and the practicals' check cells (they call a student's function).
_UNSWEPT_MODULES = {"plot", "practicals"}

#: Public names the sweep does not call, each with the reason. Keep it short.
SWEEP_EXEMPT = {
    # result records: built by the package, read by the caller
    "mcmc.MCMCResult": "a result record returned by mala/hmc",
    "metrics.MemorisationTest": "a result record returned by nearest_neighbour_memorisation",
    "gan.FDivergence": "a row of the table gan.F_DIVERGENCES (callers pick one by name)",
    "project.SubmissionError": "an exception class",
    "metrics.CellMemorisationTest": "a result record returned by memorisation_ct",
    "sandbox.Result": "a result record returned by sandbox.run",
    "sandbox.SandboxUnavailable": "an exception class",
    "quality_diversity.PRDCurve": "a result record returned by prd_curve_exact",
    "quality_diversity.MixturePRD": "a result record returned by prd_curve_mixtures",
    "quality_diversity.AlphaBetaCurves": "a result record returned by "
                                         "alpha_precision_beta_recall",
    "quality_diversity.Authenticity": "a result record returned by authenticity",
    # nn.Module forwards: compute bare (CONTRIBUTING, "check at the boundary"); the public
    # entry point that calls them validates
    "autoregressive.MADE.forward": "nn.Module forward, called by the swept MADE.log_prob",
    "autoregressive.PixelCNN.forward": "nn.Module forward, called by the swept PixelCNN.log_prob",
    "diffusion.DDPMEpsModel.forward": "nn.Module forward, called by the swept ddpm_loss and "
                                      "samplers",
    "diffusion.NoiseConditionalMLP.forward": "nn.Module forward, called by EDMDenoiser",
    "diffusion.EDMDenoiser.forward": "nn.Module forward, called by the swept samplers and "
                                     "edm_loss (which check sigmas and labels)",
    "gan.Critic.forward": "nn.Module forward, called by the swept train_gan and losses",
    "gan.Generator.forward": "nn.Module forward, called by the swept Generator.sample",
    "language_model.CharTransformer.forward": "nn.Module forward, called by the swept "
                                              "CharTransformer.loss and generate",
    "metrics.DigitsClassifier.forward": "nn.Module forward, called by the swept "
                                        "DigitsClassifier.probs",
    "normalizing_flows.Monotone1d.forward": "nn.Module forward, called by the swept "
                                            "Monotone1d.log_prob",
    "project.SharedGenerator.forward": "nn.Module forward, called by the swept "
                                       "SharedGenerator.sample",
    "project.SharedGenerator.logits": "the decoder network (its forward's first half), called "
                                      "by the swept SharedGenerator.sample",
    "vae.Autoencoder.forward": "nn.Module forward, called by the swept Autoencoder.loss",
    "vae.VQVAE.forward": "nn.Module forward, called by the swept VQVAE.loss",
    # run a submission file in a subprocess, or write files: tests/test_project.py sends them
    # bad input (test_bad_arguments_are_usage_errors, test_unusable_set_exits_nonzero,
    # test_leaderboard_edge_cases); their n and timeout go through the swept check_n and
    # check_timeout
    "project.draw_samples": "runs a submission in a subprocess (tests/test_project.py)",
    "project.evaluate": "runs a submission in a subprocess (tests/test_project.py)",
    "project.leaderboard": "runs submissions, writes a site (tests/test_project.py)",
    "project.main": "the command line, argparse (tests/test_project.py)",
    "project.write_site": "writes the leaderboard site (tests/test_project.py)",
    "project.compute_metrics": "needs the trained digits classifier and the reference "
                               "features (tests/test_project.py)",
    "sandbox.run": "starts a (sandboxed) process; tests/test_project_hostile.py sends it bad "
                   "arguments (test_sandbox_arguments_are_checked)",
}


def _public_names() -> set[str]:
    """Every public function, class and method of coursekit, as ``module.qualname``.

    A module's public names are its ``__all__`` (or, without one, its names that do not start
    with ``_``) that are callables defined in that module (a re-export is swept at its home).
    A class adds the public methods (static and class methods too, not properties) of its
    MRO within coursekit, named where they are defined (``normalizing_flows._Flow.log_prob``
    for ``RealNVP.log_prob``). A callable without parameters is left out: a caller cannot
    get any argument wrong.
    """
    names = set()
    for info in pkgutil.iter_modules(coursekit.__path__):
        if info.name in _UNSWEPT_MODULES:
            continue
        mod = importlib.import_module(f"coursekit.{info.name}")
        public = getattr(mod, "__all__", None) or [n for n in vars(mod) if not n.startswith("_")]
        for name in public:
            obj = getattr(mod, name)
            if not callable(obj) or getattr(obj, "__module__", None) != mod.__name__:
                continue  # constants, type aliases, names imported into the module
            if _n_params(obj):
                names.add(f"{info.name}.{name}")
            if not inspect.isclass(obj):
                continue
            for klass in obj.__mro__:
                if not klass.__module__.startswith("coursekit."):
                    continue
                for meth, raw in vars(klass).items():
                    if meth.startswith("_") or not isinstance(
                            raw, (types.FunctionType, staticmethod, classmethod)):
                        continue
                    fn = getattr(obj, meth)  # an instance method: unbound, self counted
                    if _n_params(fn) > isinstance(raw, types.FunctionType):
                        names.add(_swept_name(fn))
    return names


def _n_params(fn) -> int:
    """Number of parameters of ``fn`` (a class: of its constructor, ``self`` not counted)."""
    try:
        return len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a builtin without a signature (an exception class)
        return 1


def _swept_name(fn) -> str:
    """``module.qualname`` of the code a sweep entry calls (a model instance: its forward)."""
    if isinstance(fn, torch.nn.Module):
        fn = type(fn).forward
    fn = getattr(fn, "__func__", fn)  # a bound method: its function
    return fn.__module__.removeprefix("coursekit.") + "." + fn.__qualname__


def test_every_public_name_is_swept():
    public = _public_names()
    swept = {_swept_name(fn) for _, fn, _, _ in SWEEP}
    missing = sorted(public - swept - set(SWEEP_EXEMPT))
    assert not missing, f"add a SWEEP entry (or a SWEEP_EXEMPT reason) for: {missing}"
    stale = sorted(set(SWEEP_EXEMPT) - public)
    assert not stale, f"no longer public, remove from SWEEP_EXEMPT: {stale}"
    both = sorted(set(SWEEP_EXEMPT) & swept)
    assert not both, f"swept and exempt at once: {both}"
    assert len(public) > 200  # the discovery itself works (every module imported)


# ---------------------------------------------------------------------------------------------
# 2. Same seed, same numbers
# ---------------------------------------------------------------------------------------------

NUMPY_SAMPLERS = {
    "marsaglia_polar": lambda r: sampling.marsaglia_polar(50, r),
    "inverse_cdf_sample": lambda r: sampling.inverse_cdf_sample(stats.expon.ppf, 20, r),
    "tabulated_inverse_cdf": lambda r: sampling.tabulated_inverse_cdf(
        np.linspace(0, 1, 9), np.ones(9), 20, r),
    "sample_categorical": lambda r: sampling.sample_categorical([0.2, 0.3, 0.5], 30, r),
    "sample_markov_chain": lambda r: sampling.sample_markov_chain(MC_P, MC_T, 5, 4, r),
    "sample_tree_bn": lambda r: sampling.sample_tree_bn([-1, 0], [MC_P, MC_T], 8, r),
    "sample_mvn": lambda r: sampling.sample_mvn([0.0, 1.0], np.eye(2), 10, r),
    "GaussianMixture.sample": lambda r: GM.sample(10, r)[0],
    "kmeans": lambda r: gmm.kmeans(X2, 3, rng=r)[0],
    "initialize": lambda r: gmm.initialize(X2, 3, method="random", rng=r).means,
    "fit_em": lambda r: gmm.fit_em(X2, 2, max_iter=5, rng=r, n_init=2)[0].means,
    "fit_gd": lambda r: gmm.fit_gd(X2, 2, n_steps=3, lr=0.05, batch_size=8, rng=r,
                                   show_progress=False)[0].means,
    "toy_2d": lambda r: data.toy_2d("rings", 20, r),
    "sliced_wasserstein": lambda r: divergences.sliced_wasserstein(X2, X2 + 1, 5, r),
}

TORCH_SAMPLERS = {
    "RealNVP.sample": lambda g: FLOW.sample(4, g),
    "Monotone1d.sample": lambda g: MONO.sample(4, g),
    "VAE.sample": lambda g: VAE_.sample(3, g),
    "ConditionalVAE.sample": lambda g: CVAE.sample([1, 2], g),
    "VAE.reparameterize": lambda g: vae.VAE.reparameterize(X2T, X2T, 2, g),
    "VAE.elbo": lambda g: VAE_.elbo(IMG, generator=g),
    "VAE.iwae": lambda g: VAE_.iwae(IMG, 3, generator=g),
    "sample_logits": lambda g: ar.sample_logits(LOGITS.repeat(10, 1), generator=g),
    "ancestral_sample": lambda g: ar.ancestral_sample(_mask_logits, 4, 5, generator=g),
    "MADE.sample": lambda g: MADE.sample(5, generator=g),
    "PixelCNN.sample": lambda g: PCNN.sample(2, (3, 3), g),
    "generate": lambda g: lm.generate(CHARLM, VOCAB, "ab", 10, generator=g),
    "langevin": lambda g: ebm.langevin(ENERGY, X2T, 0.01, 3, generator=g),
    "train_ebm": lambda g: _fresh_train_ebm(g),
    "vae.fit": lambda g: _fresh_vae_fit(g),
    "vae.fit(VQVAE)": lambda g: _fresh_vq_fit(g),
    "utils.train": lambda g: _fresh_train(g),
}


def _fresh_train_ebm(g):
    model = copy.deepcopy(ENERGY)
    hist = ebm.train_ebm(model, X2T, n_steps=3, batch_size=8, langevin_steps=2, buffer_size=16,
                         generator=g, show_progress=False)
    return torch.tensor(hist["loss"])


def _fresh_vae_fit(g):
    model = copy.deepcopy(VAE_)
    return torch.tensor(vae.fit(model, IMG, n_steps=3, batch_size=4, generator=g,
                                show_progress=False))


def _fresh_vq_fit(g):
    # dead_threshold=1: every step re-initialises codes, with random picks from the generator
    model = copy.deepcopy(VQ_RESET)
    vae.fit(model, IMG, n_steps=3, batch_size=4, generator=g, show_progress=False)
    return model.codebook.detach().clone()


def _fresh_train(g):
    w = torch.nn.Parameter(torch.zeros(2))
    return torch.tensor(utils.train(lambda b: ((b - w) ** 2).sum(), [w], X2T, n_steps=4,
                                    batch_size=3, generator=g, show_progress=False))


def _equal(a, b) -> bool:
    if isinstance(a, str):
        return a == b
    return np.array_equal(np.asarray(torch.as_tensor(a).detach()), np.asarray(torch.as_tensor(b).detach()))


@pytest.mark.parametrize("name", sorted(NUMPY_SAMPLERS))
def test_numpy_same_seed_same_numbers(name):
    f = NUMPY_SAMPLERS[name]
    assert _equal(f(7), f(7))
    assert _equal(f(7), f(np.random.default_rng(7)))  # an int seed means default_rng(seed)
    assert not _equal(f(7), f(8)) or name in ("kmeans", "fit_em")  # (optima may coincide)
    seeding.seed_everything(3)
    a = f(None)
    seeding.seed_everything(3)
    assert _equal(a, f(None))  # None: drawn from the state seed_everything seeds
    # Given its own seed, nothing touches NumPy's global state.
    state = np.random.get_state()[1].copy()  # noqa: NPY002 (the global state is what is checked)
    f(7)
    assert np.array_equal(np.random.get_state()[1], state)  # noqa: NPY002
    with pytest.raises(TypeError, match="rng"):
        f(torch.Generator())


@pytest.mark.parametrize("name", sorted(TORCH_SAMPLERS))
def test_torch_same_seed_same_numbers(name):
    f = TORCH_SAMPLERS[name]
    assert _equal(f(7), f(7))
    assert _equal(f(7), f(torch.Generator().manual_seed(7)))
    seeding.seed_everything(3)
    a = f(None)
    seeding.seed_everything(3)
    assert _equal(a, f(None))
    # Given its own seed, nothing touches torch's global generator (vae.fit used to reseed it).
    state = torch.random.get_rng_state()
    f(7)
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(TypeError, match="generator"):
        f(np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------
# 3. The NumPy / torch boundary
# ---------------------------------------------------------------------------------------------


def test_torch_models_take_numpy_and_any_float_dtype():
    moons = data.toy_2d("moons", 10, rng=0)  # float64 NumPy, the book's natural path
    ref = FLOW.log_prob(torch.from_numpy(moons).float())
    torch.testing.assert_close(FLOW.log_prob(moons), ref)
    torch.testing.assert_close(FLOW.log_prob(torch.from_numpy(moons)), ref)
    torch.testing.assert_close(ENERGY(moons), ENERGY(torch.from_numpy(moons).float()))
    mu, _ = VAE_.encode(IMG.double())
    assert mu.dtype == torch.float32
    torch.testing.assert_close(MADE.log_prob(BIN4.numpy().astype(np.float64)), MADE.log_prob(BIN4))
    hist = ebm.train_ebm(copy.deepcopy(ENERGY), moons, n_steps=1, batch_size=4, langevin_steps=1,
                         buffer_size=8, generator=0, show_progress=False)
    assert len(hist["loss"]) == 1


def test_numpy_code_takes_tensors_that_require_grad():
    t = X2T.clone().requires_grad_(True)
    np.testing.assert_allclose(GM.log_prob(t), GM.log_prob(X2T.double().numpy()), rtol=1e-6)
    assert divergences.mmd(t, X2T + 1) == pytest.approx(divergences.mmd(X2T.numpy(), X2T.numpy() + 1))
    assert numerics.logsumexp(t) is not None


# ---------------------------------------------------------------------------------------------
# 4. Numerics at the edges, against independent references
# ---------------------------------------------------------------------------------------------


def test_sq_dists_is_exact_for_shifted_data():
    x, y = _R.normal(size=(30, 3)), _R.normal(size=(7, 3))
    ref = cdist(x, y, "sqeuclidean")
    np.testing.assert_allclose(numerics.sq_dists(x + 3e8, y + 3e8), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(numerics.sq_dists(x, y), ref, rtol=1e-12, atol=1e-12)
    assert np.all(np.diag(numerics.sq_dists(x)) == 0)


def test_kmeans_far_from_the_origin_gives_the_same_clusters():
    x = np.concatenate([_R.normal(size=(50, 2)), _R.normal(size=(50, 2)) + 6])
    c0, l0 = gmm.kmeans(x, 2, rng=1)
    c1, l1 = gmm.kmeans(x + 3e8, 2, rng=1)
    assert np.array_equal(l0, l1)
    np.testing.assert_allclose(c1 - 3e8, c0, atol=1e-6)


def _mmd_dense(x, y, h):  # the textbook U-statistic with scipy's distances
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * h * h))
    kxx, kyy = k(x, x), k(y, y)
    n, m = len(x), len(y)
    return ((kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1))
            - 2 * k(x, y).mean())


def test_mmd_matches_dense_reference_shifted_and_blockwise(monkeypatch):
    x, y = _R.normal(size=(300, 2)), _R.normal(size=(250, 2)) + 0.3
    ref = _mmd_dense(x, y, 0.8)
    monkeypatch.setattr(divergences, "MMD_BLOCK", 64)  # several blocks, ragged last one
    assert divergences.mmd(x, y, 0.8) == pytest.approx(ref, rel=1e-9)
    assert divergences.mmd(x + 1e6, y + 1e6, 0.8) == pytest.approx(ref, rel=1e-6)
    biased = divergences.mmd(x, y, 0.8, unbiased=False)
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * 0.64))
    assert biased == pytest.approx(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean(), rel=1e-9)


def test_mmd_memory_is_linear_in_n():
    x, y = _R.normal(size=(6000, 2)), _R.normal(size=(6000, 2))
    tracemalloc.start()
    divergences.mmd(x, y, 1.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Dense: three 6000 x 6000 float64 matrices = 864 MB; blocks of 512 rows: ~25 MB each.
    assert peak < 120e6, peak


def test_fit_em_is_scale_free_and_reseeds_empty_components():
    x = np.concatenate([_R.normal(size=(100, 2)) * 0.3, _R.normal(size=(100, 2)) * 0.3 + 3])
    a, _ = gmm.fit_em(x, 2, rng=0)
    b, _ = gmm.fit_em(1e-5 * x, 2, rng=0)
    np.testing.assert_allclose(np.sort(b.means, 0), 1e-5 * np.sort(a.means, 0), rtol=1e-6)
    # A start whose second component is far from every point gets no responsibility: it is
    # re-seeded on a data point instead of collapsing to the origin.
    far = gmm.GaussianMixture([0.5, 0.5], [[1.5, 1.5], [1e3, 1e3]], np.stack([np.eye(2)] * 2))
    m, hist = gmm.fit_em(x + 10, 2, init=far, max_iter=50)
    assert np.all(np.isfinite(hist))
    assert np.min(cdist(m.means, x + 10).min(1)) < 1.0  # both means sit on the data
    assert np.linalg.norm(m.means[0] - m.means[1]) > 1.0


def test_probability_tolerance_fits_the_dtype():
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        p = torch.softmax(3 * torch.randn(10, generator=g), 0)  # float32: sums to 1 +- 1e-7
        sampling.sample_categorical(p.numpy(), 2, 0)
        gmm.GaussianMixture(p.numpy(), np.zeros((10, 1)), np.ones((10, 1, 1)))
    with pytest.raises(ValueError, match="sum to 1"):
        sampling.sample_categorical(np.array([0.5, 0.5 + 1e-6]), 2, 0)  # float64: too far


def test_softplus_inverse_is_stable():
    y = np.array([1e-10, 1e-3, 1.0, 19.9, 20.1, 50.0, 800.0])
    a = numerics.softplus_inverse(y)
    np.testing.assert_allclose(np.logaddexp(0.0, a), y, rtol=1e-12)  # softplus(a) = y
    assert np.all(np.isfinite(a))


def test_logsumexp_and_normal_log_prob_match_references():
    a = _R.normal(size=(4, 5)) * 300
    np.testing.assert_allclose(numerics.logsumexp(a, axis=1), special.logsumexp(a, axis=1),
                               rtol=1e-14)
    assert gmm.logsumexp is numerics.logsumexp
    z = torch.randn(6, 3, dtype=torch.float64)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(numerics.standard_normal_log_prob(z), ref)
    assert numerics.LOG_2PI == pytest.approx(math.log(2 * math.pi), rel=1e-16)


def test_one_independent_pixel_baseline():
    x_fit, x_eval = IMG, (torch.rand(4, 1, 8, 8) > 0.3).float()
    counts = x_fit.flatten(1).sum(0).double().numpy()
    p = (counts + 1) / (len(x_fit) + 2)  # add-one smoothing, the documented choice
    ref = stats.bernoulli(p).logpmf(x_eval.flatten(1).numpy()).sum(1)
    np.testing.assert_allclose(baselines.independent_pixels_log_prob(x_fit, x_eval), ref,
                               rtol=1e-12)
    assert baselines.independent_pixels_nll(x_fit, x_eval) == pytest.approx(-ref.mean())


def test_pr_divergence_does_not_cancel_at_large_lambda():
    # D_lambda -> 1 - Q(supp P) = 0.3 as lambda -> inf (the closed form of the frontier's end)
    for lam in (1e8, 1e16, 1e20):
        assert quality_diversity.pr_divergence(QD_P, QD_Q, lam) == pytest.approx(0.3, rel=1e-12)
    assert quality_diversity.pr_divergence(QD_P, QD_Q, 1e-20) == 0.0  # every q_w > lambda p_w


def test_clip_arguments_are_validated():
    for bad in (-1.0, 0.0):
        with pytest.raises(ValueError, match="clip_grad"):
            utils.train(lambda: FLOW.loc.sum() ** 2, [FLOW.loc], n_steps=1, clip_grad=bad)
        with pytest.raises(ValueError, match="clip_grad"):
            ebm.train_ebm(ENERGY, X2T, n_steps=1, clip_grad=bad, show_progress=False)
        with pytest.raises(ValueError, match="clip_energy_grad"):
            ebm.langevin(ENERGY, X2T, 0.1, 1, clip_energy_grad=bad)


# ---------------------------------------------------------------------------------------------
# 5. Packaging and tooling
# ---------------------------------------------------------------------------------------------

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: import name -> distribution name, where they differ
_DIST = {"ot": "pot", "sklearn": "scikit-learn", "yaml": "pyyaml", "myst_nb": "myst-nb",
         "jupyter_client": "jupyter-client"}


def _dist_names(requirements) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def _top_imports(code: str) -> set[str]:
    mods = set()
    for line in code.splitlines():
        m = re.match(r"\s*(?:import|from)\s+([A-Za-z_][A-Za-z0-9_]*)", line)
        if m and not line.lstrip().startswith(("%", "!")):
            mods.add(m.group(1))
    return mods


#: Modules every Jupyter kernel (Colab's included) has: they need no declaration.
_KERNEL = {"IPython", "ipykernel"}


def _third_party(mods: set[str]) -> set[str]:
    return {m for m in mods if m not in sys.stdlib_module_names
            and m not in ("coursekit", "__future__") and m not in _KERNEL
            and not (ROOT / "tools" / f"{m}.py").exists()}  # the repository's own tools/


def test_every_notebook_import_is_installed_by_the_colab_cell():
    project = PYPROJECT["project"]
    installed = _dist_names(project["dependencies"]) | _dist_names(
        project["optional-dependencies"]["notebooks"])
    missing = {}
    for path in glob.glob(str(ROOT / "book" / "**" / "*.ipynb"), recursive=True):
        cells = json.loads(Path(path).read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for mod in _third_party(_top_imports(code)):
            if _DIST.get(mod, mod).lower() not in installed:
                missing.setdefault(mod, []).append(Path(path).name)
    assert not missing, f"add to the package dependencies or the notebooks extra: {missing}"


def test_test_extra_lists_everything_the_tests_import():
    project = PYPROJECT["project"]
    installed = _dist_names(project["dependencies"]) | _dist_names(
        project["optional-dependencies"]["test"])
    missing = {}
    for path in (ROOT / "tests").glob("*.py"):
        tree = ast.parse(path.read_text())
        mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
        mods |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
        for mod in _third_party(mods):
            if _DIST.get(mod, mod).lower() not in installed:
                missing.setdefault(mod, []).append(path.name)
    assert not missing, f"add to the test extra of pyproject.toml: {missing}"


def test_version_is_defined_once():
    assert "version" not in PYPROJECT["project"]
    assert "version" in PYPROJECT["project"]["dynamic"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "coursekit.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+", coursekit.__version__)


def test_corpus_is_package_data():
    spec = PYPROJECT["tool"]["setuptools"]
    assert "coursekit.corpus" in spec["packages"]
    assert "*.txt" in spec["package-data"]["coursekit.corpus"]
    text = lm.load_corpus()
    assert text == (ROOT / "coursekit" / "corpus" / "book_text.txt").read_text(encoding="utf-8")
    assert lm.load_book_text(None) == text and len(text) > 1000
    VOCAB_ALL = lm.CharVocab(text)
    assert VOCAB_ALL.decode(VOCAB_ALL.encode(text[:200])) == text[:200]
    # one home: the old names are gone from autoregressive
    assert not hasattr(ar, "CharVocab") and not hasattr(ar, "FALLBACK_TEXT")


def test_progress_bar_extension_is_still_needed():
    # myst-nb's own merge keeps every tqdm redraw as a line; the extension keeps the last.
    render = pytest.importorskip("myst_nb.core.render")
    spec = importlib.util.spec_from_file_location("progress_bars",
                                                  ROOT / "book" / "_ext" / "progress_bars.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    outs = [{"output_type": "stream", "name": "stderr", "text": t}
            for t in ("\r  0%|   | 0/3", "\r 33%|#  | 1/3", "\r100%|###| 3/3\n")]
    theirs = render.coalesce_streams(copy.deepcopy(outs))[0]["text"]
    ours = ext.coalesce_streams(copy.deepcopy(outs))[0]["text"]
    assert ours.strip() == "100%|###| 3/3"
    assert theirs.count("\n") > 1, "myst-nb now merges redraws: remove book/_ext/progress_bars.py"


def test_plot_import_keeps_matplotlib_settings():
    import subprocess

    code = ("import matplotlib as mpl; b = dict(mpl.rcParams); import coursekit.plot; "
            "assert dict(mpl.rcParams) == b")
    subprocess.run([sys.executable, "-c", code], check=True)


#: Notebooks whose owners still have to add ``plot.use_style()`` (remove each when done).
_STYLE_PENDING: set[str] = set()


def test_notebooks_that_plot_call_use_style():
    # Importing coursekit.plot changes no global setting, so each chapter asks for the style.
    missing = []
    for path in sorted(glob.glob(str(ROOT / "book" / "**" / "*.ipynb"), recursive=True)):
        cells = json.loads(Path(path).read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        uses_plot = re.search(r"^\s*from coursekit import .*\bplot\b", code, re.M)
        if uses_plot and "plot.use_style()" not in code and Path(path).name not in _STYLE_PENDING:
            missing.append(Path(path).name)
    assert not missing, f"add plot.use_style() after the imports of: {missing}"
