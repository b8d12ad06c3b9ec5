"""CSV files qrflow writes for people to open in a spreadsheet (scans.csv, analytics.csv, a batch's
manifest.csv): their cells hold what clients sent (titles, targets, user agents, referrers)."""

from __future__ import annotations

# A spreadsheet runs a cell that starts with one of these as a formula (a tab or CR ahead of one too).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """A text cell that a spreadsheet would run gets a leading apostrophe (OWASP's CSV injection advice);
    numbers and everything else are left as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value
