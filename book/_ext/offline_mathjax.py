"""Serve MathJax 3 from the built book itself, so that formulas typeset with no network.

Sphinx loads MathJax from a CDN by default: offline (a classroom with a bad connection, a
train, an exam room) every formula stays raw TeX. This extension copies the MathJax 3 ES5
bundle shipped by the pinned PyPI package ``django-static-mathjax`` (plain static files,
maintained at MIT; it does not need Django) into ``_build/html/_static/mathjax/`` and points
Sphinx's ``mathjax_path`` at it. MathJax loads its extensions and fonts relative to its own
script, so everything it reads then comes from the book. The notation macros of
``_config.yml`` (``mathjax3_config``) keep working: Sphinx still writes that configuration
into every page; only the script's address changes.

Why it stays: this is not a bug work-around but a feature the pinned stack lacks. Sphinx
7.4 (``sphinx.ext.mathjax``), myst-nb 1.4.0 and sphinx-book-theme 1.3.0 can only point
``mathjax_path`` at an address; serving MathJax from the book without this extension would
mean committing the MathJax bundle (megabytes of JavaScript) to the repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.errors import ExtensionError
from sphinx.util.fileutil import copy_asset

#: The MathJax component every page loads (TeX input, CommonHTML output, AMS and autoload).
ENTRY = "tex-chtml.js"


def _bundle() -> Path:
    """The folder of the MathJax 3 ES5 bundle inside the installed package."""
    try:
        import mathjax  # the import name of django-static-mathjax
    except ImportError:
        raise ExtensionError(
            "offline_mathjax: MathJax is not installed; run `pip install -r requirements.txt` "
            "(it pins django-static-mathjax, which ships MathJax 3)"
        ) from None
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / ENTRY).is_file():
        raise ExtensionError(
            f"offline_mathjax: {es5 / ENTRY} is missing; reinstall MathJax"
        )
    return es5


def _point_at_local_copy(app: Any, config: Any) -> None:
    _bundle()  # fail early, before any notebook runs, when the package is missing
    # A relative mathjax_path is resolved against _static/ by Sphinx.
    config.mathjax_path = f"mathjax/{ENTRY}"


def _copy_bundle(app: Any, exc: Exception | None) -> None:
    if exc is None and app.builder.format == "html":
        copy_asset(
            str(_bundle()), str(Path(app.outdir) / "_static" / "mathjax")
        )


def setup(app: Any) -> dict:
    app.connect("config-inited", _point_at_local_copy)
    app.connect("build-finished", _copy_bundle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
