"""The COURSEKIT_SEED knob: offset 0 changes nothing, another offset moves every seed together."""

import numpy as np
import pytest
import torch

import coursekit as ck
from coursekit import seeding
from coursekit.validation import as_generator, as_rng


def test_offset_zero_uses_seeds_as_written(monkeypatch):
    monkeypatch.delenv(seeding.ENV_VAR, raising=False)
    assert seeding.derive_seed(5) == 5
    assert np.array_equal(seeding.rng(5).random(4), np.random.default_rng(5).random(4))
    assert torch.equal(seeding.generator(5).initial_seed() * torch.ones(1), 5 * torch.ones(1))
    monkeypatch.setenv(seeding.ENV_VAR, "0")
    assert seeding.derive_seed(5) == 5


def test_another_offset_moves_every_route_together(monkeypatch):
    monkeypatch.setenv(seeding.ENV_VAR, "3")
    s = seeding.derive_seed(5)
    assert s != 5
    # Every way a chapter can seed goes through the same derived seed.
    assert np.array_equal(seeding.rng(5).random(3), np.random.default_rng(s).random(3))
    assert np.array_equal(as_rng(5).random(3), np.random.default_rng(s).random(3))
    assert as_generator(5).initial_seed() == s
    assert seeding.generator(5).initial_seed() == s
    seeding.manual_seed(5)
    assert torch.initial_seed() == s
    ck.seed_everything(5)
    assert torch.initial_seed() == s
    # Generators passed as objects are used as they are.
    g = np.random.default_rng(1)
    assert as_rng(g) is g


def test_offsets_mix_rather_than_add(monkeypatch):
    # Seeds (0, offset 1) and (1, offset 0) must not coincide: two draws stay independent.
    monkeypatch.setenv(seeding.ENV_VAR, "1")
    a = {seeding.derive_seed(k) for k in range(50)}
    assert len(a) == 50 and not a & set(range(50))
    monkeypatch.setenv(seeding.ENV_VAR, "2")
    assert not a & {seeding.derive_seed(k) for k in range(50)}


@pytest.mark.parametrize("bad", ["x", "-1", "1.5"])
def test_bad_environment_variable_is_named(monkeypatch, bad):
    monkeypatch.setenv(seeding.ENV_VAR, bad)
    with pytest.raises(ValueError, match="COURSEKIT_SEED"):
        seeding.derive_seed(0)


@pytest.mark.parametrize("bad, err", [(-1, ValueError), (1.5, TypeError), ("3", TypeError), (True, TypeError)])
def test_bad_seed_is_named(bad, err):
    with pytest.raises(err, match="seed"):
        seeding.rng(bad)
    with pytest.raises((ValueError, TypeError), match="torch_threads"):
        ck.seed_everything(0, torch_threads=0)
