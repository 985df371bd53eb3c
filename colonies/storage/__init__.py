"""Storage: one interface (`base.Storage`), one backend per database, chosen by config."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from colonies.config import Config
    from colonies.storage.base import Storage


def create_storage(config: Config) -> Storage:
    """The backend named by `config.db_type`, imported lazily."""
    if config.db_type in ("sqlite", "sqlite3", ""):
        from colonies.storage.sqlite import SqliteStorage

        return SqliteStorage(config.db_path, synchronous=config.sqlite_synchronous)
    if config.db_type in ("postgresql", "postgres"):
        from colonies.storage.postgres import PostgresStorage

        return PostgresStorage(config)
    raise ValueError(f"unknown COLONIES_DB_TYPE {config.db_type!r}")
