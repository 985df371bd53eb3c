"""The PostgreSQL URL built from COLONIES_DB_* settings: every part reaches the server as written."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from colonies.config import Config
from colonies.storage.postgres import PostgresStorage, dsn_of
from tests.conftest import _drop_pg_database, _pg_admin, pg_dsn, run_async

HOSTILE = "p@ss/w#rd?%41:x"


def test_user_password_and_name_are_percent_encoded() -> None:
    cfg = Config(db_host="db.example", db_port=6432, db_user="me@site", db_password=HOSTILE, db_name="a/b#c")
    u = urlsplit(dsn_of(cfg))
    assert (u.hostname, u.port) == ("db.example", 6432)
    assert unquote(u.username or "") == "me@site" and unquote(u.password or "") == HOSTILE
    assert unquote(u.path[1:]) == "a/b#c"
    assert urlsplit(dsn_of(Config(db_host="::1"))).hostname == "::1"


def test_a_database_whose_name_needs_escaping_is_reached() -> None:
    """Unescaped, `#` and `?` cut the URL short and asyncpg connects to another database (or fails)."""
    base = urlsplit(pg_dsn())
    name = "colonies t/#?%x"
    _pg_admin(pg_dsn(), f'CREATE DATABASE "{name}"')
    try:
        cfg = Config(db_host=base.hostname or "127.0.0.1", db_port=base.port or 5432, db_user=base.username or "",
                     db_password=unquote(base.password or ""), db_name=name)

        async def current() -> str:
            st = PostgresStorage(cfg, min_size=1, max_size=1)
            import asyncpg  # type: ignore[import-untyped,unused-ignore]

            con = await asyncpg.connect(st.dsn, timeout=5, statement_cache_size=0)
            try:
                return str(await con.fetchval("SELECT current_database()"))
            finally:
                await con.close()

        assert run_async(current) == name
    finally:
        _drop_pg_database(pg_dsn(), name)
