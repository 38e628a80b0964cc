"""Run notebooks for several seeds (and CPU kernels) and report, for each assert that failed, in how
many runs it held.

    python benchmarks/check_seeds.py                               # every notebook, seeds 0..9
    python benchmarks/check_seeds.py book/lecture2_gans --seeds 10 --jobs 2
    python benchmarks/check_seeds.py book/lecture2_gans/original_gan.ipynb --kernels default avx2 native

Seed s runs the notebook with ``COURSEKIT_SEED=s`` (see ``coursekit.seeding``): every seed of the
chapter moves together, and s = 0 is the book's own run. A kernel other than ``native`` runs it
with ``ATEN_CPU_CAPABILITY`` set (torch's CPU kernels round differently on different processors,
so a trained network is another draw there). ``PYTHONHASHSEED`` is random in every run.

A benchmark, not a test. The book's seed standard (CONTRIBUTING.md): an assert on the outcome of
*training* stays an assert only if it held in every seed of such a run (K >= 10, or K >= 5 with a
margin for a slow chapter); otherwise the chapter prints it with its measured frequency. The
table this prints (Markdown) goes into the README; ``--json`` keeps every run's record.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def collect(paths: list[str]) -> list[Path]:
    """The notebooks named by ``paths`` (files, or folders searched recursively)."""
    notebooks: list[Path] = []
    for p in map(Path, paths):
        notebooks += [p] if p.suffix == ".ipynb" else sorted(p.rglob("*.ipynb"))
    return [p.resolve() for p in notebooks if ".ipynb_checkpoints" not in p.parts]


def _failing_line(traceback: list[str]) -> str:
    """The line of the notebook cell that raised (IPython marks it with an arrow)."""
    for frame in traceback:
        for line in ANSI.sub("", frame).splitlines():
            m = re.match(r"\s*-+>\s*\d+\s(.*)", line)
            if m:
                return m.group(1).strip()
    return ""


def run_once(path: str, seed: int, kernel: str, outside: bool = False) -> dict:
    """Execute one notebook with COURSEKIT_SEED=seed under one CPU kernel; record its errors.

    Execution goes on after an error (later cells may then fail for that reason too); the
    record keeps every error with its cell, exception and the line that raised. With
    ``outside``, the notebook runs from a copy in an empty temporary folder, as on Colab: it
    sees the installed coursekit and nothing else of the repository.
    """
    os.environ["COURSEKIT_SEED"] = str(seed)
    os.environ["PYTHONHASHSEED"] = "random"
    if kernel == "native":
        os.environ.pop("ATEN_CPU_CAPABILITY", None)
    else:
        os.environ["ATEN_CPU_CAPABILITY"] = kernel
    nb = nbformat.read(path, as_version=4)
    folder = tempfile.mkdtemp(prefix="colab-") if outside else str(Path(path).parent)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": folder}})
    start = time.perf_counter()
    try:
        client.execute()
    except Exception as exc:  # a dead kernel or a timeout: one error for the whole run
        return {"path": path, "seed": seed, "kernel": kernel, "seconds": None,
                "errors": [{"cell": -1, "ename": type(exc).__name__, "line": str(exc)[:200]}]}
    finally:
        if outside:
            shutil.rmtree(folder, ignore_errors=True)
    seconds = time.perf_counter() - start
    errors = []
    code_index = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code_index += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append({"cell": code_index, "ename": out["ename"],
                               "line": _failing_line(out.get("traceback", []))[:200]})
    return {"path": path, "seed": seed, "kernel": kernel, "seconds": seconds, "errors": errors}


def report(records: list[dict]) -> str:
    """A Markdown table: one row per notebook, every failing assert with the runs it held in."""
    by_nb: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_nb[r["path"]].append(r)
    lines = ["| notebook | runs | passed in | asserts that failed somewhere (held in) | mean time |",
             "|---|---|---|---|---|"]
    for path in sorted(by_nb):
        runs = by_nb[path]
        n = len(runs)
        clean = sum(not r["errors"] for r in runs)
        failed: dict[tuple, int] = defaultdict(int)
        for r in runs:
            for key in {(e["cell"], e["ename"], e["line"]) for e in r["errors"]}:
                failed[key] += 1
        notes = "; ".join(
            f"code cell {cell} {ename} `{line[:70]}` ({n - k}/{n})"
            for (cell, ename, line), k in sorted(failed.items())
        ) or "—"
        times = [r["seconds"] for r in runs if r["seconds"] is not None]
        mean = f"{sum(times) / len(times):.1f} s" if times else "—"
        name = str(Path(path).relative_to(ROOT)) if Path(path).is_relative_to(ROOT) else path
        lines.append(f"| {name} | {n} | {clean}/{n} | {notes} | {mean} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=[str(ROOT / "book")])
    parser.add_argument("--seeds", type=int, default=10, help="K: seeds 0..K-1 (default 10)")
    parser.add_argument("--first-seed", type=int, default=0, help="start at this seed")
    parser.add_argument("--kernels", nargs="+", default=["native"],
                        help="native and/or ATEN_CPU_CAPABILITY values (default, avx2, avx512)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks run at once")
    parser.add_argument("--json", type=Path, help="write every run's record here")
    parser.add_argument("--outside-repo", action="store_true",
                        help="run each notebook from an empty temporary folder (as on Colab)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.first_seed < 0 or args.jobs < 1:
        parser.error("--seeds and --jobs must be >= 1, --first-seed >= 0")
    tasks = [(str(p), s, k, args.outside_repo) for p in collect(args.paths)
             for s in range(args.first_seed, args.first_seed + args.seeds) for k in args.kernels]
    if not tasks:
        parser.error("no notebook found")
    records = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for rec in pool.map(run_once, *zip(*tasks, strict=True)):
            status = "ok " if not rec["errors"] else f"{len(rec['errors'])} error(s)"
            print(f"{status:>12}  seed {rec['seed']:>3}  {rec['kernel']:>7}  {rec['path']}",
                  file=sys.stderr, flush=True)
            for e in rec["errors"]:
                print(f"{'':>14}code cell {e['cell']} {e['ename']}: {e['line']}", file=sys.stderr)
            records.append(rec)
            if args.json:  # after every run, so that a long run can be read while it goes
                args.json.write_text(json.dumps(records, indent=1))
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    print(report(records))
    return 1 if any(r["errors"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
