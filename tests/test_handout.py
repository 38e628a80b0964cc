"""The student handouts: generated from the practicals, free of solutions, failing where they should.

Regenerate the committed handouts after editing a practical with
``python tools/handout.py book/practicals/*.ipynb -o handouts/``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

# The handout generator is an instructor's tool, not part of the runtime package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import handout  # noqa: E402
from handout import BEGIN, END, HandoutError, generate, make_handout, strip_solutions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRACTICALS = sorted((ROOT / "book" / "practicals").glob("*.ipynb"))
HANDOUTS = ROOT / "handouts"
REGENERATE = "python tools/handout.py book/practicals/*.ipynb -o handouts/"


def _ids(paths):
    return [p.name for p in paths]


# ---------------------------------------------------------------------------------------------
# The committed handouts
# ---------------------------------------------------------------------------------------------


def test_there_are_practicals_and_handouts():
    assert PRACTICALS, "no practical notebook in book/practicals/"
    committed = sorted(p.name for p in HANDOUTS.glob("*.ipynb"))
    assert committed == [p.name for p in PRACTICALS], (
        f"handouts/ should hold exactly one handout per practical; regenerate with {REGENERATE}"
    )


@pytest.mark.parametrize("source", PRACTICALS, ids=_ids(PRACTICALS))
def test_committed_handout_is_what_the_generator_writes(source, tmp_path):
    (written,) = generate([source], tmp_path)
    committed = HANDOUTS / source.name
    assert committed.exists(), f"{committed} is missing; run {REGENERATE}"
    assert committed.read_bytes() == written.read_bytes(), (
        f"{committed} is out of date with {source.relative_to(ROOT)}; run {REGENERATE}"
    )


def _solution_and_visible_lines(nb) -> tuple[set[str], set[str]]:
    """Stripped lines inside solution blocks, and lines outside them, over all code cells."""
    inside, outside = set(), set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        in_block = False
        for line in cell.source.split("\n"):
            s = line.strip()
            if handout.parse_begin(s)[0]:
                in_block = True
            elif s == END:
                in_block = False
            else:
                (inside if in_block else outside).add(s)
    return inside, outside


@pytest.mark.parametrize("source", PRACTICALS, ids=_ids(PRACTICALS))
def test_handout_contains_no_solution_code(source):
    src = nbformat.read(source, as_version=4)
    student = nbformat.read(HANDOUTS / source.name, as_version=4)
    inside, outside = _solution_and_visible_lines(src)
    # A line is secret unless it is trivial or also shown outside the solution blocks.
    trivial = {"", "pass", "return", ")", "]", "}", "else:", "try:"}
    secret = {s for s in inside if s not in trivial and s not in outside}
    assert secret, f"{source.name}: no solution code found; is the practical marked up?"
    n_stubs = 0
    assert not any(handout.is_solution_only(c) for c in student.cells)
    for i, cell in enumerate(student.cells):
        text = cell.source
        assert BEGIN not in text and END not in text, f"handout cell {i} still has a marker"
        if cell.cell_type == "code":
            stubs = [line.strip() for line in text.split("\n") if "raise NotImplementedError" in line]
            assert all(re.fullmatch(r"raise NotImplementedError\(['\"]Exercise [0-9]+[a-z]?: .+['\"]\)", st)
                       for st in stubs), f"handout cell {i}: a stub does not name its exercise: {stubs}"
        if cell.cell_type == "code":
            leaked = secret & {line.strip() for line in text.split("\n")}
            assert not leaked, f"handout cell {i} contains solution lines: {sorted(leaked)}"
            assert not cell.outputs and cell.execution_count is None, f"cell {i} has outputs"
            n_stubs += text.count("# YOUR CODE HERE\n")
    n_blocks = sum(c.source.count(BEGIN) for c in src.cells if c.cell_type == "code")
    # Nothing from the solution-only cells (answers to open questions, the solution badge).
    hidden = [c.source for c in src.cells if handout.is_solution_only(c)]
    student_text = "\n".join(c.source for c in student.cells)
    for text in hidden:
        for line in text.split("\n"):
            if len(line.strip()) > 30:
                assert line.strip() not in student_text, f"solution-only text leaked: {line!r}"
    assert n_stubs == n_blocks, f"{n_blocks} solution blocks but {n_stubs} stubs"


def _current_env_kernel():
    """A kernel manager running ipykernel in *this* Python (the test environment's packages)."""
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager

    class CurrentEnv(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="current environment", language="python",
            )

    return KernelManager(kernel_name="current-env", kernel_spec_manager=CurrentEnv())


def _first_stub_cell(nb) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "raise NotImplementedError" in cell.source:
            return i
    raise AssertionError("no stub cell in the handout")


@pytest.mark.parametrize("source", PRACTICALS, ids=_ids(PRACTICALS))
def test_student_version_runs_until_the_first_exercise(source, tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(HANDOUTS / source.name, as_version=4)
    client = NotebookClient(nb, km=_current_env_kernel(), timeout=300,
                            resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert info.value.ename == "NotImplementedError", (
        f"the handout failed with {info.value.ename}, not at an exercise stub:\n{info.value}"
    )
    errors = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    expected = _first_stub_cell(nb)
    assert errors == [expected], (
        f"expected the first exercise (cell {expected}) to be the first failing cell, got {errors}"
    )
    ran = [i for i, c in enumerate(nb.cells[:expected]) if c.cell_type == "code"
           and c.execution_count is None and "google.colab" not in c.source]
    assert not ran, f"cells {ran} before the first exercise did not run"


def test_pytest_never_collects_handouts(pytestconfig):
    # The handouts raise NotImplementedError by design: nbval must not run them.
    assert "handouts" in pytestconfig.getini("norecursedirs")
    assert "handouts" not in pytestconfig.getini("testpaths")


# ---------------------------------------------------------------------------------------------
# The generator on small notebooks
# ---------------------------------------------------------------------------------------------


def _practical(*code: str, title: str = "# A practical") -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell("import sys"), new_markdown_cell(title + "\n\nText.")])
    nb.cells += [new_code_cell(c) for c in code]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i}"
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                  "language": "python"}}
    return nb


