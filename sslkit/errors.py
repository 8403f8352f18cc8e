"""The one exception type that means "the user's input is wrong" (exit code 2)."""

from __future__ import annotations


class BadInput(Exception):
    """Bad input or usage: the message says what is wrong and how to fix it.

    The CLI prints it as a single line and exits with code 2. Library code raises it
    for anything the user can fix (missing files, unknown names, wrong shapes).
    """
