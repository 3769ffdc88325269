"""Tracebacks formatted once per error, for the span, stdout and OTLP logs.

A custom piece, kept because it was measured: the text ``traceback.format_exception`` prints,
without Python 3.11's ``^^^^`` column markers, for 1/25 of the CPU.

Measured 2026-12-04 (CPython 3.11.7, the FastAPI and Starlette of requirements.txt): an error
raised in a route and caught in an outer ASGI middleware, 23 frames, formatted 200 times,
``time.process_time`` per call, 3 alternated runs: ``TracebackException`` 791-903 us, this
module 29-31 us. One ``/error`` request costs ~2,094 us of CPU in all (bench/results.md, the
10% /error mix), so the library's formatter would add ~38% to it. ``make bench`` weighs it
on the whole server (bench/stock_fastapi.py, ``tracebacks``): on 2026-12-04 the 10% /error mix
cost 1,463k instructions a request (callgrind) with this module and 2,073k with
``traceback.format_exception``, 29% saved, over the 10% a custom piece must save. The cost is
in finding each marker's columns, which walks the positions of the frame's whole code object, and in
re-checking every source file on disk (a stat per file per traceback).

Exception groups are rare and nested; they are formatted by ``TracebackException`` itself,
markers removed, so no sub-exception is ever left out.

tests/test_tracebacks.py compares the output with the standard library's and fails when the
Python minor version changes: its traceback format changes between minor versions.
"""

from __future__ import annotations

import linecache
import re
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType


# A line of column markers, also inside an exception group's "|" margin.
_MARKERS = re.compile(r"^[ |]*[\^~]+ *$")


def _format_with_groups(error: BaseException) -> str:
    """The standard library's formatting, markers removed."""
    lines = "".join(traceback.TracebackException.from_exception(error).format())
    return "".join(line for line in lines.splitlines(True) if not _MARKERS.match(line))


_CAUSE_NOTE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT_NOTE = "\nDuring handling of the above exception, another exception occurred:\n\n"


def format_traceback(error: BaseException) -> str:
    """``traceback.format_exception`` without Python 3.11's ``^^^^`` column markers.

    Finding a marker's columns walks the positions of the frame's whole code object; through
    the framework's large functions that was ~1 ms of CPU per error, two thirds of formatting
    it. Source lines come from linecache without re-checking each file on disk (a stat per
    file per traceback). Chained causes and contexts are printed as Python prints them, and
    exception groups by the standard library, with each sub-exception.
    """
    chain: list[tuple[BaseException, str]] = []  # (exception, note printed after it)
    seen: set[int] = set()
    current: BaseException | None = error
    note = ""
    while current is not None and id(current) not in seen:
        if isinstance(current, BaseExceptionGroup):
            return _format_with_groups(error)
        seen.add(id(current))
        chain.append((current, note))
        if current.__cause__ is not None:
            current, note = current.__cause__, _CAUSE_NOTE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, note = current.__context__, _CONTEXT_NOTE
        else:
            current = None
    parts: list[str] = []
    for exception, after in reversed(chain):
        if exception.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            _format_frames(exception.__traceback__, parts)
        parts.extend(traceback.format_exception_only(type(exception), exception))
        parts.append(after)
    return "".join(parts)


# Consecutive identical frames (recursion) printed before "[Previous line repeated N more
# times]", as traceback.StackSummary.format does.
_RECURSIVE_CUTOFF = 3


def _format_frames(tb: TracebackType, parts: list[str]) -> None:
    """``StackSummary.format`` without a FrameSummary object per frame (a third of the cost)."""
    last: tuple[str, int | None, str] | None = None
    count = 0
    for frame, lineno in traceback.walk_tb(tb):
        code = frame.f_code
        where = (code.co_filename, lineno, code.co_name)
        if where != last:
            if count > _RECURSIVE_CUTOFF:
                parts.append(_repeated(count - _RECURSIVE_CUTOFF))
            last, count = where, 0
        count += 1
        if count > _RECURSIVE_CUTOFF:
            continue
        parts.append(f'  File "{where[0]}", line {lineno}, in {where[2]}\n')
        source = linecache.getline(where[0], lineno).strip() if lineno is not None else ""
        if source:
            parts.append(f"    {source}\n")
    if count > _RECURSIVE_CUTOFF:
        parts.append(_repeated(count - _RECURSIVE_CUTOFF))


def _repeated(count: int) -> str:
    return f"  [Previous line repeated {count} more time{'s' if count > 1 else ''}]\n"


def qualified_name(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
