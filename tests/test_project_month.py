"""A month an instructor can run: fair seeds and reference, fetching groups' repositories,
commit ids and file hashes in the history, reruns, failures and carried-forward rows."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from coursekit import project


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def _missing_only(root: Path) -> Path:
    """A submissions folder whose one group has no model.pt: nothing runs, a second."""
    (root / "subs" / "missing").mkdir(parents=True)
    return root / "subs"


def test_morning_seed_is_an_hmac_of_the_date() -> None:
    secret = b"instructor-secret-0123456789"
    want = int.from_bytes(hmac.new(secret, b"coursekit-project:2026-03-02",
                                   hashlib.sha256).digest()[:8], "big") % 2**62
    assert project._morning_seed("2026-03-02", secret) == want
    assert project._morning_seed("2026-03-02", secret) != project._morning_seed(
        "2026-03-03", secret)
    assert project._morning_seed("2026-03-02", b"another-secret-0123456") != want
    public = int.from_bytes(hashlib.sha256(b"coursekit-project:2026-03-02").digest()[:8],
                            "big") % 2**62
    assert project._morning_seed("2026-03-02", None) == public != want


def test_leaderboard_seed_from_secret_file_or_env(tmp_path, monkeypatch) -> None:
    subs = _missing_only(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("s3cret-of-the-instructor-42\n")
    monkeypatch.delenv(project.SECRET_ENV, raising=False)
    kw = dict(date="2026-03-02", sandbox=False)
    public = project.leaderboard(subs, tmp_path / "h.csv", tmp_path / "site", **kw)[0]
    private = project.leaderboard(subs, tmp_path / "h.csv", tmp_path / "site",
                                  secret_file=secret, **kw)[0]
    assert "public" in public["seed_source"] and "secret" in private["seed_source"]
    assert public["seed"] != private["seed"]
    assert private["seed"] == str(project._morning_seed("2026-03-02",
                                                        b"s3cret-of-the-instructor-42"))
    monkeypatch.setenv(project.SECRET_ENV, "s3cret-of-the-instructor-42")
    from_env = project.leaderboard(subs, tmp_path / "h.csv", tmp_path / "site", **kw)[0]
    assert from_env["seed"] == private["seed"]
    (tmp_path / "short").write_text("abc")
    with pytest.raises(ValueError, match="secret_file"):
        project.leaderboard(subs, tmp_path / "h.csv", tmp_path / "site",
                            secret_file=tmp_path / "short", **kw)
    page = (tmp_path / "site" / "index.html").read_text()
    assert "not reproducible offline" in page and "public test split" in page


def test_private_reference_file(tmp_path) -> None:
    from coursekit.data import load_digits

    test, _ = load_digits("test")
    np.savez(tmp_path / "private.npz", images=test[:200].numpy())
    ref = project._reference(tmp_path / "private.npz")
    assert ref["private"] and "private set (200 digits)" in ref["name"]
    assert ref["real"].shape[0] == 200
    # The near-copy check knows the private digits too.
    assert ref["known_pixels"].shape[0] == 1437 + 360 + 200
    public = project._reference()
    assert not public["private"] and "not official" in public["name"]
    subs = _missing_only(tmp_path)
    np.save(tmp_path / "few.npy", test[:20].numpy())
    np.save(tmp_path / "wrong.npy", np.zeros((200, 7)))
    for bad, why in (("few.npy", "at least 100"), ("wrong.npy", "shape"),
                     ("nope.npz", "not a file")):
        with pytest.raises(ValueError, match=why):
            project.leaderboard(subs, tmp_path / "h.csv", tmp_path / "site",
                                reference=tmp_path / bad, sandbox=False)
        assert not (tmp_path / "h.csv").exists()  # refused before anything ran


def test_rerun_supersedes_and_failures_stay_visible(tmp_path) -> None:
    subs = _missing_only(tmp_path)
    history = tmp_path / "history.csv"
    for date in ("2026-01-05", "2026-01-06", "2026-01-06", "2026-01-06"):
        project.leaderboard(subs, history, tmp_path / "site", date=date, sandbox=False)
    rows = _rows(history)
    on_6 = [r for r in rows if r["date"] == "2026-01-06"]
    assert len(on_6) == 3 and sum(not r["superseded"] for r in on_6) == 1
    assert [r for r in rows if r["date"] == "2026-01-05"][0]["superseded"] == ""
    assert all(r["status"] == "error" and "no model.pt" in r["reason"] for r in rows)
    assert all(r["run_at"].endswith("Z") for r in rows)
    site = tmp_path / "site"
    page = (site / "index.html").read_text()
    group_page = project._slug("missing") + ".html"
    assert f'href="{group_page}"' in page and "error: no model.pt" in page
    mine = (site / group_page).read_text()
    assert mine.count("superseded by a rerun") == 2 and mine.count("no model.pt") == 4


def test_hashes_and_carry_forward(tmp_path) -> None:
    subs = tmp_path / "subs"
    shutil.copytree(project.example_submissions() / "baseline", subs / "baseline")
    (subs / "broken").mkdir()
    (subs / "broken" / "model.pt").write_text("not weights")
    history = tmp_path / "history.csv"
    shutil.copy(project.example_history(), history)  # older columns: read and kept
    kw = dict(n=60, n_sets=2, seed=0, sandbox=False)
    rows = {r["group"]: r for r in project.leaderboard(subs, history, tmp_path / "site",
                                                       date="2026-02-02", **kw)}
    digest = hashlib.sha256((subs / "baseline" / "model.pt").read_bytes()).hexdigest()
    assert rows["baseline"]["files"] == f"model.pt:{digest}"
    assert rows["broken"]["status"] == "error" and "weights_only" in rows["broken"]["reason"]
    assert rows["broken"]["files"].startswith("model.pt:")
    # A group that fails keeps its last good morning when the policy is on, marked carried.
    shutil.rmtree(subs / "baseline")
    (subs / "baseline").mkdir()
    rows = {r["group"]: r for r in project.leaderboard(
        subs, history, tmp_path / "site", date="2026-02-03", carry_forward=True, **kw)}
    carried = rows["baseline"]
    assert carried["status"] == "carried" and carried["carried_from"] == "2026-02-02"
    assert "no model.pt" in carried["reason"] and carried["rank"] == "1"
    last = [r for r in _rows(history) if r["date"] == "2026-02-02"
            and r["group"] == "baseline"][0]
    assert carried["fid"] == pytest.approx(float(last["fid"]))
    assert rows["broken"]["status"] == "error"  # nothing good to carry: stays failed
    page = (tmp_path / "site" / "index.html").read_text()
    assert "carried forward from 2026-02-02" in page
    with pytest.raises(ValueError, match="carry_forward"):
        project.leaderboard(subs, history, tmp_path / "site", carry_forward="yes", **kw)


def _git(*args: str, cwd: Path, date: str | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "g", "GIT_AUTHOR_EMAIL": "g@x",
           "GIT_COMMITTER_NAME": "g", "GIT_COMMITTER_EMAIL": "g@x"}
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_fetch_takes_the_last_commit_before_the_cutoff(tmp_path) -> None:
    repo = tmp_path / "alpha"
    (repo / "submission").mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=repo)
    torch.manual_seed(0)
    torch.save(project.SharedGenerator().state_dict(), repo / "submission" / "model.pt")
    (repo / "submission" / "link.pt").symlink_to("/etc/passwd")
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "before", cwd=repo, date="2026-03-02T05:00:00+00:00")
    before = _git("rev-parse", "HEAD", cwd=repo)
    before_hash = hashlib.sha256((repo / "submission" / "model.pt").read_bytes()).hexdigest()
    (repo / "submission" / "model.pt").write_bytes(b"pushed after the cutoff")
    _git("commit", "-q", "-am", "after", cwd=repo, date="2026-03-02T07:00:00+00:00")
    groups = tmp_path / "groups.toml"
    groups.write_text(f'cutoff = "06:00"\n\n[groups.alpha]\nrepo = "{repo}"\nref = "main"\n\n'
                      f'[groups.beta]\nrepo = "{tmp_path / "no-such-repo"}"\n')
    subs = tmp_path / "subs"
    done = subprocess.run([sys.executable, "-m", "coursekit.project", "fetch", str(groups),
                           "--into", str(subs), "--date", "2026-03-02"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((subs / ".fetched.json").read_text())
    assert record["alpha"]["commit"] == before and "error" in record["beta"]
    got = hashlib.sha256((subs / "alpha" / "model.pt").read_bytes()).hexdigest()
    assert got == before_hash
    # The link is never followed: dropped, or a small text file, never /etc/passwd.
    link = subs / "alpha" / "link.pt"
    assert not link.is_symlink() and (not link.exists() or b"root:" not in link.read_bytes())
    rows = {r["group"]: r for r in project.leaderboard(
        subs, tmp_path / "h.csv", tmp_path / "site", date="2026-03-02", n=60, n_sets=1,
        sandbox=False)}
    assert rows["alpha"]["status"] == "ok" and rows["alpha"]["commit"] == before
    assert rows["beta"]["status"] == "error" and rows["beta"]["reason"].startswith(
        "fetch failed")
    saved = {r["group"]: r for r in _rows(tmp_path / "h.csv")}
    assert saved["alpha"]["commit"] == before
    assert f"model.pt:{before_hash}" in saved["alpha"]["files"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[groups."../x"]\nrepo = "r"\n')
    with pytest.raises(ValueError, match="folder name"):
        project._fetch(bad, subs)
