"""Tests of coursekit.autoregressive: chain rule, causality, samplers, likelihoods, validation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Bernoulli, Categorical

from coursekit import autoregressive as ar
from coursekit import baselines, metrics
from coursekit import language_model as lm

# ----------------------------------------------------------------------------- chain rule


@pytest.mark.parametrize("order", [None, [2, 0, 1], [1, 2, 0]])
def test_chain_rule_reproduces_the_joint(order):
    rng = np.random.default_rng(0)
    joint = rng.random((2, 3, 4))
    joint /= joint.sum()
    conds = ar.chain_rule_conditionals(joint, order)
    for c in conds:  # each factor is a conditional distribution
        np.testing.assert_allclose(c.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ar.joint_from_conditionals(conds, order), joint, rtol=1e-12)


def test_chain_rule_with_zero_mass_prefix():
    joint = np.array([[0.5, 0.5], [0.0, 0.0]])
    conds = ar.chain_rule_conditionals(joint)
    assert np.all(np.isfinite(conds[1]))
    np.testing.assert_allclose(ar.joint_from_conditionals(conds), joint, atol=0)


def test_chain_rule_bad_input():
    with pytest.raises(ValueError, match="sum to 1"):
        ar.chain_rule_conditionals(np.ones((2, 2)))
    with pytest.raises(ValueError, match="permutation"):
        ar.chain_rule_conditionals(np.full((2, 2), 0.25), order=[0, 0])


def test_ancestral_sampling_matches_the_joint():
    rng = np.random.default_rng(1)
    joint = rng.random((2, 3, 2))
    joint /= joint.sum()
    conds = [torch.from_numpy(c) for c in ar.chain_rule_conditionals(joint)]

    def cond(x, i):
        table = conds[i][tuple(x[:, j] for j in range(i))] if i else conds[0].expand(len(x), -1)
        return table.log()

    n = 60_000
    x = ar.ancestral_sample(cond, 3, n, generator=torch.Generator().manual_seed(0))
    counts = np.zeros(joint.shape)
    np.add.at(counts, tuple(x[:, j].numpy() for j in range(3)), 1)
    # chi-square goodness of fit at a fixed seed: p > 1e-3 unless the sampler is wrong
    assert stats.chisquare(counts.ravel(), n * joint.ravel()).pvalue > 1e-3


# ----------------------------------------------------------------------------- sample_logits


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.tensor([[0.1, 2.0, -1.0, 3.0, 0.5], [5.0, 4.0, 3.0, 2.0, 1.0]])
    out = ar.top_k_filter(logits, 2)
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False],
                                            [True, True, False, False, False]]
    assert torch.equal(out[torch.isfinite(out)], logits[torch.isfinite(out)])
    assert torch.equal(ar.top_k_filter(logits, 10), logits)


def test_top_k_never_samples_outside_the_k_largest():
    logits = torch.randn(200, 30, generator=torch.Generator().manual_seed(0))
    draws = ar.sample_logits(logits.repeat(50, 1), top_k=3, generator=torch.Generator().manual_seed(1))
    top3 = torch.topk(logits, 3).indices.repeat(50, 1)
    assert (draws[:, None] == top3).any(dim=1).all()


def _brute_force_nucleus(probs: np.ndarray, p: float) -> set[int]:
    """The smallest subset of tokens with mass >= p, by trying every subset by size."""
    k = len(probs)
    for size in range(1, k + 1):
        best = max(itertools.combinations(range(k), size), key=lambda s: probs[list(s)].sum())
        if probs[list(best)].sum() >= p:
            return set(best)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.61, 0.8, 0.95, 0.999, 1.0])
def test_top_p_kept_set_is_the_smallest_with_mass_p(p):
    probs = np.array([0.4, 0.05, 0.2, 0.15, 0.12, 0.08])  # no ties, hand-made
    out = ar.top_p_filter(torch.tensor(np.log(probs)), p)
    kept = set(torch.nonzero(torch.isfinite(out)).ravel().tolist())
    assert kept == _brute_force_nucleus(probs, p)
    assert probs[list(kept)].sum() >= p - 1e-12


def test_top_p_hand_examples():
    probs = torch.tensor([0.5, 0.3, 0.2])
    assert torch.isfinite(ar.top_p_filter(probs.log(), 0.5)).tolist() == [True, False, False]
    assert torch.isfinite(ar.top_p_filter(probs.log(), 0.51)).tolist() == [True, True, False]
    assert torch.isfinite(ar.top_p_filter(probs.log(), 0.81)).tolist() == [True, True, True]


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_temperature_matches_categorical(temperature):
    logits = torch.tensor([1.0, -0.5, 2.0, 0.0, 0.7])
    ref = Categorical(logits=logits / temperature)
    probs = ar.filtered_probs(logits, temperature)
    torch.testing.assert_close(probs, ref.probs, rtol=1e-6, atol=1e-7)
    n = 50_000
    draws = ar.sample_logits(logits.expand(n, -1), temperature, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=5).numpy()
    expected = ref.probs.double().numpy()
    assert stats.chisquare(counts, n * expected / expected.sum()).pvalue > 1e-3


def test_small_temperature_is_greedy():
    logits = torch.randn(500, 20, generator=torch.Generator().manual_seed(3))
    draws = ar.sample_logits(logits, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, logits.argmax(dim=-1))


def test_sampling_is_reproducible_with_a_generator():
    logits = torch.randn(100, 10)
    a = ar.sample_logits(logits, top_p=0.9, generator=torch.Generator().manual_seed(7))
    b = ar.sample_logits(logits, top_p=0.9, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (100,)


def test_sample_logits_bad_input():
    logits = torch.zeros(4)
    for kwargs, msg in [({"temperature": 0.0}, "temperature"), ({"temperature": -1}, "temperature"),
                        ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
                        ({"top_k": 0}, "top_k"), ({"top_k": 2.5}, "top_k")]:
        with pytest.raises(ValueError, match=msg):
            ar.sample_logits(logits, **kwargs)
    with pytest.raises(ValueError, match="NaN"):
        ar.sample_logits(torch.tensor([0.0, math.nan]))
    with pytest.raises(ValueError, match="-inf"):
        ar.sample_logits(torch.full((3,), -math.inf))


# ----------------------------------------------------------------------------- masked convolutions


def _pixel_jacobian(f, c_in: int, size: int = 6) -> torch.Tensor:
    """J[i, j] = sum of |d out_i / d in_j| over channels, pixels in raster order."""
    x = torch.randn(1, c_in, size, size, generator=torch.Generator().manual_seed(0))
    J = torch.autograd.functional.jacobian(f, x)  # (1, C_out, H, W, 1, C_in, H, W)
    d = size * size
    return J.abs().sum(dim=(0, 1, 4, 5)).reshape(d, d)


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_conv_causality_every_pixel(mask_type):
    torch.manual_seed(0)
    conv = MaskedConv = ar.MaskedConv2d(mask_type, 3, 4, 5)
    assert isinstance(MaskedConv, torch.nn.Conv2d)
    J = _pixel_jacobian(conv, 3)
    d = J.shape[0]
    for i in range(d):
        first_forbidden = i if mask_type == "A" else i + 1
        assert torch.all(J[i, first_forbidden:] == 0), f"pixel {i} sees the future"
    # not vacuous: the left neighbour is seen, and for B the pixel itself
    assert all(J[i, i - 1] > 0 for i in range(1, d) if i % 6)
    assert all((J[i, i] > 0) == (mask_type == "B") for i in range(d))


def test_pixelcnn_causality_every_pixel():
    torch.manual_seed(0)
    model = ar.PixelCNN(n_classes=3, hidden=8, n_layers=2)
    J = _pixel_jacobian(model.forward_onehot, 3)
    assert torch.all(torch.triu(J) == 0)  # output i ignores inputs j >= i
    assert torch.all(J.diagonal(-1)[torch.arange(35) % 6 != 5] > 0)


def test_masked_conv_bad_input():
    with pytest.raises(ValueError, match="mask_type"):
        ar.MaskedConv2d("C", 1, 1, 3)
    with pytest.raises(ValueError, match="odd"):
        ar.MaskedConv2d("A", 1, 1, 4)


# ----------------------------------------------------------------------------- PixelCNN


def test_pixelcnn_log_prob_matches_categorical():
    torch.manual_seed(0)
    model = ar.PixelCNN(n_classes=4, hidden=16, n_layers=2)
    x = torch.randint(0, 4, (5, 1, 4, 3))
    logits = model(x)  # (n, C, H, W)
    ref = Categorical(logits=logits.permute(0, 2, 3, 1)).log_prob(x[:, 0]).sum(dim=(1, 2))
    torch.testing.assert_close(model.log_prob(x), ref)


def test_pixelcnn_is_normalised_and_sampler_matches():
    torch.manual_seed(0)
    model = ar.PixelCNN(n_classes=2, hidden=16, n_layers=1).double()
    grid = torch.tensor(list(itertools.product([0, 1], repeat=4))).reshape(16, 1, 2, 2)
    with torch.no_grad():
        p = model.log_prob(grid).exp()
    assert abs(p.sum().item() - 1.0) < 1e-12  # exact likelihood: sums to one over all images
    n = 20_000
    s = model.sample(n, (2, 2), generator=torch.Generator().manual_seed(0))
    codes = (s.reshape(n, 4) * torch.tensor([8, 4, 2, 1])).sum(dim=1)
    counts = torch.bincount(codes, minlength=16).numpy()
    assert stats.chisquare(counts, n * p.numpy() / p.sum().item()).pvalue > 1e-3


def test_pixelcnn_sampling_reproducible_and_valid():
    model = ar.PixelCNN(n_classes=5, hidden=8, n_layers=1)
    a = model.sample(3, (4, 4), generator=torch.Generator().manual_seed(1))
    b = model.sample(3, (4, 4), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (3, 1, 4, 4) and a.dtype == torch.long
    assert a.min() >= 0 and a.max() < 5


def test_pixelcnn_bad_input():
    model = ar.PixelCNN()
    with pytest.raises(ValueError, match="class labels"):
        model.log_prob(torch.full((1, 1, 8, 8), 2))
    with pytest.raises(ValueError, match="shape"):
        model.log_prob(torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        model.log_prob(torch.full((1, 1, 8, 8), 0.5))
    with pytest.raises(ValueError, match="n_classes"):
        ar.PixelCNN(n_classes=1)


# ----------------------------------------------------------------------------- MADE, baselines


def test_made_log_prob_and_causality():
    torch.manual_seed(0)
    model = ar.MADE(10, hidden=32)
    with torch.no_grad():
        model.direct.normal_()
    x = torch.randint(0, 2, (6, 10)).float()
    ref = Bernoulli(logits=model(x)).log_prob(x).sum(dim=1)
    torch.testing.assert_close(model.log_prob(x), ref)
    J = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], x[0])
    assert torch.all(torch.triu(J) == 0) and torch.all(J.diagonal(-1) != 0)
    grid = torch.tensor(list(itertools.product([0.0, 1.0], repeat=10)))
    with torch.no_grad():
        assert abs(model.log_prob(grid).double().exp().sum().item() - 1.0) < 1e-5


def test_made_sample_reproducible():
    model = ar.MADE(8, hidden=16)
    a = model.sample(4, generator=torch.Generator().manual_seed(0))
    b = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (4, 8)
    assert model.sample(4, n_steps=3).shape == (4, 3)
    with pytest.raises(ValueError, match="n_steps"):
        model.sample(2, n_steps=9)


def test_bernoulli_baseline_matches_torch():
    train = torch.tensor([[0, 1, 1], [0, 0, 1], [1, 0, 1]]).float()
    x = torch.tensor([[1, 1, 0]]).float()
    p = (train.sum(0) + 1) / (train.shape[0] + 2)
    ref = Bernoulli(probs=p.double()).log_prob(x.double()).sum(1)
    torch.testing.assert_close(baselines.independent_pixels_log_prob(train, x), ref)
    lp = torch.tensor([-3 * math.log(2.0)] * 2)
    assert metrics.bits_per_dim(lp, 3)[0] == pytest.approx(1.0)


# ------------------------------------------------ character model (coursekit.language_model)


def test_char_vocab_round_trip():
    v = lm.CharVocab("hello world")
    assert v.decode(v.encode("low hold")) == "low hold" and len(v) == 8
    with pytest.raises(ValueError, match="vocabulary"):
        v.encode("xyz")


def test_char_transformer_is_causal():
    torch.manual_seed(0)
    v = lm.CharVocab("abcdefgh")
    model = lm.CharTransformer(len(v), context=12, d_model=16, n_heads=2, n_layers=2).eval()
    idx = torch.randint(0, len(v), (2, 12), generator=torch.Generator().manual_seed(0))
    base = model(idx)
    for s in range(12):
        changed = idx.clone()
        changed[:, s] = (changed[:, s] + 1) % len(v)
        out = model(changed)
        assert torch.allclose(out[:, :s], base[:, :s], atol=1e-6)  # the past does not see s
        assert not torch.allclose(out[:, s], base[:, s])  # position s does


def test_sequence_log_prob_matches_token_by_token():
    torch.manual_seed(0)
    v = lm.CharVocab("the cat sat on the mat")
    model = lm.CharTransformer(len(v), context=8, d_model=16, n_heads=2, n_layers=1).eval()
    toks = v.encode("the cat sat on the mat")
    lp = lm.sequence_log_prob(model, toks)
    with torch.no_grad():
        ref = torch.stack([torch.log_softmax(model(toks[max(0, t - 8):t][None])[0, -1], -1)[toks[t]]
                           for t in range(1, len(toks))])
    torch.testing.assert_close(lp, ref, atol=1e-5, rtol=1e-5)


def test_generate_greedy_and_reproducible():
    torch.manual_seed(0)
    v = lm.CharVocab("abcab cab")
    model = lm.CharTransformer(len(v), context=8, d_model=16, n_heads=2, n_layers=1)
    g = lambda: torch.Generator().manual_seed(0)
    a = lm.generate(model, v, "ab", 20, generator=g())
    assert a == lm.generate(model, v, "ab", 20, generator=g()) and len(a) == 22
    assert lm.generate(model, v, "ab", 20, temperature=1e-4, generator=g()) == lm.generate(
        model, v, "ab", 20, greedy=True)


def test_load_book_text_falls_back(tmp_path):
    assert lm.load_book_text(tmp_path) == lm.load_corpus()
    assert lm.load_book_text(None) == lm.load_corpus()
    # the language-model chapter's prompt must be writable with the fallback's vocabulary
    lm.CharVocab(lm.load_corpus()).encode("Generative models are")
