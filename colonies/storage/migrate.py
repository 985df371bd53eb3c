"""Numbered SQL migrations per dialect, read from the package."""

from __future__ import annotations

from importlib import resources


def migrations(dialect: str) -> list[tuple[int, str]]:
    """[(version, sql)] in order, from storage/migrations/<dialect>/NNNN_name.sql."""
    folder = resources.files("colonies.storage").joinpath("migrations", dialect)
    found: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    found.sort()
    return found


def latest_version(dialect: str) -> int:
    return max((v for v, _ in migrations(dialect)), default=0)
