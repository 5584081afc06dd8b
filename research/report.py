"""The studies' markdown reports: printed, and written where ``--out`` asks."""

from __future__ import annotations

from pathlib import Path


def finish(lines: list[str], out: Path | None) -> str:
    """Joins a report's lines, prints it, writes it to ``out`` (when given) and returns it."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text, encoding="utf-8")
    return text
