"""Run every notebook twice and report any printed number that differs between the runs.

    python benchmarks/check_determinism.py [paths...]

The book promises that running a notebook twice gives the same numbers on the same machine.
Compared: stdout text and text/plain results of every code cell. Ignored: stderr (progress
bars carry timings) and figures. Exit status 1 if any notebook differs. Expected differences:
lines that print a measured wall time, and the os.urandom demonstration of true randomness.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from notebook_times import collect, execute  # the sibling script (run from any folder)

ROOT = Path(__file__).resolve().parents[1]


def printed_outputs(path: Path) -> list[str]:
    nb = execute(path)[0]
    texts = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                texts.append(f"cell {i}: {out['text']}")
            elif "data" in out and "text/plain" in out["data"]:
                plain = out["data"]["text/plain"]
                if "<Figure" not in plain and " at 0x" not in plain:  # reprs with addresses
                    texts.append(f"cell {i}: {plain}")
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=[str(ROOT / "book")])
    args = parser.parse_args(argv)
    differing = 0
    for path in collect(args.paths):
        first, second = printed_outputs(path), printed_outputs(path)
        diffs = [(a, b) for a, b in zip(first, second, strict=False) if a != b]
        if len(first) != len(second):
            diffs.append((f"{len(first)} outputs", f"{len(second)} outputs"))
        differing += bool(diffs)
        print(f"{'DIFFERS' if diffs else 'same   '}  {path.resolve().relative_to(ROOT)}", flush=True)
        for a, b in diffs[:3]:
            print(f"    run 1: {a.strip()[:200]}\n    run 2: {b.strip()[:200]}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
