"""Traceback formatting that keeps the user's frames and drops the helper's own."""

from __future__ import annotations

import os
import traceback

__all__ = ["format_user_traceback", "exc_type_name"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _internal(filename: str) -> bool:
    return filename.startswith(_PACKAGE_DIR) or filename.startswith("<frozen importlib")


def _strip(te: traceback.TracebackException, seen: set[int]) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if not _internal(f.filename)])
    for sub in (te.__cause__, te.__context__):
        if sub is not None:
            _strip(sub, seen)
    for sub in getattr(te, "exceptions", None) or ():
        _strip(sub, seen)


def format_user_traceback(exc: BaseException) -> str:
    """The formatted traceback of ``exc`` (chained exceptions included) with every
    frame that lies inside the isthmus package or importlib removed."""
    try:
        te = traceback.TracebackException.from_exception(exc)
        _strip(te, set())
        return "".join(te.format())
    except Exception:  # never let formatting hide the original failure
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def exc_text(exc: BaseException) -> str:
    """``str(exc)``, or a description when the exception's own ``__str__`` raises: a UDF's
    broken exception class must still give a one-line cause, not kill the worker."""
    try:
        return str(exc)
    except Exception as inner:  # noqa: BLE001 - any failure of user code
        return f"<{type(exc).__name__} whose __str__ raised {type(inner).__name__}>"


def exc_type_name(exc: BaseException) -> str:
    """The exception's class name as users wrote it (``ValueError``)."""
    return type(exc).__name__
