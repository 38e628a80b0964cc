"""Bad input to the networks' forward methods that the conventions sweep exempts (issue 21).

The sweep in test_conventions.py exempts ``forward`` methods (they are called by swept
functions); these tests cover the inputs that a student can still hand them directly and
that used to give NaN or a silently reinterpreted answer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coursekit import diffusion as df


@pytest.mark.parametrize("sigma", [float("nan"), float("inf"), -1.0, 0.0,
                                   [1.0, float("nan"), 1.0, 1.0]])
def test_edm_denoiser_rejects_non_finite_or_non_positive_sigma(sigma):
    denoiser = df.EDMDenoiser(df.NoiseConditionalMLP(2, hidden=8))
    with pytest.raises(ValueError, match="sigma"):
        denoiser(torch.zeros(4, 2), torch.as_tensor(sigma))


def test_edm_denoiser_accepts_positive_sigma():
    denoiser = df.EDMDenoiser(df.NoiseConditionalMLP(2, hidden=8))
    out = denoiser(torch.zeros(4, 2), torch.tensor([0.01, 1.0, 80.0, 1e-3]))
    assert out.shape == (4, 2) and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("label", [
    torch.tensor([0.5, 1.0, 2.0, 0.0]),   # float: would be truncated to 0
    np.array([0.0, 1.0, 2.0, 1.0]),       # float array, even with integral values
    torch.tensor([0, -1, 2, 0]),           # negative index
    torch.tensor([0, 1, 4, 0]),            # beyond the "no label" index 3
    torch.tensor([0, 1, 2]),               # wrong length
])
def test_noise_conditional_mlp_rejects_bad_labels(label):
    net = df.NoiseConditionalMLP(2, hidden=8, n_classes=3)
    with pytest.raises(ValueError, match="label"):
        net(torch.zeros(4, 2), 0.5, label)


def test_noise_conditional_mlp_accepts_classes_and_the_null_label():
    net = df.NoiseConditionalMLP(2, hidden=8, n_classes=3)
    a = net(torch.zeros(4, 2), 0.5, torch.tensor([0, 1, 2, 3]))  # 3 = "no label"
    b = net(torch.zeros(4, 2), 0.5)                                # None = "no label"
    assert torch.equal(a[3], b[3])


# ------------------------------------------------------------ far values and degenerate data


def test_mixture_far_from_its_means_is_an_error_not_nan():
    from coursekit import gmm

    mix = gmm.GaussianMixture(np.array([0.5, 0.5]), np.array([[0.0, 0.0], [3.0, 3.0]]),
                              np.stack([np.eye(2)] * 2))
    x = np.array([[1e200, 0.0]])
    for method in (mix.log_prob, mix.responsibilities, mix.log_joint):
        with pytest.raises(ValueError, match="x: values up to"):
            method(x)
    # far but representable: finite responsibilities that sum to one
    # far but representable: finite responsibilities whose rows sum to one (at 1e12 the two
    # log joints agree to rounding, and exp(a - LSE) alone gave rows summing to 2)
    for far in ([1e100, 1e100], [1e12, -0.999999e12]):
        r = mix.responsibilities(np.array([far]))
        assert np.all(np.isfinite(r)) and np.allclose(r.sum(1), 1.0, rtol=0, atol=1e-12)


def test_fit_em_rejects_data_without_features():
    from coursekit import gmm

    with pytest.raises(ValueError, match="at least one feature"):
        gmm.fit_em(np.zeros((10, 0)), 2)


def test_tabulated_cdf_is_scale_free_even_at_huge_densities():
    from coursekit import sampling

    grid = np.linspace(0.0, 1.0, 11)
    shape = 1.0 + grid**2
    ref = sampling.tabulated_cdf(grid, shape)
    for scale in (1e-300, 1.0, 1e300 / shape.max() * 1.7):
        np.testing.assert_allclose(sampling.tabulated_cdf(grid, scale * shape), ref, rtol=1e-12)


# ------------------------------------------------------------ numbers typed as text, tails


@pytest.mark.parametrize("value", ["0.1", b"0.1", "nan"])
def test_numbers_as_text_are_refused(value):
    from coursekit import ebm
    from coursekit.validation import check_finite, check_nonnegative, check_positive

    for check in (check_positive, check_nonnegative, check_finite):
        with pytest.raises(ValueError, match="step: expected"):
            check(value, "step")
    with pytest.raises(ValueError, match="step_size"):
        ebm.langevin(lambda x: (x**2).sum(1), torch.zeros(3, 2), value, 5)


def test_monge_map_beyond_the_resolved_tail_is_an_error_not_inf():
    from scipy import stats

    from coursekit import transport

    source, target = stats.norm(), stats.norm(2.0, 3.0)
    x = np.array([-37.0, 0.5, 37.0])   # inside: 1 - F and F keep their digits
    np.testing.assert_allclose(transport.monge_map_1d(x, source, target), 2.0 + 3.0 * x,
                               rtol=1e-9)
    for far in (40.0, -40.0):
        with pytest.raises(ValueError, match="beyond the source's tail"):
            transport.monge_map_1d(np.array([0.0, far]), source, target)


@pytest.mark.parametrize("rho", [0.005, 0.5, 7.0, 300.0])
def test_edm_sigmas_finite_and_decreasing_for_any_rho(rho):
    s = df.edm_sigmas(12, rho=rho)
    assert bool(torch.isfinite(s).all()) and bool((s[1:] < s[:-1]).all())
    assert s[0].item() == 80.0 and s[-2].item() == 0.002 and s[-1].item() == 0.0
    # eq. 5 as written, where it does not overflow (it cancels near sigma_min: rtol 1e-9)
    i = torch.arange(12, dtype=torch.float64)
    if rho >= 0.5:
        ref = (80.0 ** (1 / rho) + i / 11 * (0.002 ** (1 / rho) - 80.0 ** (1 / rho))) ** rho
        torch.testing.assert_close(s[1:-2], ref[1:-1], rtol=1e-9, atol=0)  # endpoints exact
