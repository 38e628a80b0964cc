"""What the practicals' check modules share: how a check fails and how it reports success.

A check cell of a practical calls one ``check_*`` function of
:mod:`coursekit.practical1_checks`, :mod:`~coursekit.practical2_checks` or
:mod:`~coursekit.practical3_checks`. A failed check is an ``AssertionError`` whose message
names the cause (the student reads it under the cell); a passed one prints one line that
starts with ``OK``.
"""

from __future__ import annotations

from typing import Any


def require(condition: Any, message: str) -> None:
    """Raise ``AssertionError(message)`` unless ``condition`` holds.

    An ``AssertionError`` rather than a ``ValueError``: the student's code is wrong, not the
    arguments of the check, and nbval and pytest report it as a failed check.
    """
    if not bool(condition):
        raise AssertionError(message)


def ok(what: str) -> None:
    """Report a passed check: one line, ``OK  <what was checked>``."""
    print(f"OK  {what}")
