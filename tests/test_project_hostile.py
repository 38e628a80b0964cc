"""Hostile submissions: each attack a group could try from its ``sampling.py`` is contained.

Every test builds one submission, runs it through the evaluator's sandbox (bubblewrap) with
small caps so that it takes a few seconds, and checks that the attack failed or was stopped,
and that what the group sends back is one safe line. They are skipped, with the reason, where
bubblewrap does not work (the kit then refuses to run groups' code, which is tested last).
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from coursekit import project, sandbox

N = 50  # the fewest samples an evaluation accepts: the attacks, not the metrics, are tested


def _sandbox_problem() -> str:
    try:
        sandbox.check_sandbox()
    except sandbox.SandboxUnavailable as e:
        return str(e)
    return ""


needs_bwrap = pytest.mark.skipif(bool(_sandbox_problem()), reason=_sandbox_problem())

SMALL = sandbox.Limits(memory=1 * 2**30, processes=16, disk=16 * 2**20)


def _group(root: Path, name: str, code: str) -> Path:
    """A submission folder with valid weights and the given sampling.py (none when empty)."""
    folder = root / name
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(project.SharedGenerator().state_dict(), folder / "model.pt")
    if code:
        (folder / "sampling.py").write_text(textwrap.dedent(code))
    return folder


def _draw(folder: Path, limits: sandbox.Limits = SMALL, timeout: float = 20) -> str:
    """Run the submission in the sandbox: "ok", or the reason it was refused."""
    try:
        project.draw_samples(folder, N, seed=0, timeout=timeout, limits=limits)
    except project.SubmissionError as e:
        return str(e)
    return "ok"


def _host_processes_with(token: str) -> list[str]:
    """Command lines on the host that contain ``token``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if token.encode() in cmd:
                found.append(cmd.decode(errors="replace"))
    return found


@needs_bwrap
def test_reading_outside_its_folder_finds_nothing(tmp_path, monkeypatch) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-4711")
    monkeypatch.setenv("COURSEKIT_TEST_TOKEN", "token-0815")  # in the evaluator's environment
    repo_file = Path(project.__file__).resolve().parents[1] / "pyproject.toml"
    folder = _group(tmp_path, "reader", f"""
        import glob, os

        def sample(model, n, generator):
            found = []
            for path in [{str(secret)!r}, {str(repo_file)!r}, *glob.glob('/proc/*/environ')]:
                try:
                    found.append(open(path, errors='replace').read())
                except OSError:
                    pass
            found.append(' '.join(os.environ.values()))
            raise ValueError('READ ' + ' | '.join(found))
        """)
    reason = _draw(folder)
    assert reason.startswith("sample() raised ValueError: READ"), reason
    assert "TOPSECRET" not in reason and "token-0815" not in reason
    assert "[build-system]" not in reason  # the repository outside coursekit/ is not visible


