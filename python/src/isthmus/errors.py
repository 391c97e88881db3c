"""Exception types of the isthmus package.

Every message follows the same shape: what was expected, what was found, and
where (stage, batch sequence, row range) when that is known.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "IsthmusError",
    "ProtocolError",
    "VersionMismatch",
    "UDFDefinitionError",
    "LoaderError",
    "SchemaError",
    "RowError",
    "UDFError",
    "WorkerError",
]


class IsthmusError(Exception):
    """Base class of every error raised by the isthmus package itself."""


class ProtocolError(IsthmusError):
    """A message does not follow the bridge protocol.

    ``rejection`` is a short machine-readable reason, one of ``"length"``,
    ``"magic"``, ``"version"``, ``"reserved"``, ``"kind"``, ``"direction"``,
    ``"frames"``, ``"json"``, ``"field"`` or ``"payload"``.
    """

    def __init__(self, message: str, rejection: str = "payload") -> None:
        super().__init__(message)
        self.message = message
        self.rejection = rejection


class VersionMismatch(ProtocolError):
    """The peer speaks another major version of the protocol."""

    def __init__(self, message: str, major: int, minor: int) -> None:
        super().__init__(message, "version")
        self.major = major
        self.minor = minor


class UDFDefinitionError(IsthmusError, ValueError):
    """A ``@udf`` declaration is invalid (bad argument, duplicate name)."""


class LoaderError(IsthmusError):
    """A UDF reference could not be resolved or its module failed to import.

    ``traceback`` holds the formatted user traceback when the failure came from
    user code (an import error inside the module, ``setup()`` raising), else "".
    """

    def __init__(self, message: str, *, exc_type: str = "LoaderError", traceback: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.exc_type = exc_type
        self.traceback = traceback


class SchemaError(IsthmusError):
    """A UDF returned something that is not a table, or not the declared schema."""


class RowError(Exception):
    """Raise this from a UDF to point at the input rows that caused the failure.

    ``row_start``/``row_end`` are 0-based positions within the batch the UDF
    received, end exclusive; ``row_end`` defaults to ``row_start + 1``. The host
    uses the range to report the failure and to skip or dead-letter the rows.
    """

    def __init__(self, message: str, row_start: int, row_end: int | None = None) -> None:
        super().__init__(message)
        self.row_start = int(row_start)
        self.row_end = int(row_end) if row_end is not None else self.row_start + 1


class UDFError(IsthmusError):
    """A stage failed inside a worker (an ERROR message from the worker).

    Attributes mirror the ERROR document of the protocol: ``kind`` ("user",
    "schema", "setup", "oom" or "protocol"), ``exc_type``, ``message``,
    ``traceback`` (user frames only), ``stage`` (name), ``stage_index``,
    ``sequence`` and ``attempt`` of the batch, ``row_start``/``row_end``
    within the batch when known, and ``retryable``.
    """

    def __init__(
        self,
        *,
        kind: str,
        exc_type: str,
        message: str,
        traceback: str = "",
        stage: str | None = None,
        stage_index: int | None = None,
        sequence: int = 0,
        attempt: int = 0,
        row_start: int | None = None,
        row_end: int | None = None,
        retryable: bool = False,
    ) -> None:
        self.kind = kind
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback
        self.stage = stage
        self.stage_index = stage_index
        self.sequence = sequence
        self.attempt = attempt
        self.row_start = row_start
        self.row_end = row_end
        self.retryable = retryable
        super().__init__(self._summary())

    def _summary(self) -> str:
        where = [f"stage {self.stage}" if self.stage else "worker"]
        if self.kind != "setup":
            where.append(f"batch {self.sequence}")
        if self.row_start is not None:
            end = self.row_end if self.row_end is not None else self.row_start + 1
            where.append(f"rows {self.row_start}..{end}")
        head = f"{', '.join(where)}: {self.exc_type}: {self.message}"
        if self.traceback:
            return head + "\n" + self.traceback.rstrip("\n")
        return head

    @classmethod
    def from_document(
        cls, doc: dict[str, Any], *, stage_index: int | None, sequence: int, attempt: int
    ) -> "UDFError":
        """Builds the exception from a decoded ERROR JSON document."""

        def opt_int(key: str) -> int | None:
            value = doc.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        return cls(
            kind=str(doc.get("kind", "user")),
            exc_type=str(doc.get("exc_type", "Exception")),
            message=str(doc.get("message", "")),
            traceback=str(doc.get("traceback", "")),
            stage=doc.get("stage") if isinstance(doc.get("stage"), str) else None,
            stage_index=stage_index,
            sequence=sequence,
            attempt=attempt,
            row_start=opt_int("row_start"),
            row_end=opt_int("row_end"),
            retryable=bool(doc.get("retryable", False)),
        )


class WorkerError(IsthmusError):
    """A worker process failed outside the UDF: it exited, crashed, went silent
    or sent something the host could not accept."""

    def __init__(self, message: str, *, exit_code: int | None = None, stderr_tail: str = "") -> None:
        full = message
        if stderr_tail.strip():
            full += "\nworker stderr (last lines):\n" + stderr_tail.rstrip("\n")
        super().__init__(full)
        self.message = message
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