def _write(nb, path: Path) -> Path:
    nbformat.write(nb, path)
    return path


GOOD = f"x = 1\ndef f(a):\n    {BEGIN}\n    b = a + 1\n    return b\n    {END}\n\nprint(f(x))"


def test_strip_keeps_indentation_and_surrounding_code():
    out = strip_solutions(GOOD)
    assert out == ("x = 1\ndef f(a):\n    # YOUR CODE HERE\n"
                   "    raise NotImplementedError('Exercise: write the body of f')\n"
                   "\nprint(f(x))")
    two = f"{BEGIN}\na = 1\n{END}\nkeep = 2\nif keep:\n        {BEGIN}\n        b = 3\n        {END}"
    assert strip_solutions(two, exercise="Exercise 2") == (
        "# YOUR CODE HERE\nraise NotImplementedError('Exercise 2: write the missing code here')\n"
        "keep = 2\nif keep:\n        # YOUR CODE HERE\n"
        "        raise NotImplementedError('Exercise 2: write the missing code here')")
    assert strip_solutions("no markers\nhere") == "no markers\nhere"


def test_the_begin_line_carries_the_stub_message():
    src = (f"class A:\n    def g(self, x):\n        {BEGIN} (Exercise 3: return x * 2 (a tensor))\n"
           f"        return x * 2\n        {END}")
    out = strip_solutions(src, exercise="Exercise 9")
    assert out == ("class A:\n    def g(self, x):\n        # YOUR CODE HERE\n"
                   "        raise NotImplementedError('Exercise 3: return x * 2 (a tensor)')")
    # Without a message: the exercise heading and the innermost enclosing def.
    auto = strip_solutions(src.replace(" (Exercise 3: return x * 2 (a tensor))", ""),
                           exercise="Exercise 9")
    assert "raise NotImplementedError('Exercise 9: write the body of g')" in auto
    # The stub is valid Python that raises the message.
    ns: dict = {}
    exec(out, ns)
    with pytest.raises(NotImplementedError, match="Exercise 3: return x"):
        ns["A"]().g(1)


