"""How the CLI shows records: a compact table for a list, `key: value` lines for
one record, or the raw JSON when `--json` is given.

Everything here returns strings; the commands decide where they go.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MISSING = "-"
COLUMN_GAP = "  "
INDENT = "  "


@dataclass(frozen=True)
class Column:
    """One table column: its header and how to render a record's cell."""

    header: str
    render: Callable[[Mapping[str, Any]], str]


def field(name: str, header: str | None = None) -> Column:
    """A column showing the record's `name` field as a scalar."""
    return Column(
        header or name.upper(), lambda record: format_scalar(record.get(name))
    )


def format_json(data: Any) -> str:
    """Indented JSON, keys in the server's order."""
    return json.dumps(data, indent=2, ensure_ascii=False)


def format_scalar(value: Any) -> str:
    """One value on one line: None as '-', booleans lowercase, lists joined."""
    if value is None or value == "" or value == [] or value == {}:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(format_scalar(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_scalar(v)}" for k, v in value.items())
    return " ".join(str(value).split())


def format_bytes(size: int | None) -> str:
    """A byte count in binary units: 1536 -> '1.5 KiB'."""
    if size is None:
        return MISSING
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """A header line and one line per row, columns padded to their widest cell."""
    cells = [[column.header for column in columns]]
    cells += [[column.render(row) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]

    lines = []
    for line in cells:
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        lines.append(COLUMN_GAP.join(padded).rstrip())
    return "\n".join(lines)


def format_record(record: Mapping[str, Any]) -> str:
    """`key: value` lines; a nested mapping or a list of mappings is indented."""
    return "\n".join(_record_lines(record, depth=0))


def _record_lines(record: Mapping[str, Any], depth: int) -> list[str]:
    prefix = INDENT * depth
    lines = []
    for key, value in record.items():
        if isinstance(value, dict) and value:
            lines.append(f"{prefix}{key}:")
            lines += _record_lines(value, depth + 1)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{prefix}{key}:")
            for item in value:
                lines.append(f"{prefix}{INDENT}- {format_scalar(item)}")
        else:
            lines.append(f"{prefix}{key}: {format_scalar(value)}")
    return lines
