"""Running untrusted Python code in a bubblewrap sandbox that fails closed.

The course project evaluates code written by student groups every morning. That code runs
here, never in the evaluator's own process, under `bubblewrap <https://github.com/containers/
bubblewrap>`_ (``bwrap``, the Debian/Ubuntu package ``bubblewrap``):

- **namespaces**: its own user (no capability), PID (it sees only its own processes, and
  every process it starts dies with it), network (no interface but a dead loopback), IPC and
  UTS namespaces, its own session (no terminal injection);
- **filesystem**: a read-only view of only the interpreter, the Python environment, the
  ``coursekit`` package and the one submission folder (at ``/submission``); a private,
  size-capped ``tmpfs`` at ``/tmp`` (and one at ``/dev/shm``) is the only writable place and
  vanishes with the run; the sandbox's root and ``/dev`` are read-only;
  ``/proc`` shows the sandbox's own processes only (no other process's environment);
- **limits**: per process, an address-space, file-size, open-file and CPU-time cap; for the
  whole sandbox, a watchdog in the evaluator that sums the memory (PSS) of all its processes
  and counts them, and kills everything when a cap is crossed (inside, ``RLIMIT_NPROC`` adds a
  kernel cap on forks when the evaluator is not root);
- **isolated Python**: ``python -I`` (no ``PYTHONPATH``, no user site, no current folder on
  ``sys.path``), so a module planted in the working folder is never imported.

When ``bwrap`` is missing or does not work (no user namespaces), :func:`check_sandbox` raises
:class:`SandboxUnavailable` with the way to install it; the evaluator then refuses to run any
group's code. ``sandbox=False`` (``--no-sandbox`` on the command line) runs the same command
without bubblewrap, with the per-process limits only: for a trusted local run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Longest reason shown to anyone (page, CSV, log), in characters.
MAX_REASON = 300
#: Where the submission folder appears inside the sandbox.
SUBMISSION_MOUNT = "/submission"
#: How often the watchdog counts the sandbox's processes, in seconds (a fork storm of a small
#: process makes a few thousand forks a second: this period is what bounds it when the kernel's
#: per-user cap does not apply, i.e. when the evaluator runs as root).
WATCH_PERIOD = 0.01
#: How often it measures their memory (reading each process's page tables costs more).
MEMORY_PERIOD = 0.05
#: How to get a working sandbox, appended to every "unavailable" message.
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: sudo apt-get install -y bubblewrap, version >= 0.8) "
    "and allow user namespaces (Ubuntu >= 23.10: sudo sysctl -w "
    "kernel.apparmor_restrict_unprivileged_userns=0); for a trusted local run only, pass "
    "--no-sandbox (sandbox=False)")


class SandboxUnavailable(RuntimeError):
    """No working sandbox: the evaluator must not run untrusted code."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps on one sandboxed run.

    Attributes:
        memory: bytes of memory for the whole sandbox (the sum over all its processes), also
            each process's address-space cap.
        processes: most processes (and threads) alive at once, the evaluator's own included.
        disk: bytes of the private ``/tmp``, and of ``/dev/shm`` (also the largest file a
            process may write).
        open_files: most open files per process.
        output: most bytes the sandbox may send back on its standard output.
    """

    memory: int = 2 * 2**30
    processes: int = 32
    disk: int = 64 * 2**20
    open_files: int = 256
    output: int = 64 * 2**20

    def __post_init__(self) -> None:
        minimum = {"memory": 256 * 2**20, "processes": 4, "disk": 2**20, "open_files": 16,
                   "output": 2**10}
        for field, low in minimum.items():
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{field}: expected an integer >= {low}, got {v!r}")


def sanitise(text: Any, limit: int = MAX_REASON) -> str:
    """One safe line from any text: for a CSV cell, an HTML page or a log.

    Control characters and line breaks become spaces, runs of spaces collapse, characters
    that make a spreadsheet read a formula (``= + - @``, tab, CR) are removed from the start,
    and the result is cut to ``limit`` characters (ending with ``...``).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 8:
        raise ValueError(f"limit: expected an integer >= 8, got {limit!r}")
    line = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", " ", str(text))
    line = " ".join(line.split())
    # A cell starting with one of these is a formula in Excel/LibreOffice/Sheets.
    line = line.lstrip("=+-@\t\r ")
    if len(line) > limit:
        line = line[:limit - 3].rstrip() + "..."
    return line or "(no message)"


