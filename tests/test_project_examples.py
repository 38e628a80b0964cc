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


def test_groups_folders_are_not_linted_or_tested_and_publish_runs_no_tests() -> None:
    from pathlib import Path

    import tomllib
    import yaml

    root = Path(__file__).resolve().parents[1]
    conf = tomllib.loads((root / "pyproject.toml").read_text())
    assert "project/submissions" in conf["tool"]["ruff"]["extend-exclude"]
    assert "project" in conf["tool"]["pytest"]["ini_options"]["norecursedirs"]
    flow = yaml.safe_load((root / ".github" / "workflows" / "leaderboard.yml").read_text())
    publish = flow["jobs"]["publish"]
    assert "uses" not in publish  # not book.yml, whose job runs the whole suite
    runs = " ".join(str(s.get("run", "")) for s in publish["steps"])
    assert "jupyter-book build" in runs and "pytest" not in runs
    # The secrets reach the evaluator's step only, never the whole job.
    assert "env" not in flow["jobs"]["evaluate"]
