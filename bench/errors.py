"""The one error type for bad input: data, command-line options, a spec or a results folder.

``cace-bench`` prints an ``InputError``'s one-line message and exits 2; any other exception is a
bug in cace-bench (exit 1, the traceback under ``--debug``), never reported as the user's input.
It subclasses ValueError, so code catching ValueError keeps working.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input; the message says what was wrong and what to pass instead."""
