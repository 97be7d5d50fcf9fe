"""Target type `markdown`: the rows as a Markdown table (a file target).

    targets:
      report: {type: markdown, path: "report_{{ run.stamp }}.md", title: "CPU alerts", max_rows: 200}
"""

from __future__ import annotations

from typing import Any

KIND = "file"
DESCRIPTION = "Markdown table of the rows (example plugin)"
SCHEMA: dict[str, Any] = {
    "required": ["path"],
    "properties": {
        "path": {"description": "Output file, a template relative to --output-dir.", "type": "string",
                 "minLength": 1},
        "title": {"description": "Heading above the table.", "type": "string"},
        "max_rows": {"description": "Rows shown at most (the rest are counted). Default 1000.", "type": "integer",
                     "minimum": 1},
        "columns": {"description": "Columns to show.", "type": "array", "items": {"type": "string"}},
    },
}


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def write(table: Any, path: str, target: Any) -> None:
    """Write the table (a pyarrow.Table) to `path` (a temporary file vmrules renames into place)."""
    opts = target.options
    limit = int(opts.get("max_rows", 1000))
    names = table.column_names
    lines = [f"## {opts['title']}", ""] if opts.get("title") else []
    lines += ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in table.slice(0, limit).to_pylist():
        lines.append("| " + " | ".join(_cell(row[n]) for n in names) + " |")
    if table.num_rows > limit:
        lines += ["", f"... and {table.num_rows - limit} more rows"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