def test_stub_messages_come_from_the_exercise_headings():
    nb = _practical(GOOD)
    nb.cells.insert(2, new_markdown_cell("## Exercise 4: the KL term (15 min)\n\nText."))
    nb.cells.append(new_markdown_cell("## Exercise 5b: more"))
    nb.cells.append(new_code_cell(f"def h():\n    {BEGIN}\n    pass\n    {END}"))
    student = make_handout(nb, "demo.ipynb")
    code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    assert "NotImplementedError('Exercise 4: write the body of f')" in code
    assert "NotImplementedError('Exercise 5b: write the body of h')" in code


def test_solution_only_cells_are_dropped():
    nb = _practical(GOOD, "print('check')")
    answer = new_markdown_cell("**Answer.** The KL is 3.2 nats.")
    answer.metadata["tags"] = [handout.SOLUTION_ONLY_TAG]
    badge = new_markdown_cell("[Open the solution](x.ipynb)")
    badge.metadata["tags"] = ["hide-input", handout.SOLUTION_ONLY_TAG]
    code = new_code_cell("print('measured answer')")
    code.metadata["tags"] = [handout.SOLUTION_ONLY_TAG]
    nb.cells[2:2] = [badge]
    nb.cells += [answer, code]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i}"
    student = make_handout(nb, "demo.ipynb")
    text = nbformat.writes(student)
    assert "Open the solution" not in text and "3.2 nats" not in text
    assert "measured answer" not in text
    assert len(student.cells) == len(nb.cells) - 3 + 1  # three dropped, one note added
    nbformat.validate(student)
    # A solution-only cell may not hold markers (they would vanish silently with it).
    bad = _practical(GOOD, f"{BEGIN}\na = 1\n{END}")
    bad.cells[-1].metadata["tags"] = [handout.SOLUTION_ONLY_TAG]
    with pytest.raises(HandoutError, match="dropped whole"):
        make_handout(bad, "bad.ipynb")


def test_make_handout_clears_outputs_marks_title_and_keeps_the_rest():
    nb = _practical(GOOD, "print('check')\nassert True")
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    nb.cells[2].execution_count = 3
    before = nbformat.writes(nb)
    student = make_handout(nb, "demo.ipynb")
    assert nbformat.writes(nb) == before, "the source notebook must not be modified"
    nbformat.validate(student)
    assert student.cells[0].source == "import sys"
    assert student.cells[1].source.startswith("# A practical (student version)")
    assert student.cells[2].cell_type == "markdown"
    assert "student version" in student.cells[2].source.lower()
    assert student.cells[3].source == strip_solutions(GOOD)
    assert student.cells[3].outputs == [] and student.cells[3].execution_count is None
    assert student.cells[4].source == "print('check')\nassert True"
    assert len(student.cells) == len(nb.cells) + 1


