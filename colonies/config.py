"""Typed server configuration, built once from an injectable environ (prefix COLONIES_)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from colonies.errors import ConfigError


def _bool(v: str) -> bool:
    return v.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Config:
    """Server settings. Each field names the environment variable it is read from."""

    server_id: str = field(default="", metadata={"env": "COLONIES_SERVER_ID"})
    port: int = field(default=50080, metadata={"env": "COLONIES_SERVER_PORT"})
    bind: str = field(default="127.0.0.1", metadata={"env": "COLONIES_SERVER_BIND"})
    db_type: str = field(default="sqlite", metadata={"env": "COLONIES_DB_TYPE"})
    db_path: str = field(default="colonies.db", metadata={"env": "COLONIES_DB_PATH"})
    db_host: str = field(default="localhost", metadata={"env": "COLONIES_DB_HOST"})
    db_port: int = field(default=5432, metadata={"env": "COLONIES_DB_PORT"})
    db_user: str = field(default="postgres", metadata={"env": "COLONIES_DB_USER"})
    db_password: str = field(default="", metadata={"env": "COLONIES_DB_PASSWORD"})
    db_name: str = field(default="colonies", metadata={"env": "COLONIES_DB_NAME"})
    db_pool_size: int = field(default=10, metadata={"env": "COLONIES_DB_POOL_SIZE"})
    # asyncpg's prepared-statement cache per connection; 0 behind PgBouncer in transaction mode (< 1.21)
    db_statement_cache: int = field(default=100, metadata={"env": "COLONIES_DB_STATEMENT_CACHE"})
    sqlite_synchronous: str = field(default="NORMAL", metadata={"env": "COLONIES_SQLITE_SYNCHRONOUS"})
    max_body_bytes: int = field(default=16 * 1024 * 1024, metadata={"env": "COLONIES_MAX_BODY_BYTES"})
    # seconds a connection may take to deliver a request's headers (slow-loris); 0 = no limit
    header_timeout_s: float = field(default=30.0, metadata={"env": "COLONIES_HEADER_TIMEOUT"})
    # process channels (colonies.channels): message, channel and colony caps, append rate, grace after end
    channel_max_message_bytes: int = field(default=1024 * 1024,
                                           metadata={"env": "COLONIES_CHANNEL_MAX_MESSAGE_BYTES"})
    channel_max_bytes: int = field(default=8 * 1024 * 1024, metadata={"env": "COLONIES_CHANNEL_MAX_BYTES"})
    channel_colony_max_bytes: int = field(default=64 * 1024 * 1024,
                                          metadata={"env": "COLONIES_CHANNEL_COLONY_MAX_BYTES"})
    channel_rate: float = field(default=100.0, metadata={"env": "COLONIES_CHANNEL_RATE"})
    channel_burst: int = field(default=500, metadata={"env": "COLONIES_CHANNEL_BURST"})
    channel_grace_s: float = field(default=30.0, metadata={"env": "COLONIES_CHANNEL_GRACE"})
    tls: bool = field(default=False, metadata={"env": "COLONIES_TLS"})
    tls_cert: str = field(default="", metadata={"env": "COLONIES_TLSCERT"})
    tls_key: str = field(default="", metadata={"env": "COLONIES_TLSKEY"})
    replay_window_s: int = field(default=300, metadata={"env": "COLONIES_REPLAY_WINDOW"})
    require_fresh_signatures: bool = field(default=False,
                                           metadata={"env": "COLONIES_REQUIRE_FRESH_SIGNATURES"})
    allow_executor_reregister: bool = field(
        default=False, metadata={"env": "COLONIES_ALLOW_EXECUTOR_REREGISTER"}
    )
    timeout_period_ms: int = field(default=1000, metadata={"env": "COLONIES_TIMEOUT_CHECKER_PERIOD"})
    generator_period_ms: int = field(default=1000, metadata={"env": "COLONIES_GENERATOR_CHECKER_PERIOD"})
    cron_period_ms: int = field(default=1000, metadata={"env": "COLONIES_CRON_CHECKER_PERIOD"})
    retention: bool = field(default=False, metadata={"env": "COLONIES_RETENTION"})
    retention_policy_s: int = field(default=7 * 86400, metadata={"env": "COLONIES_RETENTION_POLICY"})
    stale_executor_s: int = field(default=600, metadata={"env": "COLONIES_STALE_EXECUTOR_DURATION"})
    cleanup_interval_s: int = field(default=60, metadata={"env": "COLONIES_CLEANUP_INTERVAL"})
    etcd_endpoints: str = field(default="", metadata={"env": "COLONIES_ETCD_ENDPOINTS"})
    etcd_ttl_s: int = field(default=5, metadata={"env": "COLONIES_ETCD_TTL"})
    etcd_prefix: str = field(default="/colonies/cluster", metadata={"env": "COLONIES_ETCD_PREFIX"})
    node_name: str = field(default="", metadata={"env": "COLONIES_NODE_NAME"})
    build_version: str = field(default="dev", metadata={"env": "BUILD_VERSION"})
    build_time: str = field(default="", metadata={"env": "BUILD_TIME"})
    log_level: str = field(default="INFO", metadata={"env": "COLONIES_LOG_LEVEL"})
    dashboard: bool = field(default=False, metadata={"env": "COLONIES_DASHBOARD"})  # the web dashboard at /
    # GET /metrics (Prometheus); with a token, scrapes must send it as a bearer token and then also see
    # colony and executor type names as labels (docs/metrics.md)
    metrics: bool = field(default=False, metadata={"env": "COLONIES_METRICS"})
    metrics_token: str = field(default="", metadata={"env": "COLONIES_METRICS_TOKEN"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            raw = env.get(name)
            if raw is None and name == "COLONIES_SERVER_PORT":
                raw = env.get("COLONIES_SERVER_HTTP_PORT")
            if raw is None or raw == "":
                continue
            if f.type == "int":
                values[f.name] = int(raw)
            elif f.type == "float":
                values[f.name] = float(raw)
            elif f.type == "bool":
                values[f.name] = _bool(raw)
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)

    def check(self) -> None:
        """Refuse settings the server cannot honour, naming the variable (ConfigError, one line)."""
        if self.tls:
            missing = [name for name, value in (("COLONIES_TLSCERT", self.tls_cert), ("COLONIES_TLSKEY", self.tls_key))
                       if not value]
            if missing:
                raise ConfigError(f"COLONIES_TLS=true but {' and '.join(missing)} "
                                  f"{'is' if len(missing) == 1 else 'are'} not set; refusing to serve plain HTTP")
