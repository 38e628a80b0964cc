"""Turn a practical's solution notebook into the student handout.

A practical is written once, as the solution notebook that the book renders
and the tests execute. Inside its code cells the solution code sits between
two marker lines::

    def reparameterize(mu, logvar):
        ### BEGIN SOLUTION
        std = torch.exp(0.5 * logvar)
        return mu + std * torch.randn_like(std)
        ### END SOLUTION

The handout replaces every such block (markers included) by a stub at the
indentation of the BEGIN line::

    def reparameterize(mu, logvar):
        # YOUR CODE HERE
        raise NotImplementedError

and keeps everything else: the code before and after a block in the same
cell, the instructions, the check cells and the Colab set-up cell. Outputs
and execution counts are cleared, a note under the title says it is the
student version, and the file is written with ``nbformat`` in the source's
format version, so that regenerating from an unchanged source gives a
byte-identical file.

Usage (from the root of the repository)::

    python -m coursekit.handout book/practicals/practical1_vae.ipynb -o handouts/

Several sources may be given at once. Every source is checked before any
file is written: a malformed marker (an END without a BEGIN, a BEGIN inside
an open block, a block left open at the end of a cell, or a line that looks
like a marker but is misspelt) stops the generator with a message naming the
notebook and the cell, and nothing is written.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError")

#: Id of the note cell inserted under the title (fixed, so the output is deterministic).
NOTE_CELL_ID = "student-version-note"
STUDENT_SUFFIX = " (student version)"
# Plain Markdown (no MyST directive): the handout is read in Colab and Jupyter, not in the book.
NOTE = (
    "> **Student version.** Every `# YOUR CODE HERE` stub is yours to fill in: replace it and the "
    "`raise NotImplementedError` line under it by your code. Then run the check cell under the "
    "exercise: it tells you whether your code is right before you move on."
)

# Any line that *looks* like a marker: a comment mentioning BEGIN/END SOLUTION.
_MARKER_LIKE = re.compile(r"^\s*#+\s*(BEGIN|END)[\s_-]*SOLUTION", re.IGNORECASE)


class HandoutError(ValueError):
    """A solution notebook that cannot be turned into a handout (malformed markers, bad input)."""


def _cell_label(notebook: str, index: int, source: str) -> str:
    first = source.splitlines()[0] if source.strip() else "<empty cell>"
    return f"{notebook}, cell {index} (first line: {first!r})"


def strip_solutions(source: str, *, notebook: str = "<notebook>", cell_index: int = 0) -> str:
    """Replace every solution block of one code cell's source by the stub.

    Args:
        source: the cell's source code.
        notebook, cell_index: where the cell comes from, for error messages.

    Returns:
        the source with each ``BEGIN``..``END`` block (markers included)
        replaced by ``# YOUR CODE HERE`` / ``raise NotImplementedError``
        indented like the BEGIN line.

    Raises:
        HandoutError: END without BEGIN, nested BEGIN, a block still open at the
            end of the cell, or a misspelt marker line.
    """
    out: list[str] = []
    open_line: int | None = None  # line number of the BEGIN of the block being skipped
    lines = source.split("\n")
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if _MARKER_LIKE.match(line) and stripped not in (BEGIN, END):
            raise HandoutError(
                f"{_cell_label(notebook, cell_index, source)}: line {lineno} looks like a "
                f"solution marker but is not exactly {BEGIN!r} or {END!r}: {stripped!r}"
            )
        if stripped == BEGIN:
            if open_line is not None:
                raise HandoutError(
                    f"{_cell_label(notebook, cell_index, source)}: nested {BEGIN!r} at line "
                    f"{lineno} (the block opened at line {open_line} is not closed yet)"
                )
            open_line = lineno
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + stub for stub in STUB)
        elif stripped == END:
            if open_line is None:
                raise HandoutError(
                    f"{_cell_label(notebook, cell_index, source)}: {END!r} at line {lineno} "
                    f"without a matching {BEGIN!r}"
                )
            open_line = None
        elif open_line is None:
            out.append(line)
    if open_line is not None:
        raise HandoutError(
            f"{_cell_label(notebook, cell_index, source)}: {BEGIN!r} at line {open_line} is "
            f"never closed by {END!r} in the same cell"
        )
    return "\n".join(out)


def has_solution(source: str) -> bool:
    """True when a cell's source holds at least one solution block."""
    return any(line.strip() == BEGIN for line in source.split("\n"))