# ----------------------------------------------------------------------------------------------
# Building the bubblewrap command
# ----------------------------------------------------------------------------------------------


def _system_binds() -> list[str]:
    """Read-only binds of the system libraries the interpreter needs (``/usr`` and the
    top-level links into it on a merged-/usr system)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        p = Path(top)
        if p.is_symlink():  # merged /usr: recreate the link, bind nothing more
            args += ["--symlink", os.readlink(p), top]
        elif p.is_dir():
            args += ["--ro-bind", top, top]
    # The dynamic loader's cache and the time zone: harmless, and the loader is faster with it.
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime"):
        args += ["--ro-bind-try", f, f]
    return args


def _python_binds() -> list[str]:
    """Read-only binds of the interpreter, its standard library, the environment
    (site-packages) and the ``coursekit`` package, each at its own path."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
             Path(sys.executable).resolve().parent,
             Path(__file__).resolve().parent}  # coursekit itself (an editable install or not)
    # Keep only the outermost folders: a bind inside another one adds nothing.
    kept = [r for r in roots if not any(o != r and o in r.parents for o in roots)]
    args = []
    for r in sorted(kept):
        args += ["--ro-bind", str(r), str(r)]
    # The venv's python is a link into the base install; the link's own folder must exist.
    exe = Path(sys.executable)
    if exe.parent.resolve() not in kept and not any(k in exe.parents for k in kept):
        args += ["--ro-bind", str(exe.parent), str(exe.parent)]
    return args


def _check_argv(argv: Any) -> None:
    if (not isinstance(argv, (list, tuple)) or not argv
            or not all(isinstance(a, str) for a in argv)):
        raise ValueError(f"argv: expected a non-empty list of strings, got {argv!r}")


def _check_submission(submission: Any) -> None:
    if submission is not None and not isinstance(submission, (str, os.PathLike)):
        raise TypeError(f"submission: expected a folder path or None, got {type(submission).__name__}")


def bwrap_command(argv: Sequence[str], submission: str | Path | None, limits: Limits,
                  bwrap: str = "bwrap") -> list[str]:
    """The bubblewrap command line that runs ``argv`` in the sandbox.

    ``submission`` (a folder) is bound read-only at :data:`SUBMISSION_MOUNT`; ``/tmp`` is a
    private tmpfs of ``limits.disk`` bytes and the working folder.
    """
    _check_argv(argv)
    _check_submission(submission)
    if not isinstance(limits, Limits):
        raise TypeError(f"limits: expected a coursekit.sandbox.Limits, got {type(limits).__name__}")
    if not isinstance(bwrap, str) or not bwrap:
        raise ValueError(f"bwrap: expected the path of the bwrap program, got {bwrap!r}")
    cmd = [bwrap,
           # Namespaces: a user namespace without capabilities (even when the evaluator is
           # root), its own PIDs, no network, and no way to build further namespaces.
           "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--disable-userns", "--cap-drop", "ALL",
           "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
           # Nothing outlives the run: the sandbox dies with the evaluator, and a new session
           # keeps it away from the evaluator's terminal.
           "--die-with-parent", "--new-session",
           "--proc", "/proc", "--dev", "/dev",
           # The only writable places, each a private tmpfs of limits.disk bytes: /tmp (the
           # working folder) and /dev/shm (shared memory, which multiprocessing uses). They
           # come before the read-only binds, so that an interpreter or a checkout that lives
           # under /tmp (a CI clone) is bound on top of the private /tmp, not hidden by it.
           "--size", str(limits.disk), "--tmpfs", "/dev/shm",
           "--size", str(limits.disk), "--tmpfs", "/tmp",
           *_system_binds(), *_python_binds(), "--chdir", "/tmp",
           "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp",
           "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
           "--setenv", "OMP_NUM_THREADS", "1", "--setenv", "MPLBACKEND", "Agg"]
    if submission is not None:
        cmd += ["--ro-bind", str(Path(submission).resolve()), SUBMISSION_MOUNT]
    # bubblewrap builds the sandbox's root and /dev as tmpfs of unbounded size: once every
    # mount point exists, make both read-only, so that no file can be written outside the
    # capped tmpfs above.
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/"]
    return [*cmd, "--", *argv]


