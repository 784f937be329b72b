"""Prefect artifacts shared by the flows: a summary table in markdown with a title and key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect.artifacts import create_markdown_artifact


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def summary_markdown(title: str, summary: Mapping[str, Any], note: str = "") -> str:
    rows = "\n".join(f"| {key} | {_cell(value)} |" for key, value in sorted(summary.items()))
    body = f"# {title}\n\n{note}\n\n| field | value |\n| --- | --- |\n{rows}\n"
    return body.replace("\n\n\n", "\n\n")


def publish_summary(key: str, title: str, summary: Mapping[str, Any], note: str = "") -> str:
    """Create (or add a version to) the markdown artifact `key`; returns its id."""
    markdown = summary_markdown(title, summary, note)
    return str(create_markdown_artifact(key=key, markdown=markdown, description=title))
