"""Markdown tables, for reports and the generated results page."""

from __future__ import annotations

from typing import Any, Sequence


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of `rows`.

    Args:
        rows: one dict per row; missing keys give empty cells.
        columns: column order (default: every key, in order of first appearance).

    Returns:
        The table, ending in a newline; `"_(none)_\\n"` when there are no rows.
    """
    if not rows:
        return "_(none)_\n"
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
