"""The project kit: shared architecture, safe evaluation of untrusted submissions, leaderboard."""

from __future__ import annotations

import csv
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from coursekit import project

N = 100  # samples per submission: enough for FID (n > 32 features), fast


class _Payload:
    """A pickle that, if ever unpickled, creates a marker file (it must never run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _good_state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return project.SharedGenerator().state_dict()


@pytest.fixture(scope="module")
def submissions(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("submissions")
    marker = root.parent / "PAYLOAD_RAN"
    good = root / "good"
    good.mkdir()
    torch.save(_good_state(), good / "model.pt")
    wrong = root / "wrong_shape"
    wrong.mkdir()
    state = _good_state()
    state["net.0.weight"] = torch.zeros(128, 3)
    torch.save(state, wrong / "model.pt")
    evil = root / "malicious"
    evil.mkdir()
    with (evil / "model.pt").open("wb") as f:
        pickle.dump(_Payload(marker), f)
    hang = root / "hangs"
    hang.mkdir()
    torch.save(_good_state(), hang / "model.pt")
    (hang / "sampling.py").write_text("import time\n\ndef sample(model, n, generator):\n"
                                      "    time.sleep(600)\n")
    nan = root / "nan"
    nan.mkdir()
    torch.save(_good_state(), nan / "model.pt")
    (nan / "sampling.py").write_text("import torch\n\ndef sample(model, n, generator):\n"
                                     "    return torch.full((n, 16), float('nan'))\n")
    # A submission that tries to rewrite the history of earlier days and another group's row.
    vandal = root / "vandal"
    vandal.mkdir()
    torch.save(_good_state(), vandal / "model.pt")
    (vandal / "sampling.py").write_text(
        "import os, pathlib\n\ndef sample(model, n, generator):\n"
        "    p = pathlib.Path(os.environ.get('HISTORY_TO_VANDALISE', '/nonexistent'))\n"
        "    if p.exists():\n"
        "        p.write_text('date,group\\n')\n"
        "    return __import__('torch').randn(n, 16, generator=generator)\n")
    (root / "missing").mkdir()
    return root, marker


def test_shared_generator_contract() -> None:
    g = project.SharedGenerator()
    x = g.sample(5, generator=0)
    assert x.shape == (5, 1, 8, 8)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.equal(x, g.sample(5, generator=0))
    with pytest.raises(ValueError, match="z: expected a tensor of shape"):
        g(torch.zeros(3, 5))
    with pytest.raises(TypeError, match="generator"):
        g.sample(3, generator=np.random.default_rng(0))


def test_leaderboard_two_days(submissions, tmp_path, monkeypatch) -> None:
    root, marker = submissions
    history = tmp_path / "history.csv"
    site = tmp_path / "site"
    monkeypatch.setenv("HISTORY_TO_VANDALISE", str(history))
    cmd = [sys.executable, "-m", "coursekit.project", "leaderboard", str(root),
           "--history", str(history), "--out", str(site), "--n", str(N), "--timeout", "10",
           "--sets", "1", "--seed", "0"]  # the same seed both days: the same numbers
    for date in ("2026-01-05", "2026-01-06"):
        done = subprocess.run([*cmd, "--date", date], capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(history.open()))
    by = {(r["date"], r["group"]): r for r in rows}
    groups = {"good", "wrong_shape", "malicious", "hangs", "nan", "vandal", "missing"}
    for date in ("2026-01-05", "2026-01-06"):
        assert {g for d, g in by if d == date} == groups, f"missing rows on {date}"
    reasons = {g: by[("2026-01-06", g)]["reason"] for g in groups}
    assert by[("2026-01-06", "good")]["status"] == "ok"
    assert "not a state_dict of SharedGenerator" in reasons["wrong_shape"]
    assert "weights_only" in reasons["malicious"]
    assert "timed out" in reasons["hangs"]
    assert "NaN" in reasons["nan"]
    assert "no model.pt" in reasons["missing"]
    # The vandal's own row is fine, and its write did not erase the first day or other rows.
    assert by[("2026-01-06", "vandal")]["status"] == "ok"
    for metric in project.METRICS:
        assert by[("2026-01-05", "good")][metric] == by[("2026-01-06", "good")][metric], metric
    assert not marker.exists(), "the malicious pickle's payload ran"
    page = (site / "index.html").read_text()
    assert "good" in page and "timed out" in page and "history_fid.png" in page
    assert (site / "history_fid.png").stat().st_size > 1000


def test_rerun_of_a_morning_supersedes_its_rows(tmp_path) -> None:
    # Only a group with no model.pt: no child process, so this runs in a second.
    (tmp_path / "subs" / "missing").mkdir(parents=True)
    history = tmp_path / "history.csv"
    for date in ("2026-01-05", "2026-01-06", "2026-01-06"):
        project.leaderboard(tmp_path / "subs", history, tmp_path / "site", date=date)
    rows = list(csv.DictReader(history.open()))
    # The rerun's rows count; the earlier run of that morning stays, marked superseded.
    assert sorted(r["date"] for r in rows if not r["superseded"]) == ["2026-01-05",
                                                                       "2026-01-06"]
    assert [r["date"] for r in rows if r["superseded"]] == ["2026-01-06"]


def test_evaluate_cli_prints_json(submissions) -> None:
    root, _ = submissions
    out = subprocess.run([sys.executable, "-m", "coursekit.project", "evaluate",
                          str(root / "good"), "--n", str(N)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = json.loads(out.stdout)
    assert row["status"] == "ok" and row["n_samples"] == N
    for key in ("precision", "recall", "density", "coverage", "fid", "inception_score",
                "class_coverage", "memorisation"):
        assert np.isfinite(row[key]), key


def test_copies_of_training_or_heldout_digits_are_flagged_and_not_ranked(tmp_path) -> None:
    """At the image level: training digits + small noise, and the held-out digits
    themselves, beat a real generator on FID but are flagged and not ranked; the real
    generator (the example baseline) is not flagged."""
    from coursekit.data import load_digits

    ref = project._reference()
    train, _ = load_digits("train")
    test, _ = load_digits("test")
    rng = np.random.default_rng(0)
    noisy = np.clip(train[rng.integers(0, len(train), 300)].numpy()
                    + 0.05 * rng.standard_normal((300, 1, 8, 8)), 0, 1)
    model = project._load_generator(
        (project.example_submissions() / "baseline" / "model.pt").read_bytes())
    real = model(torch.randn(300, 16, generator=torch.Generator().manual_seed(0))).detach()
    rows = []
    for name, x in (("noisy_copies", noisy), ("heldout", test[:300].numpy()),
                    ("baseline", real.numpy())):
        row = project.compute_metrics(x, reference=ref)
        row.update(group=name, status="ok", flag=project._copy_flag(row))
        rows.append(row)
    by = {r["group"]: r for r in rows}
    assert by["noisy_copies"]["memorisation"] > 0.9 and by["heldout"]["memorisation"] > 0.9
    # Meehan et al.'s C_T sees the noisy training copies (and only those: held-out digits
    # are fresh data for it, hence the near-copy share against every known digit).
    assert by["noisy_copies"]["ct"] < project.CT_THRESHOLD
    assert "C_T" in by["noisy_copies"]["flag"] and "near-copies" in by["heldout"]["flag"]
    assert by["baseline"]["flag"] == "" and by["baseline"]["memorisation"] < 0.05
    # The copies would have been first on FID: the flag is what keeps them from it.
    assert min(by["noisy_copies"]["fid"], by["heldout"]["fid"]) < by["baseline"]["fid"]
    project._rank(rows)
    assert by["baseline"]["rank"] == "1"
    assert by["noisy_copies"]["rank"] == by["heldout"]["rank"] == ""
    for r in rows:
        r.update(n_sets=1, date="2026-03-02")
    page = project.write_site(tmp_path, rows, [], "2026-03-02").read_text()
    assert page.count("flagged, not ranked") == 2


def test_unusable_set_exits_nonzero(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "coursekit.project", "leaderboard",
                          str(tmp_path / "nope"), "--history", str(tmp_path / "h.csv"),
                          "--out", str(tmp_path / "site")], capture_output=True, text=True)
    assert out.returncode != 0 and "not a folder" in out.stderr
    with pytest.raises(ValueError, match="date"):
        project.leaderboard(tmp_path, tmp_path / "h.csv", tmp_path / "s", date="05/01/2026")


# ------------------------------------------------------------------ edge cases (review)

def _folder(root: Path, name: str, sampling: str | None = None, model: str = "file") -> Path:
    d = root / name
    d.mkdir(parents=True)
    if model == "file":
        torch.save(_good_state(), d / "model.pt")
    elif model == "dir":
        (d / "model.pt").mkdir()
    if sampling is not None:
        (d / "sampling.py").write_text(sampling)
    return d


_SAMPLE = "import torch\n\ndef sample(model, n, generator):\n"


@pytest.mark.parametrize("sampling, reason", [
    ("def sample(model, n, generator)\n    return 1\n",
     r"could not be imported: SyntaxError.*line 1"),
    ("import no_such_module_xyz\n", "could not be imported: ModuleNotFoundError"),
    ("x = 1\n", "defines no function sample"),
    (_SAMPLE + "    return torch.randn(n, 16).numpy()\n", "ndarray, not a torch.Tensor"),
    (_SAMPLE + "    return torch.randn(n, 16) > 0.5\n", "dtype torch.bool"),
    (_SAMPLE + "    return torch.ones(n, 16, dtype=torch.long)\n", "dtype torch.int64"),
    (_SAMPLE + "    return torch.randn(n, 16)\nEXTRA_FILES = ['critic.pt']\n",
     "no critic.pt in the submission folder"),
    (_SAMPLE + "    return torch.randn(n, 16)\nEXTRA_FILES = ['../x.pt']\n",
     "not a plain file name"),
    (_SAMPLE + "    raise RuntimeError('boom')\n", "sample\\(\\) raised RuntimeError: boom"),
])
def test_child_reports_what_the_submission_did_wrong(tmp_path, sampling, reason) -> None:
    # In-process (no child): the reasons the child sends back, one per plausible mistake.
    folder = _folder(tmp_path, "g", sampling)
    with pytest.raises(project.SubmissionError, match=reason):
        project._child_sample(str(folder), 60, 0)


def test_child_accepts_other_float_dtypes(tmp_path) -> None:
    folder = _folder(tmp_path, "g", _SAMPLE + "    return torch.randn(n, 16).half()\n")
    z = project._child_sample(str(folder), 60, 0)
    assert z.dtype == np.float32 and z.shape == (60, 16)


@pytest.mark.parametrize("err, code, want", [
    ("Traceback...\nRuntimeError: [enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: "
     "can't allocate memory: you tried to allocate 10737418240 bytes", 1, "ran out of memory"),
    ("Traceback...\nMemoryError", 1, "ran out of memory"),
    ("", -9, "ran out of memory"),
    ("warning\nSUBMISSION-FAULT: sample() raised ValueError: bad\nTraceback\nValueError: x", 3,
     "^sample\\(\\) raised ValueError: bad$"),
    ("", 1, "^exit code 1$"),
])
def test_reason_from_stderr(err, code, want) -> None:
    assert __import__("re").search(want, project._reason(err, code))


def test_bad_arguments_are_usage_errors(tmp_path, capsys) -> None:
    for args, what in ((["--n", "10"], "at least 50"), (["--n", "abc"], "integer"),
                       (["--n", "0"], "--n"), (["--timeout", "0"], "--timeout"),
                       (["--timeout", "nan"], "finite"), (["--timeout", "1e9"], "a day")):
        with pytest.raises(SystemExit) as stop:
            project.main(["evaluate", str(tmp_path), *args])
        assert stop.value.code == 2
        assert what in capsys.readouterr().err
    with pytest.raises(SystemExit):
        project.main(["leaderboard", str(tmp_path), "--history", "h.csv", "--out", "s",
                      "--sets", "0"])
    assert "--sets" in capsys.readouterr().err
    # The library says the same before it evaluates anything.
    with pytest.raises(ValueError, match="n: expected at least"):
        project.leaderboard(tmp_path, tmp_path / "h.csv", tmp_path / "s", n=10)
    with pytest.raises(ValueError, match="timeout"):
        project.draw_samples(tmp_path, 60, timeout=-1)


def test_leaderboard_edge_cases(tmp_path) -> None:
    """One run: odd group names on the page, a folder as model.pt, values outside [0, 1], a
    crash with a multi-line message, and a 10 GB allocation under the memory limit."""
    root = tmp_path / "subs"
    odd = "a b <img src=x onerror=alert(1)> & $\\frac$"  # spaces, HTML, mathtext
    _folder(root, odd)
    _folder(root, "_leading_underscore")
    _folder(root, "model_is_a_folder", model="dir")
    _folder(root, "outside", _SAMPLE + "    return 1e3 * torch.randn(n, 16)\n")
    _folder(root, "crash", _SAMPLE + "    raise RuntimeError('first line\\nsecond line')\n")
    _folder(root, "greedy", _SAMPLE + "    big = torch.ones(10 * 2**30 // 4)  # 10 GB\n"
            "    return torch.randn(n, 16)\n")
    history, site = tmp_path / "history.csv", tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "coursekit.project", "leaderboard", str(root),
                           "--history", str(history), "--out", str(site), "--n", "60",
                           "--sets", "1", "--timeout", "30", "--date", "2026-02-01"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["group"]: r for r in csv.DictReader(history.open())}
    assert rows[odd]["status"] == "ok" and rows["_leading_underscore"]["status"] == "ok"
    assert "not a file" in rows["model_is_a_folder"]["reason"]
    assert "latent vectors leave [-100, 100]" in rows["outside"]["reason"]
    assert rows["crash"]["reason"] == "sample() raised RuntimeError: first line second line"
    assert rows["greedy"]["reason"].startswith("ran out of memory")
    page = (site / "index.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt; &amp;" in page
    assert (site / "history_fid.png").stat().st_size > 1000
