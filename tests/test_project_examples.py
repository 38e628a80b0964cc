"""The example submissions ship inside the package, so the leaderboard page runs anywhere."""

from __future__ import annotations

import csv

import torch

from coursekit import project


def test_examples_are_package_data() -> None:
    folder = project.example_submissions()
    assert folder.is_dir() and "project_examples" in folder.parts
    groups = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert groups == ["baseline", "beta4", "truncation"]
    for g in groups:
        state = torch.load(folder / g / "model.pt", map_location="cpu", weights_only=True)
        project.SharedGenerator().load_state_dict(state, strict=True)
    assert (folder / "truncation" / "sampling.py").is_file()
    rows = list(csv.DictReader(project.example_history().open()))
    assert {r["group"] for r in rows} == set(groups) and len({r["date"] for r in rows}) == 3
