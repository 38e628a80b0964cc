"""Show each progress bar as its final line in the built book.

A tqdm bar redraws itself by writing ``\\r`` and the new line, many times. Jupyter and Colab
interpret the carriage return; the saved notebook keeps every redraw as a separate stream
output. myst-nb's ``nb_merge_streams`` joins those outputs but puts a newline between them, so
every redraw would still show as a line of its own. This extension replaces that merge by one
that concatenates the stream text as the kernel wrote it and then keeps, on each line, only
what follows the last carriage return: what a terminal would show at the end.

Why it stays (checked against the pinned versions, myst-nb 1.4.0 via jupyter-book
1.0.4.post1): ``myst_nb.core.render.coalesce_streams`` right-strips every stream output and
appends ``"\n"`` before concatenating, and its carriage-return rule (``.*\r(?=[^\n])``)
only acts within one line. Three tqdm redraws ``"\r 0%"``, ``"\r 33%"``, ``"\r100%\n"``
therefore render as three lines with myst-nb alone, and as the single final line
``100%`` with this extension (reproduced in tests/test_conventions.py). Remove it when
myst-nb's merge keeps the kernel's text as written.
"""

from __future__ import annotations

from typing import Any

import myst_nb.core.render as _render


def _final_line(line: str) -> str:
    line = line.rstrip("\r")
    return line.rsplit("\r", 1)[-1]


def coalesce_streams(outputs: list) -> list:
    """Merge stream outputs by name (stdout, stderr) and apply carriage returns."""
    merged: list = []
    streams: dict[str, Any] = {}
    for output in outputs or []:
        if output["output_type"] == "stream":
            if output["name"] in streams:
                streams[output["name"]]["text"] += output["text"]
                continue
            streams[output["name"]] = output
        merged.append(output)
    for output in streams.values():
        output["text"] = "\n".join(
            _final_line(line) for line in output["text"].split("\n")
        )
    return merged


def setup(app: Any) -> dict:
    _render.coalesce_streams = coalesce_streams
    return {"parallel_read_safe": True, "parallel_write_safe": True}
