"""Time every chapter notebook, one at a time, and print a Markdown table.

    python benchmarks/notebook_times.py            # all notebooks under book/
    python benchmarks/notebook_times.py book/part1_sampling

A benchmark, not a test: the budget is 60 s per notebook on a 2-core CPU, and the
numbers in the README come from this script. Notebooks run in the current Python
environment (the same one `pytest` uses), each in a fresh kernel, from their own folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 60.0


def execute(path: Path) -> tuple[nbformat.NotebookNode, float]:
    """Run a notebook in a fresh kernel from its own folder; return it with its wall time."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def collect(paths: list[str]) -> list[Path]:
    """The notebooks named by ``paths`` (files or folders searched recursively)."""
    notebooks: list[Path] = []
    for p in map(Path, paths):
        notebooks += [p] if p.suffix == ".ipynb" else sorted(p.rglob("*.ipynb"))
    return [p for p in notebooks if ".ipynb_checkpoints" not in p.parts]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=[str(ROOT / "book")])
    args = parser.parse_args(argv)
    rows, total, over = [], 0.0, 0
    for path in collect(args.paths):
        seconds = execute(path)[1]
        total += seconds
        over += seconds > BUDGET_S
        rows.append((path.resolve().relative_to(ROOT).as_posix(), seconds))
        print(f"{seconds:7.1f} s  {rows[-1][0]}", file=sys.stderr, flush=True)
    print("| notebook | seconds |\n|---|---:|")
    for name, seconds in rows:
        print(f"| `{name}` | {seconds:.1f} |")
    print(f"| **total ({len(rows)} notebooks)** | **{total:.1f}** |")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
