"""Unwrapping the exception group of a nursery hidden inside a context manager.

A context manager that runs background tasks in a nursery of its own would
otherwise hand its caller an ``ExceptionGroup`` for an ordinary error raised
in the caller's own block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def single_exception() -> Iterator[None]:
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from group.exceptions[0].__cause__
        raise
