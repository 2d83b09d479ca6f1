"""The spec reference (docs/reference.md), from the schema and the family registry."""

from __future__ import annotations


def facts() -> dict[str, str]:
    from sweep.docs import reference_markdown

    return {"reference.spec": reference_markdown()}