def test_output_is_deterministic_and_keeps_the_format_version(tmp_path):
    nb = _practical(GOOD)
    src = _write(nb, tmp_path / "p.ipynb")
    (first,) = generate([src], tmp_path / "a")
    (second,) = generate([src], tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    # An older nbformat 4.4 notebook (no cell ids) stays 4.4 and valid.
    old = _practical(GOOD)
    old.nbformat_minor = 4
    for cell in old.cells:
        del cell["id"]
    src_old = _write(old, tmp_path / "old.ipynb")
    (out,) = generate([src_old], tmp_path / "c")
    student = nbformat.read(out, as_version=nbformat.NO_CONVERT)
    assert (student.nbformat, student.nbformat_minor) == (4, 4)
    assert all("id" not in c for c in student.cells)
    nbformat.validate(student)


MALFORMED = {
    "end-without-begin": (f"a = 1\n{END}\nb = 2", "without a matching"),
    "nested-begin": (f"{BEGIN}\na = 1\n    {BEGIN}\nb = 2\n{END}", "nested"),
    "unclosed-begin": (f"first_line = 0\n{BEGIN}\na = 1", "never closed"),
    "misspelt-marker": ("x = 0\n## BEGIN SOLUTIONS\ny = 1\n### END SOLUTION", "looks like"),
    "lowercase-marker": ("x = 0\n### begin solution\ny = 1\n### END SOLUTION", "looks like"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_markers_name_the_cell_and_write_nothing(case, tmp_path):
    bad_source, phrase = MALFORMED[case]
    good = _write(_practical(GOOD), tmp_path / "good.ipynb")
    bad = _write(_practical(GOOD, bad_source), tmp_path / "bad.ipynb")
    out = tmp_path / "out"
    with pytest.raises(HandoutError) as info:
        generate([good, bad], out)  # the good one comes first: still nothing may be written
    message = str(info.value)
    assert "bad.ipynb" in message and "cell 3" in message and phrase in message
    assert repr(bad_source.split("\n")[0]) in message, "the cell's first line should be quoted"
    assert not out.exists() or not any(out.iterdir()), "nothing may be written on error"


def test_block_left_open_at_the_end_of_a_cell_is_an_error():
    # A block must close in the cell that opened it, even if a later cell has an END.
    nb = _practical(f"{BEGIN}\na = 1", f"b = 2\n{END}")
    with pytest.raises(HandoutError, match="cell 2.*never closed"):
        make_handout(nb, "split.ipynb")


def test_markers_outside_code_cells_and_notebooks_without_blocks_are_rejected(tmp_path):
    nb = _practical(GOOD)
    nb.cells.append(new_markdown_cell(f"{BEGIN}\nsecret\n{END}"))
    with pytest.raises(HandoutError, match="only allowed in code cells"):
        make_handout(nb, "md.ipynb")
    with pytest.raises(HandoutError, match="no '### BEGIN SOLUTION' block"):
        make_handout(_practical("x = 1"), "plain.ipynb")
    with pytest.raises(HandoutError, match="no such notebook"):
        generate([tmp_path / "missing.ipynb"], tmp_path / "out")
    src = _write(_practical(GOOD), tmp_path / "p.ipynb")
    with pytest.raises(HandoutError, match="overwrite its own source"):
        generate([src], tmp_path)
    sub = tmp_path / "sub"
    sub.mkdir()
    other = _write(_practical(GOOD), sub / "p.ipynb")
    with pytest.raises(HandoutError, match="same handout file"):
        generate([src, other], tmp_path / "out")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "handout.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_command_line(tmp_path):
    one = _write(_practical(GOOD), tmp_path / "one.ipynb")
    two = _write(_practical(GOOD, "y = 2"), tmp_path / "two.ipynb")
    done = _cli("one.ipynb", "two.ipynb", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.ipynb", "two.ipynb"]
    assert (tmp_path / "out" / "one.ipynb").read_text() == handout.render(one)
    assert (tmp_path / "out" / "two.ipynb").read_text() == handout.render(two)

    bad = _write(_practical(f"x = 1\n{END}"), tmp_path / "bad.ipynb")
    failed = _cli(str(one), str(bad), "-o", str(tmp_path / "out2"), cwd=tmp_path)
    assert failed.returncode != 0
    assert "bad.ipynb" in failed.stderr and "cell 2" in failed.stderr and "'x = 1'" in failed.stderr
    assert failed.stdout == ""
    assert not (tmp_path / "out2").exists()


# ---------------------------------------------------------------------------------------------
# All or nothing: bad inputs and unwritable folders leave every handout untouched
# ---------------------------------------------------------------------------------------------

BAD_FILES = {
    "not-json": ("this is { not json", "cannot be read as a notebook"),
    "json-list": ("[1, 2, 3]", "cannot be read as a notebook"),
    "json-not-a-notebook": ('{"cells_missing": true, "a": 1}', "not a Jupyter notebook"),
    "nbformat-3": ('{"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}',
                   "nbformat version 3 is not supported"),
    "invalid-nbformat-4": ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, '
                           '"cells": [{"cell_type": "code"}]}', "invalid"),
    "binary": (b"\xff\xfe\x00garbage", "cannot be read"),
}


def _existing_handout(out: Path) -> bytes:
    """An output folder that already holds a handout, to check that a failure leaves it alone."""
    out.mkdir()
    (out / "good.ipynb").write_text("old handout\n")
    return (out / "good.ipynb").read_bytes()


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_name_the_file_and_write_nothing(case, tmp_path):
    content, phrase = BAD_FILES[case]
    good = _write(_practical(GOOD), tmp_path / "good.ipynb")
    bad = tmp_path / "bad.ipynb"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    out = tmp_path / "out"
    before = _existing_handout(out)
    with pytest.raises(HandoutError) as info:
        generate([good, bad], out)
    message = str(info.value)
    assert "bad.ipynb" in message and phrase in message, message
    assert "\n" not in message, "the error should be one line"
    assert sorted(p.name for p in out.iterdir()) == ["good.ipynb"], "no temporary file may stay"
    assert (out / "good.ipynb").read_bytes() == before, "an existing handout was changed"
    if case != "json-not-a-notebook":  # the command line once (a subprocess costs seconds)
        return
    # The command line: one line on stderr, a non-zero exit code, nothing on stdout.
    done = _cli(str(good), str(bad), "-o", str(out), cwd=tmp_path)
    assert done.returncode != 0 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "bad.ipynb" in lines[0] and "no handout was written" in lines[0]
    assert (out / "good.ipynb").read_bytes() == before


def test_a_folder_given_as_source_is_an_error(tmp_path):
    (tmp_path / "dir.ipynb").mkdir()
    with pytest.raises(HandoutError, match="dir.ipynb: is a folder"):
        generate([tmp_path / "dir.ipynb"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="file permissions do not bind root")
def test_unreadable_notebook_and_unwritable_folder(tmp_path):
    good = _write(_practical(GOOD), tmp_path / "good.ipynb")
    locked = _write(_practical(GOOD), tmp_path / "locked.ipynb")
    locked.chmod(0)
    try:
        with pytest.raises(HandoutError, match="locked.ipynb: cannot be read"):
            generate([good, locked], tmp_path / "out")
    finally:
        locked.chmod(0o644)
    assert not (tmp_path / "out").exists()
    ro = tmp_path / "ro"
    before = _existing_handout(ro)
    ro.chmod(0o555)
    try:
        with pytest.raises(HandoutError, match="cannot write in"):
            generate([good, locked], ro)
        assert sorted(p.name for p in ro.iterdir()) == ["good.ipynb"]
        assert (ro / "good.ipynb").read_bytes() == before
    finally:
        ro.chmod(0o755)


def test_output_folder_that_cannot_be_created(tmp_path):
    good = _write(_practical(GOOD), tmp_path / "good.ipynb")
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(HandoutError, match="cannot create the output folder"):
        generate([good], blocker / "sub")
    with pytest.raises(HandoutError, match="not a folder"):
        generate([good], blocker)
    done = _cli(str(good), "-o", str(blocker / "sub"), cwd=tmp_path)
    assert done.returncode != 0 and "no handout was written" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_failure_while_moving_into_place_leaves_no_partial_set(tmp_path, monkeypatch):
    one = _write(_practical(GOOD), tmp_path / "one.ipynb")
    two = _write(_practical(GOOD, "y = 2"), tmp_path / "two.ipynb")
    out = tmp_path / "out"

    def failing_fdopen(*args, **kwargs):
        raise OSError("disk full")

    calls = {"n": 0}
    real_fdopen = os.fdopen

    def second_write_fails(fd, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.close(fd)
            return failing_fdopen()
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(handout.os, "fdopen", second_write_fails)
    with pytest.raises(HandoutError, match="two.ipynb: cannot be written .disk full"):
        generate([one, two], out)
    assert not out.exists(), "the folder this call created must be removed again"