@functools.cache
def _probe(bwrap: str | None) -> str:
    """Run a trivial Python in the sandbox once; "" when it works, else why not."""
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    cmd = bwrap_command([sys.executable, "-I", "-c", "import sys; sys.exit(0)"], None, Limits(),
                        bwrap)
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap could not start: {e}"
    if done.returncode != 0:
        return "bubblewrap does not work here: " + sanitise(
            done.stderr.decode("utf-8", "replace") or f"exit code {done.returncode}")
    return ""


def check_sandbox() -> str:
    """The path of a working ``bwrap``; raises :class:`SandboxUnavailable` (saying how to
    install one) when there is none. The check runs once per process."""
    bwrap = shutil.which("bwrap")
    why = _probe(bwrap)
    if why:
        raise SandboxUnavailable(f"{why}: refusing to run untrusted code. To fix: {INSTALL_HINT}")
    return bwrap


# ----------------------------------------------------------------------------------------------
# Running and watching
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    """The outcome of a sandboxed run.

    ``stdout`` holds what followed the ready line; ``stderr`` its last 64 KiB; ``killed`` is
    empty, or the reason the evaluator stopped the run (``timeout``, ``startup``, ``memory``,
    ``processes``, ``output``).
    """

    returncode: int
    stdout: bytes
    stderr: str
    killed: str = ""
    peak_memory: int = 0
    peak_processes: int = 0


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, over every process visible in this /proc."""
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # it ended while we looked
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ")".
        fields = stat[stat.rfind(b")") + 2:].split()
        kids.setdefault(int(fields[1]), []).append(int(entry.name))
    return kids


def _children(pid: int) -> list[int] | None:
    """The children of ``pid`` from /proc/<pid>/task/*/children (None when the kernel has no
    such file, [] when the process has ended)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids: list[int] = []
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children", "rb") as f:
                kids.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{t}"):
                continue  # the thread ended
            return None
        except OSError:
            continue
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a daemon re-parented to the sandbox's init included).

    Walks the tree's own ``children`` files, so its cost grows with the sandbox, not with the
    machine; falls back to a scan of all of /proc on kernels without them.
    """
    # Its pids are killed: 0 or -1 would signal a process group or every process.
    if isinstance(pid, bool) or not isinstance(pid, int) or pid < 1:
        raise ValueError(f"pid: expected a process id (an integer >= 1), got {pid!r}")
    tree, todo = [], [pid]
    kids_of: dict[int, list[int]] | None = None
    while todo:
        p = todo.pop()
        tree.append(p)
        kids = _children(p) if kids_of is None else kids_of.get(p, [])
        if kids is None:
            kids_of = _children_map()
            kids = kids_of.get(p, [])
        todo.extend(kids)
    return tree


def _memory(pid: int) -> int:
    """Proportional set size of one process in bytes (shared pages split between sharers, so
    that forked children are not counted twice); 0 when it has ended."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _set_limits(limits: Limits, cpu_seconds: int) -> None:  # runs between fork and exec
    import resource

    for which, value in ((resource.RLIMIT_AS, limits.memory),
                         (resource.RLIMIT_FSIZE, limits.disk),
                         (resource.RLIMIT_NOFILE, limits.open_files),
                         (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_CPU, cpu_seconds)):
        resource.setrlimit(which, (value, value))


def _kill_tree(proc: subprocess.Popen, tree: Sequence[int]) -> None:
    """SIGKILL the sandbox: bwrap's process group, then every process seen in its tree (with
    bubblewrap, killing the sandbox's init already ends its whole PID namespace)."""
    for target in (lambda: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _drain(sel: selectors.BaseSelector, proc: subprocess.Popen, out: bytearray,
           err: bytearray) -> None:
    """Read what is left in the pipes of an ended run, without waiting for a grandchild that
    may still hold them open (possible only without bubblewrap)."""
    for _ in range(1024):
        events = sel.select(timeout=0)
        if not events:
            return
        for key, _ in events:
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                sel.unregister(key.fileobj)
            elif key.fileobj is proc.stderr:
                err += chunk
                del err[:-65536]
            else:
                out += chunk


def run(argv: Sequence[str], *, submission: str | Path | None = None, timeout: float,
        startup_limit: float = 180.0, ready: bytes = b"READY\n", limits: Limits | None = None,
        sandbox: bool = True) -> Result:
    """Run ``argv`` (a Python command line) in the sandbox and collect what it returns.

    The clock of ``timeout`` starts when the command writes the line ``ready`` on its standard
    output (its imports are the evaluator's cost, limited by ``startup_limit``); what it
    writes after that line is returned. The run is killed when it takes too long, when its
    processes together hold more than ``limits.memory`` bytes, when more than
    ``limits.processes`` of them (threads counted) are alive, or when its output exceeds
    ``limits.output`` bytes.

    Raises:
        SandboxUnavailable: ``sandbox=True`` and bubblewrap does not work here.
        ValueError: a bad argument (named).
    """
    _check_argv(argv)
    limits = Limits() if limits is None else limits
    if not isinstance(limits, Limits):
        raise TypeError(f"limits: expected a coursekit.sandbox.Limits, got {type(limits).__name__}")
    for name, v in (("timeout", timeout), ("startup_limit", startup_limit)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 86400:
            raise ValueError(f"{name}: expected a number of seconds in (0, 86400], got {v!r}")
    if not isinstance(ready, bytes) or not ready.endswith(b"\n"):
        raise ValueError(f"ready: expected a bytes line ending with a newline, got {ready!r}")
    _check_submission(submission)
    if submission is not None and not Path(submission).is_dir():
        raise ValueError(f"submission: {submission} is not a folder")
    cpu = int(startup_limit + timeout) + 5
    work = None
    if sandbox:
        cmd, cwd, env = bwrap_command(argv, submission, limits, check_sandbox()), None, {}
    else:
        # Trusted run: the same command, per-process limits, an empty working folder.
        work = tempfile.TemporaryDirectory(prefix="coursekit-run-")
        cmd, cwd = list(argv), work.name
        env = {"PATH": "/usr/bin:/bin", "HOME": work.name, "TMPDIR": work.name,
               "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True,
                            preexec_fn=functools.partial(_set_limits, limits, cpu))
    try:
        return _watch(proc, timeout, startup_limit, ready, limits)
    finally:
        if work is not None:
            work.cleanup()


def _watch(proc: subprocess.Popen, timeout: float, startup_limit: float, ready: bytes,
           limits: Limits) -> Result:
    """Drain both pipes, enforce the clocks and the caps, and always leave nothing running."""
    out, err = bytearray(), bytearray()
    started = time.monotonic()
    deadline = started + startup_limit
    is_ready = False
    killed = ""
    peak_mem = peak_procs = mem = 0
    next_watch = next_memory = 0.0
    tree: list[int] = [proc.pid]
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    sel.register(proc.stderr, selectors.EVENT_READ)
    try:
        while True:
            now = time.monotonic()
            if now >= next_watch:
                next_watch = now + WATCH_PERIOD
                tree = process_tree(proc.pid)
                if now >= next_memory:
                    next_memory = now + MEMORY_PERIOD
                    mem = sum(_memory(p) for p in tree)
                procs = sum(_threads(p) for p in tree)
                peak_mem, peak_procs = max(peak_mem, mem), max(peak_procs, procs)
                # bwrap's own two processes are counted too: they are part of the sandbox.
                if mem > limits.memory:
                    killed = "memory"
                elif procs > limits.processes + 2:
                    killed = "processes"
            if not killed and now >= deadline:
                killed = "timeout" if is_ready else "startup"
            if killed:
                break
            if proc.poll() is not None:  # ended: keep what is already in the pipes, then stop
                _drain(sel, proc, out, err)
                break
            if not sel.get_map():  # both pipes closed: wait for the exit, watching still
                try:
                    proc.wait(timeout=WATCH_PERIOD)
                    break
                except subprocess.TimeoutExpired:
                    continue
            for key, _ in sel.select(timeout=WATCH_PERIOD):
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                elif key.fileobj is proc.stderr:
                    err += chunk
                    del err[:-65536]  # keep the end: that is where the traceback is
                else:
                    out += chunk
                    if not is_ready and ready in out:
                        is_ready = True
                        deadline = time.monotonic() + timeout
                    if len(out) > limits.output:
                        killed = "output"
    finally:
        sel.close()
        if killed or proc.poll() is None:
            _kill_tree(proc, tree)
        # With bubblewrap the whole PID namespace is gone once bwrap is; without it, at least
        # its process group is.
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (proc.stdout, proc.stderr):
            f.close()
        if not killed:
            _kill_tree(proc, [])
    at = out.find(ready)
    stdout = bytes(out[at + len(ready):]) if at >= 0 else b""
    return Result(proc.returncode if proc.returncode is not None else -9, stdout,
                  err.decode("utf-8", "replace"), killed, peak_mem, peak_procs)