def _mark_title(nb: nbformat.NotebookNode) -> int:
    """Append " (student version)" to the first level-1 heading; return its cell index (or -1)."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.split("\n")
        for j, line in enumerate(lines):
            if line.startswith("# "):
                if not line.rstrip().endswith(STUDENT_SUFFIX.strip()):
                    lines[j] = line.rstrip() + STUDENT_SUFFIX
                cell.source = "\n".join(lines)
                return i
    return -1


def make_handout(nb: nbformat.NotebookNode, name: str = "<notebook>") -> nbformat.NotebookNode:
    """The student version of a solution notebook (the input is not modified).

    Args:
        nb: the solution notebook, as read by ``nbformat.read``.
        name: the notebook's name, for error messages.

    Returns:
        a new notebook: solution blocks replaced by stubs, outputs and
        execution counts cleared, the title marked "(student version)" and a
        note cell inserted under it.

    Raises:
        HandoutError: malformed markers (see :func:`strip_solutions`), or a
            notebook without any solution block (almost surely the wrong file).
    """
    student = copy.deepcopy(nb)
    n_blocks = 0
    for i, cell in enumerate(student.cells):
        if cell.cell_type == "code":
            n_blocks += has_solution(cell.source)
            cell.source = strip_solutions(cell.source, notebook=name, cell_index=i)
            cell.outputs = []
            cell.execution_count = None
        elif any(_MARKER_LIKE.match(line) for line in cell.source.split("\n")):
            raise HandoutError(
                f"{_cell_label(name, i, cell.source)}: solution markers are only allowed in "
                f"code cells (this is a {cell.cell_type} cell)"
            )
    if n_blocks == 0:
        raise HandoutError(f"{name}: no {BEGIN!r} block in any code cell; is it a practical?")
    title = _mark_title(student)
    note = nbformat.v4.new_markdown_cell(NOTE)
    if "id" in student.cells[0]:  # nbformat >= 4.5 cells carry ids
        note["id"] = NOTE_CELL_ID
    else:
        note.pop("id", None)
    student.cells.insert(title + 1, note)
    return student


def _to_text(nb: nbformat.NotebookNode) -> str:
    text = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def render(source: Path) -> str:
    """The handout of one solution notebook, as the exact text that gets written."""
    source = Path(source)
    try:
        nb = nbformat.read(source, as_version=nbformat.NO_CONVERT)
    except FileNotFoundError as err:
        raise HandoutError(f"{source}: no such notebook") from err
    except Exception as err:  # invalid JSON / not a notebook
        raise HandoutError(f"{source}: cannot be read as a notebook ({err})") from err
    return _to_text(make_handout(nb, name=str(source)))


def generate(sources: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Write the handout of each source into ``out_dir`` (same file name).

    All sources are converted in memory first; if any of them is malformed a
    :class:`HandoutError` is raised and no file is written.

    Returns:
        the paths written.
    """
    if not sources:
        raise HandoutError("no source notebook given")
    sources = [Path(s) for s in sources]
    names = [s.name for s in sources]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise HandoutError(f"two sources would write the same handout file: {clashes}")
    texts = [render(s) for s in sources]  # validate everything before writing anything
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HandoutError(f"output {out_dir} exists and is not a directory")
    targets = [out_dir / s.name for s in sources]
    for source, target in zip(sources, targets, strict=True):
        if target.resolve() == source.resolve():
            raise HandoutError(f"{source}: the handout would overwrite its own source")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for target, text in zip(targets, texts, strict=True):
        with open(target, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m coursekit.handout SOURCE.ipynb ... -o DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m coursekit.handout",
        description="Write the student version of practical notebooks: each "
        f"'{BEGIN}' ... '{END}' block becomes a stub that raises NotImplementedError.",
    )
    parser.add_argument("sources", nargs="+", type=Path, help="solution notebook(s) (.ipynb)")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="directory for the handouts (created if needed)")
    args = parser.parse_args(argv)
    try:
        written = generate(args.sources, args.output)
    except HandoutError as err:
        print(f"error: {err}\nno handout was written.", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
