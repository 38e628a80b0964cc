"""Turn a practical's solution notebook into the student handout.

A practical is written once, as the solution notebook that the book renders
and the tests execute. Two kinds of mark-up say what the student must not see.

**Solution code** sits, inside code cells, between two marker lines::

    def reparameterize(mu, logvar):
        ### BEGIN SOLUTION (Exercise 3: draw z = mu + std * eps, eps ~ N(0, I))
        std = torch.exp(0.5 * logvar)
        return mu + std * torch.randn_like(std)
        ### END SOLUTION

The handout replaces every such block (markers included) by a stub at the
indentation of the BEGIN line::

    def reparameterize(mu, logvar):
        # YOUR CODE HERE
        raise NotImplementedError("Exercise 3: draw z = mu + std * eps, eps ~ N(0, I)")

The text in parentheses after ``### BEGIN SOLUTION`` is the stub's message (it
says which exercise and what to write, so a cell run too early names the
exercise to do first). Without it the message is made from the nearest
``## Exercise N...`` heading above the cell and the enclosing ``def``/``class``:
``"Exercise 5: write the body of elbo"``.

**Solution-only cells** carry the cell tag ``solution-only`` (in Jupyter:
View > Cell toolbar > Tags; in the JSON: ``"metadata": {"tags":
["solution-only"]}``). The handout drops them entirely. Use it for the
Markdown that answers an open question (the measured answer), a link to the
solution notebook (its "Open in Colab" badge), or a code cell that only
exists to back such an answer. A solution-only cell may not hold solution
markers (the whole cell goes anyway).

Everything else is kept: the code before and after a block in the same cell,
the instructions, the check cells and the Colab set-up cell. Outputs and
execution counts are cleared, a note under the title says it is the student
version, and the file is written with ``nbformat`` in the source's format
version, so that regenerating from an unchanged source gives a byte-identical
file.

Usage (from the root of the repository)::

    python tools/handout.py book/practicals/practical1_vae.ipynb -o handouts/

**All or nothing.** Several sources may be given at once. Every source is
read, validated and rendered in memory first; then each handout is written
to a temporary file in the output folder, and only when all of them are
written are they moved into place. A malformed marker (an END without a
BEGIN, a BEGIN inside an open block, a block left open at the end of a cell,
or a line that looks like a marker but is misspelt), an unreadable file, a
file that is not a valid nbformat-4 notebook, or an output folder that cannot
be written ends with a one-line error naming the file, followed by "no
handout was written", a non-zero exit code, and no file changed.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB_COMMENT = "# YOUR CODE HERE"
#: Cell tag of a cell that only the solution notebook has (dropped from the handout).
SOLUTION_ONLY_TAG = "solution-only"

#: Id of the note cell inserted under the title (fixed, so the output is deterministic).
NOTE_CELL_ID = "student-version-note"
STUDENT_SUFFIX = " (student version)"
# Plain Markdown (no MyST directive): the handout is read in Colab and Jupyter, not in the book.
NOTE = (
    "> **Student version.** Every `# YOUR CODE HERE` stub is yours to fill in: replace it and the "
    "`raise NotImplementedError(...)` line under it by your code (the message says which "
    "exercise it is). Then run the check cell under the exercise: it tells you whether your "
    "code is right before you move on."
)

# Any line that *looks* like a marker: a comment mentioning BEGIN/END SOLUTION.
_MARKER_LIKE = re.compile(r"^\s*#+\s*(BEGIN|END)[\s_-]*SOLUTION", re.IGNORECASE)
# A BEGIN line, optionally followed by the stub's message in parentheses.
_BEGIN_LINE = re.compile(r"^### BEGIN SOLUTION(?: \((?P<message>.*)\))?$")
_EXERCISE_HEADING = re.compile(r"^#{1,6}\s+(Exercise\s+[0-9]+[a-z]?)\b", re.MULTILINE)
_DEF = re.compile(r"^(?P<indent>\s*)(?:async\s+)?(?:def|class)\s+(?P<name>\w+)")


class HandoutError(ValueError):
    """A solution notebook that cannot be turned into a handout (malformed markers, bad input)."""


def _one_line(text: object) -> str:
    """The first line of an error's text (nbformat's validation errors span many lines)."""
    lines = [s.strip() for s in str(text).strip().splitlines() if s.strip()]
    return lines[0] if lines else type(text).__name__


def _cell_label(notebook: str, index: int, source: str) -> str:
    first = source.splitlines()[0] if source.strip() else "<empty cell>"
    return f"{notebook}, cell {index} (first line: {first!r})"


def parse_begin(line: str) -> tuple[bool, str | None]:
    """Is ``line`` (stripped) a BEGIN marker, and which stub message does it carry (or None)?"""
    m = _BEGIN_LINE.match(line.strip())
    if m is None:
        return False, None
    message = m.group("message")
    return True, (message.strip() or None) if message is not None else None


def is_marker(line: str) -> bool:
    """True for a well-formed BEGIN (with or without a message) or END line."""
    return line.strip() == END or parse_begin(line)[0]


def _enclosing_name(lines: Sequence[str], lineno: int, indent: str) -> str | None:
    """The name of the innermost ``def``/``class`` whose body holds line ``lineno`` (1-based)."""
    for line in reversed(lines[: lineno - 1]):
        m = _DEF.match(line)
        if m and len(m.group("indent")) < len(indent):
            return m.group("name")
    return None


def _default_message(exercise: str | None, name: str | None) -> str:
    what = f"write the body of {name}" if name else "write the missing code here"
    return f"{exercise}: {what}" if exercise else f"Exercise: {what}"


def strip_solutions(
    source: str, *, notebook: str = "<notebook>", cell_index: int = 0,
    exercise: str | None = None,
) -> str:
    """Replace every solution block of one code cell's source by the stub.

    Args:
        source: the cell's source code.
        notebook, cell_index: where the cell comes from, for error messages.
        exercise: the exercise the cell belongs to (e.g. ``"Exercise 5"``), used
            in the stub's message when the BEGIN line carries none.

    Returns:
        the source with each ``BEGIN``..``END`` block (markers included)
        replaced by ``# YOUR CODE HERE`` / ``raise NotImplementedError(message)``
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
        is_begin, message = parse_begin(stripped)
        if _MARKER_LIKE.match(line) and not is_begin and stripped != END:
            raise HandoutError(
                f"{_cell_label(notebook, cell_index, source)}: line {lineno} looks like a "
                f"solution marker but is not exactly {BEGIN!r} (optionally followed by "
                f"' (stub message)') or {END!r}: {stripped!r}"
            )
        if is_begin:
            if open_line is not None:
                raise HandoutError(
                    f"{_cell_label(notebook, cell_index, source)}: nested {BEGIN!r} at line "
                    f"{lineno} (the block opened at line {open_line} is not closed yet)"
                )
            open_line = lineno
            indent = line[: len(line) - len(line.lstrip())]
            if message is None:
                message = _default_message(exercise, _enclosing_name(lines, lineno, indent))
            out.append(indent + STUB_COMMENT)
            out.append(f"{indent}raise NotImplementedError({message!r})")
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
    return any(parse_begin(line)[0] for line in source.split("\n"))


