"""The one error type for bad dataset files.

Why one type: a conversion of 100k files must say *which* file broke, *where* and *why*, so that a user
can fix or skip it (``ms2l data prepare --skip-bad``). Every reader and the store raise
:class:`DataFormatError` with the file, the line when the format is line-based, the field and the
offending value; being a ``ValueError`` it is still caught by generic ``except ValueError`` code.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

_MAX_VALUE_CHARS = 80


class DataFormatError(ValueError):
    """A dataset or store file that does not follow its format.

    Attributes:
        file: the offending file (as given).
        line: 1-based line number for text formats, else ``None``.
        field: the field or structure that is wrong (``"joint count"``, ``"label"``, ``"frames"``).
        value: the offending value (shortened in the message).
        reason: what was expected.
    """

    def __init__(self, file: str | PathLike[str], field: str, value: Any, reason: str = "",
                 *, line: int | None = None) -> None:
        self.file = str(file)
        self.line = line
        self.field = field
        self.value = value
        self.reason = reason
        where = f"{self.file}:{line}" if line is not None else self.file
        shown = repr(value)
        if len(shown) > _MAX_VALUE_CHARS:
            shown = shown[:_MAX_VALUE_CHARS - 3] + "..."
        msg = f"{where}: field {field!r} = {shown}"
        super().__init__(f"{msg}: {reason}" if reason else msg)

    @classmethod
    def from_message(cls, message: str) -> DataFormatError:
        """The error as another process reported it: its message only (file, field and value are in the text)."""
        err = cls.__new__(cls)
        ValueError.__init__(err, message)
        err.file, err.line, err.field, err.value, err.reason = "", None, "", None, ""
        return err

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only ``line`` is not restored by the default exception pickling (Ray ships errors between
        # processes), so rebuild from the attributes.
        return (_rebuild, (self.file, self.field, self.value, self.reason, self.line))


def _rebuild(file: str, field: str, value: Any, reason: str, line: int | None) -> DataFormatError:
    return DataFormatError(file, field, value, reason, line=line)
