"""Rules that keep the book honest: the table of contents, the notebooks' form, the algorithms."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomllib
import yaml

import coursekit

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
REPO_URL = "https://github.com/generative-models-course/generative-models-book"

#: The first code cell of every notebook: installs coursekit (pinned to this version) on Colab only.
COLAB_CELL = (
    "# Colab set-up: installs coursekit (the book's helper package) on Colab only.\n"
    "import sys\n"
    "\n"
    'if "google.colab" in sys.modules:\n'
    f'    %pip install -q "coursekit[notebooks] @ git+{REPO_URL}@v{coursekit.__version__}"'
)

#: The numbered algorithms of the slides, in order ("Algorithm 1: LCG" ... "Algorithm 6").
SLIDE_ALGORITHMS = [
    "LCG",
    "Box",  # Box–Muller
    "Sampling from a GMM",
    "GD step",
    "EM",
    "ancestral sampling",
]


def macro_cell_source() -> str:
    """The hidden Markdown cell that defines the notation's LaTeX macros in Jupyter and Colab.

    The book gets the same macros from ``_config.yml`` (MathJax configuration); a notebook opened
    on its own needs them defined in the notebook itself.
    """
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    macros = config["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]
    defs = "".join(f"\\newcommand{{\\{name}}}{{{body}}}" for name, body in macros.items())
    return (
        "<!-- The course's notation as LaTeX macros, for Jupyter and Colab (the book defines "
        "them in _config.yml). -->\n"
        f"${defs}$"
    )


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


def _resolve(entry: str) -> Path | None:
    for suffix in (".ipynb", ".md"):
        p = ROOT / (entry + suffix)
        if p.exists():
            return p
    return None


NOTEBOOKS = sorted(BOOK.rglob("*.ipynb"))
NOTEBOOKS = [p for p in NOTEBOOKS if ".ipynb_checkpoints" not in p.parts]


def test_every_toc_entry_exists():
    missing = [f for f in _toc_files() if _resolve(f) is None]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_every_page_is_in_the_toc():
    listed = {_resolve(f) for f in _toc_files()}
    pages = [p for p in list(BOOK.rglob("*.ipynb")) + list(BOOK.rglob("*.md"))
             if ".ipynb_checkpoints" not in p.parts]
    orphans = [str(p.relative_to(ROOT)) for p in pages if p not in listed]
    assert not orphans, f"pages missing from _toc.yml: {orphans}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(BOOK)))
def test_notebook_has_no_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; commit notebooks without them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(BOOK)))
def test_notebook_starts_with_colab_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cell"
    assert "".join(code[0]["source"]).strip() == COLAB_CELL, (
        f"{path.name}: the first code cell must be the standard Colab set-up cell:\n{COLAB_CELL}"
    )
    # Hidden in the rendered book (it means nothing there), still run by Colab and the tests.
    assert "remove-cell" in code[0].get("metadata", {}).get("tags", []), (
        f"{path.name}: tag the Colab set-up cell with 'remove-cell'"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(BOOK)))
def test_notebook_defines_the_notation_macros(path):
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "markdown"
             and "".join(c["source"]).strip() == macro_cell_source()]
    assert cells and "remove-cell" in cells[0]["metadata"].get("tags", []), (
        f"{path.name}: add, after the Colab cell, a Markdown cell tagged 'remove-cell' with:\n"
        f"{macro_cell_source()}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(BOOK)))
def test_notebook_imports_coursekit_and_checks(path):
    nb = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert re.search(r"^\s*(import coursekit|from coursekit)", code, re.M), path.name
    assert re.search(r"^\s*assert ", code, re.M), f"{path.name} has no assert: where are the checks?"


#: Ways to seed a generator that would bypass ``coursekit.seeding`` (and so ``COURSEKIT_SEED``).
SEEDING_BYPASSES = re.compile(
    r"torch\.manual_seed\(|torch\.Generator\(|np\.random\.seed\(|np\.random\.default_rng\(|"
    r"random\.seed\(|random_state=\d"
)
#: Notebooks allowed to call NumPy's generator API directly, and why.
SEEDING_EXEMPT = {
    # It teaches NumPy's own API (PCG64, spawn); its SEED comes from ck.seeding.derive_seed.
    "part1_sampling/pseudo_random_numbers.ipynb": "ck.seeding.derive_seed(",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(BOOK)))
def test_notebook_seeds_through_coursekit(path):
    """Every seed goes through coursekit.seeding, so COURSEKIT_SEED moves all of a chapter's
    randomness together (benchmarks/check_seeds.py relies on it)."""
    nb = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    name = str(path.relative_to(BOOK))
    if name in SEEDING_EXEMPT:
        assert SEEDING_EXEMPT[name] in code, f"{name}: its seed must come from coursekit.seeding"
        return
    bad = [line.strip() for line in code.splitlines() if SEEDING_BYPASSES.search(line)]
    assert not bad, (
        f"{name} seeds a generator behind coursekit.seeding's back: {bad[:3]}; use "
        "ck.seeding.rng(k), ck.seeding.generator(k), ck.seeding.manual_seed(k) or "
        "ck.seeding.derive_seed(k)"
    )


def _numbered_algorithms() -> list[str]:
    """Titles of the numbered ``{prf:algorithm}`` blocks, in book order."""
    titles = []
    for entry in _toc_files():
        path = _resolve(entry)
        if path.suffix == ".ipynb":
            nb = json.loads(path.read_text())
            text = "\n".join("".join(c["source"]) for c in nb["cells"]
                             if c["cell_type"] == "markdown")
        else:
            text = path.read_text()
        for m in re.finditer(r"^(`{3,}|:{3,})\{prf:algorithm\}(.*)\n((?::.*\n)*)", text, re.M):
            if ":nonumber:" not in m.group(3):
                titles.append(m.group(2).strip())
    return titles


def test_algorithms_are_numbered_as_on_the_slides():
    titles = _numbered_algorithms()
    assert len(titles) <= len(SLIDE_ALGORITHMS), (
        f"numbered algorithms beyond the slides' six: {titles}; use :nonumber: for extra ones"
    )
    for i, title in enumerate(titles):
        assert SLIDE_ALGORITHMS[i].lower() in title.lower(), (
            f"numbered algorithm {i + 1} is {title!r}; the slides' Algorithm {i + 1} is "
            f"{SLIDE_ALGORITHMS[i]!r}"
        )


def test_citations_exist_in_bibliography():
    bib = (ROOT / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    used = set()
    for path in list(BOOK.rglob("*.ipynb")) + list(BOOK.rglob("*.md")):
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", path.read_text()):
            used.update(k.strip() for k in group.split(","))
    assert used <= keys, f"cited but not in references.bib: {sorted(used - keys)}"


def test_readme_links_every_notebook_to_colab():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        rel = path.relative_to(ROOT).as_posix()
        link = f"https://colab.research.google.com/github/{REPO_URL.split('github.com/')[1]}/blob/main/{rel}"
        assert link in readme, f"README has no Colab link for {rel}"


def test_version_is_consistent():
    # The version is defined once, in coursekit/__init__.py, and read by setuptools.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"] == "coursekit.__version__"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == REPO_URL