def is_solution_only(cell: nbformat.NotebookNode) -> bool:
    """True when the cell carries the ``solution-only`` tag (dropped from the handout)."""
    return SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", [])


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
        a new notebook: cells tagged ``solution-only`` removed, solution blocks
        replaced by stubs, outputs and execution counts cleared, the title
        marked "(student version)" and a note cell inserted under it.

    Raises:
        HandoutError: malformed markers (see :func:`strip_solutions`), markers
            in a Markdown or solution-only cell, or a notebook without any
            solution block (almost surely the wrong file).
    """
    student = copy.deepcopy(nb)
    n_blocks = 0
    exercise: str | None = None  # the last "## Exercise N" heading seen
    kept = []
    for i, cell in enumerate(student.cells):
        lines = cell.source.split("\n")
        marker_lines = [line for line in lines if _MARKER_LIKE.match(line)]
        if is_solution_only(cell):
            if marker_lines:
                raise HandoutError(
                    f"{_cell_label(name, i, cell.source)}: a cell tagged "
                    f"{SOLUTION_ONLY_TAG!r} is dropped whole; it may not hold solution markers"
                )
            continue
        if cell.cell_type == "markdown":
            headings = _EXERCISE_HEADING.findall(cell.source)
            if headings:
                exercise = headings[-1]
        if cell.cell_type == "code":
            n_blocks += has_solution(cell.source)
            cell.source = strip_solutions(cell.source, notebook=name, cell_index=i,
                                          exercise=exercise)
            cell.outputs = []
            cell.execution_count = None
        elif marker_lines:
            raise HandoutError(
                f"{_cell_label(name, i, cell.source)}: solution markers are only allowed in "
                f"code cells (this is a {cell.cell_type} cell)"
            )
        kept.append(cell)
    if n_blocks == 0:
        raise HandoutError(f"{name}: no {BEGIN!r} block in any code cell; is it a practical?")
    student.cells = kept
    title = _mark_title(student)
    note = nbformat.v4.new_markdown_cell(NOTE)
    if kept and "id" in kept[0]:  # nbformat >= 4.5 cells carry ids
        note["id"] = NOTE_CELL_ID
    else:
        note.pop("id", None)
    student.cells.insert(title + 1, note)
    return student


def _to_text(nb: nbformat.NotebookNode) -> str:
    text = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def read_notebook(source: str | Path) -> nbformat.NotebookNode:
    """Read and validate one solution notebook (nbformat 4), or raise a one-line HandoutError."""
    source = Path(source)
    if source.is_dir():
        raise HandoutError(f"{source}: is a folder, not a notebook")
    try:
        nb = nbformat.read(source, as_version=nbformat.NO_CONVERT)
    except FileNotFoundError as err:
        raise HandoutError(f"{source}: no such notebook") from err
    except (OSError, UnicodeDecodeError) as err:
        raise HandoutError(f"{source}: cannot be read ({_one_line(err)})") from err
    except Exception as err:  # invalid JSON, or JSON that nbformat cannot interpret
        raise HandoutError(f"{source}: cannot be read as a notebook ({_one_line(err)})") from err
    if not isinstance(nb, dict) or "nbformat" not in nb:
        raise HandoutError(f"{source}: is JSON but not a Jupyter notebook (no 'nbformat' key)")
    if nb.get("nbformat") != 4:
        raise HandoutError(
            f"{source}: nbformat version {nb.get('nbformat')!r} is not supported; the generator "
            "reads version 4 notebooks (convert with 'jupyter nbconvert --to notebook')"
        )
    try:
        nbformat.validate(nb)
    except Exception as err:  # nbformat.ValidationError and friends
        raise HandoutError(f"{source}: not a valid nbformat-4 notebook ({_one_line(err)})") from err
    return nb


def render(source: str | Path) -> str:
    """The handout of one solution notebook, as the exact text that gets written."""
    source = Path(source)
    return _to_text(make_handout(read_notebook(source), name=str(source)))


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def generate(sources: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Write the handout of each source into ``out_dir`` (same file name), all or nothing.

    All sources are read, validated and converted in memory first; then every
    handout is written to a temporary file in ``out_dir`` and, once all are
    written, moved into place (``os.replace``). On any error a
    :class:`HandoutError` naming the file is raised, the temporary files are
    removed (and ``out_dir`` too if this call created it), and no handout is
    written or changed.

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
        raise HandoutError(f"{out_dir}: the output exists and is not a folder")
    targets = [out_dir / s.name for s in sources]
    for source, target in zip(sources, targets, strict=True):
        if target.resolve() == source.resolve():
            raise HandoutError(f"{source}: the handout would overwrite its own source")
        if target.is_dir():
            raise HandoutError(f"{target}: a folder stands where the handout should be written")
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HandoutError(f"{out_dir}: cannot create the output folder ({_one_line(err)})") from err
    temps: list[Path] = []
    try:
        for target, text in zip(targets, texts, strict=True):
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=out_dir)
            except OSError as err:
                raise HandoutError(f"{target}: cannot write in {out_dir} ({_one_line(err)})") from err
            temps.append(Path(tmp))
            try:
                with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                    f.write(text)
                os.chmod(tmp, 0o644)
            except OSError as err:
                raise HandoutError(f"{target}: cannot be written ({_one_line(err)})") from err
        for tmp, target in zip(temps, targets, strict=True):
            os.replace(tmp, target)  # atomic on one file system; all temps exist by now
    except BaseException:
        for tmp in temps:
            _remove_quietly(tmp)
        if created:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        raise
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python tools/handout.py SOURCE.ipynb ... -o DIR``."""
    parser = argparse.ArgumentParser(
        prog="python tools/handout.py",
        description="Write the student version of practical notebooks: each "
        f"'{BEGIN}' ... '{END}' block becomes a stub that raises NotImplementedError, "
        f"and cells tagged '{SOLUTION_ONLY_TAG}' are dropped. All or nothing.",
    )
    parser.add_argument("sources", nargs="+", type=Path, help="solution notebook(s) (.ipynb)")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="directory for the handouts (created if needed)")
    args = parser.parse_args(argv)
    try:
        written = generate(args.sources, args.output)
    except HandoutError as err:
        print(f"error: {_one_line(err)}; no handout was written", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
