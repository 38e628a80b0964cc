"""Drop duplicate <script> entries from every HTML page.

With Sphinx 7 and sphinx-thebe 0.3.1 (pulled in by Jupyter Book 1), the inline thebe
configuration script is registered twice, so each page declares ``const THEBE_JS_URL`` twice
and the browser console shows "Identifier 'THEBE_JS_URL' has already been declared". This
extension keeps the first copy of each script and removes the repeats.

Why it stays: neither myst-nb 1.4.0 nor sphinx-book-theme 1.3.0 has a setting for it; the
script comes from sphinx-thebe 0.3.1 (``init_thebe_core``, an ``env-before-read-docs``
handler that calls ``app.add_js_file(None, body="const THEBE_JS_URL = ...")``), which
Jupyter Book 1.0.4 always loads. Remove it when sphinx-thebe registers the script once
(tests/test_browser.py fails on the console error if it comes back).
"""

from __future__ import annotations

from typing import Any


def _dedupe(
    app: Any, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        # The repeat has filename '' where the original has None: treat both as "inline".
        key = (
            str(getattr(script, "filename", script) or ""),
            str(getattr(script, "attributes", {}).get("body", "")),
        )
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    # In place: other handlers and the template keep a reference to this very list.
    scripts[:] = unique


def setup(app: Any) -> dict:
    # Run last: sphinx-thebe and sphinx-togglebutton add their scripts again in this event.
    app.connect("html-page-context", _dedupe, priority=999)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
