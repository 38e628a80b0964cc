"""coursekit.utils and coursekit.validation."""

import numpy as np
import pytest
import torch

import coursekit as ck
from coursekit import validation as v


def test_seed_everything_is_reproducible():
    ck.seed_everything(7)
    a = (np.random.rand(3), torch.rand(3))  # noqa: NPY002
    rng = ck.seed_everything(7)
    b = (np.random.rand(3), torch.rand(3))  # noqa: NPY002
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert isinstance(rng, np.random.Generator)
    with pytest.raises(ValueError, match="seed"):
        ck.seed_everything(-1)


def test_get_device():
    assert ck.get_device(prefer_gpu=False).type == "cpu"
    assert ck.get_device().type in ("cpu", "cuda")


def test_train_decreases_loss_and_returns_history():
    torch.manual_seed(0)
    target = torch.tensor([1.0, -2.0])
    w = torch.nn.Parameter(torch.zeros(2))
    data = target + 0.1 * torch.randn(512, 2)
    hist = ck.train(lambda b: ((b - w) ** 2).sum(1).mean(), [w], data, n_steps=300, lr=0.05,
                    show_progress=False)
    assert len(hist) == 300 and hist[-1] < hist[0]
    assert torch.allclose(w, target, atol=0.05)


def test_train_without_data_and_errors():
    w = torch.nn.Parameter(torch.tensor(3.0))
    hist = ck.train(lambda: w**2, [w], n_steps=200, lr=0.1, show_progress=False)
    assert hist[-1] < 1e-2
    with pytest.raises(ValueError, match="n_steps"):
        ck.train(lambda: w**2, [w], n_steps=0)
    with pytest.raises(ValueError, match="parameters"):
        ck.train(lambda: w**2, [], n_steps=1)
    with pytest.raises(ValueError, match="loss became"):
        ck.train(lambda: torch.log(w - w), [w], n_steps=1, show_progress=False)


def test_as_rng():
    g = np.random.default_rng(1)
    assert v.as_rng(g) is g
    assert v.as_rng(5).random() == np.random.default_rng(5).random()
    assert isinstance(v.as_rng(None), np.random.Generator)
    for bad in ("seed", 1.5, True, -3, torch.Generator()):
        with pytest.raises((ValueError, TypeError), match="rng"):
            v.as_rng(bad)


@pytest.mark.parametrize("bad", [-1.0, 0.0, float("nan"), float("inf"), "big"])
def test_train_refuses_bad_clip_grad(bad):
    # clip_grad=-1 used to train uphill without a word, 0 froze training.
    w = torch.nn.Parameter(torch.tensor(3.0))
    with pytest.raises(ValueError, match="clip_grad"):
        ck.train(lambda: w**2, [w], n_steps=1, clip_grad=bad, show_progress=False)


def test_train_accepts_numpy_data_and_seeds():
    data = np.random.default_rng(0).normal(size=(64, 2))
    seen = []

    def loss(b):
        seen.append(b)
        return (b.sum() * w).pow(2)

    w = torch.nn.Parameter(torch.tensor(1.0))
    ck.train(loss, [w], data, n_steps=3, batch_size=8, generator=5, show_progress=False)
    first = [b.clone() for b in seen]
    seen.clear()
    ck.train(loss, [w], data, n_steps=3, batch_size=8, generator=5, show_progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first, seen, strict=True))
    assert first[0].dtype == torch.float32  # moved to the parameters' dtype
    # None: a seed drawn from torch's global state, so seed_everything repeats a run.
    for _ in range(2):
        ck.seed_everything(3)
        seen.clear()
        ck.train(loss, [w], data, n_steps=1, batch_size=8, show_progress=False)
        first, last = (seen[0], first) if _ == 0 else (first, seen[0])
    assert torch.equal(first, last)
    with pytest.raises(TypeError, match="generator"):
        ck.train(loss, [w], data, n_steps=1, generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match="data"):
        ck.train(loss, [w], np.zeros((0, 2)), n_steps=1)
    with pytest.raises(ValueError, match="data"):
        ck.train(loss, [w], np.full((4, 2), np.nan), n_steps=1)


def test_checks():
    assert np.array_equal(v.check_probabilities([0.25, 0.75]), [0.25, 0.75])
    with pytest.raises(ValueError, match="non-negative"):
        v.check_probabilities([-0.1, 1.1])
    with pytest.raises(ValueError, match="sum to 1"):
        v.check_probabilities([0.2, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        v.check_array([1.0, np.nan], "x")
    with pytest.raises(ValueError, match="dimension"):
        v.check_array(np.zeros((2, 2)), "x", ndim=1)
    L = v.check_spd(np.array([[4.0, 2.0], [2.0, 3.0]]))
    assert np.allclose(L @ L.T, [[4, 2], [2, 3]])
    with pytest.raises(ValueError, match="component 2.*not symmetric"):
        v.check_spd(np.array([[1.0, 0.5], [0.0, 1.0]]), "covariances", component=2)
    with pytest.raises(ValueError, match="not positive definite"):
        v.check_spd(np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_train_after_step_runs_after_every_optimizer_step():
    # Minimising (w - 5)^2 with w clamped to [-1, 1] after each step must end at the bound 1,
    # and every recorded loss is computed from a w <= 1, so none is below (1 - 5)^2 = 16.
    w = torch.nn.Parameter(torch.tensor(0.0))
    calls = []

    def clamp():
        calls.append(w.item())
        with torch.no_grad():
            w.clamp_(-1.0, 1.0)

    hist = ck.train(lambda: (w - 5.0) ** 2, [w], n_steps=40, lr=0.5, after_step=clamp,
                    show_progress=False)
    assert len(calls) == 40 and calls[-1] > 1.0   # called after the step moved w past 1
    assert w.item() == 1.0
    assert min(hist) >= 16.0 and hist[-1] == pytest.approx(16.0)
    with pytest.raises(TypeError, match="after_step"):
        ck.train(lambda: w**2, [w], n_steps=1, after_step=3, show_progress=False)


def test_check_nonnegative():
    assert v.check_nonnegative(0, "w") == 0.0 and v.check_nonnegative(2.5, "w") == 2.5
    for bad in (-1e-12, float("nan"), float("inf"), "x", None, 1j):
        with pytest.raises(ValueError, match="w: expected a finite number >= 0"):
            v.check_nonnegative(bad, "w")