@needs_bwrap
def test_no_network_even_to_localhost(tmp_path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    folder = _group(tmp_path, "caller", f"""
        import socket

        def sample(model, n, generator):
            try:
                socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'stolen')
            except OSError as e:
                raise ValueError('NO-NETWORK ' + type(e).__name__)
            raise ValueError('CONNECTED')
        """)
    reason = _draw(folder)
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody ever connected
    listener.close()
    assert "NO-NETWORK" in reason, reason


@needs_bwrap
def test_writing_outside_its_tmp_fails(tmp_path) -> None:
    victim = _group(tmp_path, "victim", "")
    before = (victim / "model.pt").read_bytes()
    folder = _group(tmp_path, "writer", f"""
        import os

        def sample(model, n, generator):
            blocked = 0
            for path in [{str(victim / 'model.pt')!r}, {str(tmp_path / 'planted.txt')!r},
                         '/submission/model.pt', '/submission/extra.py', '/usr/planted']:
                try:
                    with open(path, 'wb') as f:
                        f.write(b'overwritten')
                except OSError:
                    blocked += 1
            if blocked != 5:
                raise ValueError('WROTE')
            return __import__('torch').randn(n, 16, generator=generator)
        """)
    mine = (folder / "model.pt").read_bytes()
    assert _draw(folder) == "ok"
    assert (victim / "model.pt").read_bytes() == before
    assert (folder / "model.pt").read_bytes() == mine
    assert not (tmp_path / "planted.txt").exists() and not (folder / "extra.py").exists()


@needs_bwrap
def test_nothing_outlives_the_run(tmp_path) -> None:
    token = f"4242.{os.getpid()}"  # a unique sleep duration: findable among host processes
    folder = _group(tmp_path, "daemon", f"""
        import os, subprocess

        def sample(model, n, generator):
            subprocess.Popen(['sleep', '{token}'], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if os.fork() == 0:  # the classic double fork: a daemon re-parented to init
                os.setsid()
                if os.fork() == 0:
                    os.execvp('sleep', ['sleep', '{token}'])
                os._exit(0)
            return __import__('torch').randn(n, 16, generator=generator)
        """)
    assert _draw(folder) == "ok"
    time.sleep(0.5)  # the kernel tears the PID namespace down asynchronously
    assert _host_processes_with(token) == []


@needs_bwrap
def test_a_fork_storm_is_bounded(tmp_path) -> None:
    folder = _group(tmp_path, "storm", """
        import os, time

        def sample(model, n, generator):
            forked = 0
            for _ in range(200):
                try:
                    pid = os.fork()
                except OSError:
                    break
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                forked += 1
            raise ValueError(f'FORKED {forked}')
        """)
    start = time.monotonic()
    reason = _draw(folder)
    # Either the kernel refused the forks (RLIMIT_NPROC, when the evaluator is not root) or
    # the watchdog stopped the sandbox; never 200 processes running for 30 s.
    if reason.startswith("sample() raised ValueError: FORKED"):
        assert int(reason.split()[-1]) <= SMALL.processes, reason
    else:
        assert reason.startswith("started too many processes"), reason
    assert time.monotonic() - start < 25


@needs_bwrap
def test_memory_is_capped_for_all_its_processes_together(tmp_path) -> None:
    # Four children of 250 MB each: every one is under the per-process cap (1 GiB of address
    # space), together they exceed the sandbox's 1 GiB.
    folder = _group(tmp_path, "spread", """
        import os, time

        def sample(model, n, generator):
            kids = []
            for _ in range(4):
                pid = os.fork()
                if pid == 0:
                    block = b'x' * (250 * 2**20)  # touched, so it is really held
                    time.sleep(15)
                    os._exit(len(block) & 0)
                kids.append(pid)
            for pid in kids:
                os.waitpid(pid, 0)
            raise ValueError('ALL HELD THEIR MEMORY')
        """)
    reason = _draw(folder)
    assert reason.startswith("ran out of memory: its processes together"), reason


@needs_bwrap
def test_disk_is_capped(tmp_path) -> None:
    folder = _group(tmp_path, "filler", """
        def fill(path):
            written = 0
            try:
                with open(path, 'wb') as f:
                    for _ in range(200):
                        f.write(b'x' * 2**20)
                        f.flush()
                        written += 1
            except OSError:
                pass
            return written

        def sample(model, n, generator):
            # The sandbox's root and /dev are read-only; /tmp and /dev/shm are capped.
            sizes = [fill(p) for p in ('/tmp/big', '/dev/shm/big', '/big', '/dev/big')]
            raise ValueError('WROTE ' + ' '.join(map(str, sizes)))
        """)
    reason = _draw(folder)
    assert reason.startswith("sample() raised ValueError: WROTE"), reason
    tmp, shm, root, dev = map(int, reason.split()[-4:])
    assert tmp <= SMALL.disk // 2**20 and shm <= SMALL.disk // 2**20, reason
    assert root == dev == 0, reason


@needs_bwrap
def test_a_planted_module_is_never_imported(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = _group(tmp_path, "planter", """
        import os

        def sample(model, n, generator):
            for name in ('matplotlib.py', 'sitecustomize.py', 'usercustomize.py'):
                with open(os.path.join(os.getcwd(), name), 'w') as f:
                    f.write('raise SystemExit("PLANTED CODE RAN")\\n')
            import matplotlib  # the real one: python -I never looks in the working folder
            return __import__('torch').randn(n, 16, generator=generator)
        """)
    assert _draw(folder) == "ok"
    assert not (tmp_path / "matplotlib.py").exists()
    # The planted sitecustomize.py died with the first run's private /tmp.
    nxt = _group(tmp_path, "next", "import torch\n\ndef sample(model, n, generator):\n"
                 "    return torch.randn(n, 16, generator=generator)\n")
    assert _draw(nxt) == "ok"


@needs_bwrap
def test_reasons_are_one_safe_line(tmp_path) -> None:
    folder = _group(tmp_path, "injector", """
        import sys

        def sample(model, n, generator):
            sys.stderr.write('noise\\n' * 200000)  # megabytes of stderr
            raise ValueError('=HYPERLINK("http://evil", "click")\\n' + 'A' * 100000)
        """)
    row = project.evaluate(folder, N, timeout=20, limits=SMALL)
    reason = row["reason"]
    assert row["status"] == "error"
    assert "\n" not in reason and len(reason) <= project.MAX_REASON
    assert reason.startswith("sample() raised ValueError") and "HYPERLINK" in reason
    for bad in ("=HYPERLINK", "+cmd", "-1+1", "@SUM(A1)", "\t=1"):
        assert project.sandbox_mod.sanitise(bad)[0] not in "=+-@\t"


def test_group_names_cannot_be_formulas(tmp_path) -> None:
    # No model.pt: nothing runs, so this test needs no sandbox and takes a second.
    subs = tmp_path / "subs"
    (subs / "=cmd|' -C calc'!A0").mkdir(parents=True)
    (subs / "@SUM(1)").mkdir()
    history = tmp_path / "history.csv"
    project.leaderboard(subs, history, tmp_path / "site", date="2026-02-01", sandbox=False)
    groups = sorted(r["group"] for r in csv.DictReader(history.open()))
    assert groups == ["'=cmd|' -C calc'!A0", "'@SUM(1)"]
    with pytest.raises(ValueError, match="name"):
        project.safe_group_name("")


def test_a_group_folder_linked_elsewhere_is_refused(tmp_path) -> None:
    # A link to / would bind the whole disk at /submission: refused before anything runs.
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "linked").symlink_to("/", target_is_directory=True)
    with pytest.raises(project.SubmissionError, match="symbolic link"):
        project.draw_samples(subs / "linked", N)


def test_without_bwrap_the_kit_refuses_to_run(tmp_path) -> None:
    _group(tmp_path / "subs", "g", "")
    env = {**os.environ, "PATH": str(tmp_path)}  # no bwrap on this PATH
    done = subprocess.run([sys.executable, "-m", "coursekit.project", "leaderboard",
                           str(tmp_path / "subs"), "--history", str(tmp_path / "h.csv"),
                           "--out", str(tmp_path / "site")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "bubblewrap" in done.stderr and "apt-get install" in done.stderr
    assert "--no-sandbox" in done.stderr
    assert not (tmp_path / "h.csv").exists()  # refused before evaluating anything


def test_sandbox_arguments_are_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match="memory"):
        sandbox.Limits(memory=10)
    with pytest.raises(ValueError, match="processes"):
        sandbox.Limits(processes=True)
    with pytest.raises(ValueError, match="limit"):
        sandbox.sanitise("x", limit=2)
    with pytest.raises(ValueError, match="timeout"):
        sandbox.run(["python"], timeout=-1, sandbox=False)
    with pytest.raises(ValueError, match="sandbox"):
        project.draw_samples(tmp_path, N, sandbox="no")
    with pytest.raises(ValueError, match="history"):
        project.leaderboard(tmp_path, tmp_path / "nope" / "h.csv", tmp_path / "s")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="site"):
        project.leaderboard(tmp_path, tmp_path / "h.csv", tmp_path / "file" / "site")


_CRITIC = """
import torch
from pathlib import Path

EXTRA_FILES = ["critic.pt"]  # declared: the evaluator checks they are plain files


def _critic():
    critic = torch.nn.Linear(64, 1)
    state = torch.load(Path(__file__).parent / "critic.pt", weights_only=True)
    critic.load_state_dict(state)
    return critic
"""


@needs_bwrap
def test_the_latent_contract_through_the_cli(tmp_path) -> None:
    """As the workflow runs it: groups return latent vectors z of shape (n, 16); the
    evaluator makes the images with its own SharedGenerator. Wrong shapes, dtypes, NaN,
    huge values, linked, oversized or NaN weights are refused with one line; rejection with
    a declared critic and Langevin in latent space fit the contract."""
    root = tmp_path / "subs"
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-1312")
    _group(root, "images", "import torch\ndef sample(model, n, generator):\n"
                           "    return torch.rand(n, 1, 8, 8, generator=generator)\n")
    _group(root, "ints", "import torch\ndef sample(model, n, generator):\n"
                         "    return torch.ones(n, 16, dtype=torch.int64)\n")
    _group(root, "nan_z", "import torch\ndef sample(model, n, generator):\n"
                          "    return torch.full((n, 16), float('nan'))\n")
    _group(root, "huge_z", "import torch\ndef sample(model, n, generator):\n"
                           "    return 1e30 * torch.ones(n, 16)\n")
    linked = _group(root, "linked", "")
    (linked / "model.pt").unlink()
    (linked / "model.pt").symlink_to(secret)
    big = _group(root, "big", "")
    (big / "model.pt").write_bytes(b"\0" * (project.MAX_WEIGHTS_BYTES + 1))
    nan_w = _group(root, "nan_weights", "")
    state = project.SharedGenerator().state_dict()
    state["net.0.bias"][:] = float("nan")
    torch.save(state, nan_w / "model.pt")
    torch.manual_seed(1)
    for name, code in (("rejection", _CRITIC + """
def sample(model, n, generator):
    critic, kept = _critic(), []
    while sum(len(z) for z in kept) < n:  # keep the half the critic scores highest
        z = torch.randn(2 * n, 16, generator=generator)
        score = critic(model(z).flatten(1)).squeeze(1)
        kept.append(z[score > score.median()])
    return torch.cat(kept)[:n]
"""), ("langevin", _CRITIC + """
def sample(model, n, generator):
    critic = _critic()
    z = torch.randn(n, 16, generator=generator)
    with torch.enable_grad():  # the evaluator calls sample() under no_grad
        for _ in range(20):  # Langevin in z on 0.5 |z|^2 - critic(G(z))
            z = z.detach().requires_grad_(True)
            energy = 0.5 * (z ** 2).sum() - critic(model(z).flatten(1)).sum()
            (grad,) = torch.autograd.grad(energy, z)
            noise = torch.randn(z.shape, generator=generator)
            z = z - 0.01 * grad + (2 * 0.01) ** 0.5 * noise
    return z.detach()
""")):
        folder = _group(root, name, code)
        torch.save(torch.nn.Linear(64, 1).state_dict(), folder / "critic.pt")
    missing = _group(root, "undeclared", _CRITIC.replace('"critic.pt"]', '"gone.pt"]')
                     + "def sample(model, n, generator):\n    return torch.randn(n, 16)\n")
    assert not (missing / "gone.pt").exists()
    history, site = tmp_path / "h.csv", tmp_path / "site"
    done = subprocess.run([sys.executable, "-I", "-m", "coursekit.project", "leaderboard",
                           str(root), "--history", str(history), "--out", str(site),
                           "--n", str(N), "--sets", "1", "--timeout", "60",
                           "--date", "2026-03-02"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["group"]: r for r in csv.DictReader(history.open())}
    want = {"images": "expected latent vectors of shape (50, 16) (images?",
            "ints": "dtype torch.int64", "nan_z": "latent vectors contain NaN",
            "huge_z": "leave [-100, 100]", "linked": "model.pt is a symbolic link",
            "big": "more than", "nan_weights": "NaN or infinite weights",
            "undeclared": "no gone.pt in the submission folder"}
    for group, reason in want.items():
        assert rows[group]["status"] == "error", group
        assert reason in rows[group]["reason"], (group, rows[group]["reason"])
        assert "\n" not in rows[group]["reason"]
    assert "TOPSECRET" not in history.read_text()
    for group in ("rejection", "langevin"):
        assert rows[group]["status"] == "ok", rows[group]["reason"]
        assert "critic.pt:" in rows[group]["files"] and "sampling.py:" in rows[group]["files"]
