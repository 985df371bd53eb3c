"""Run the server under uvicorn: config → storage → app → uvicorn."""

from __future__ import annotations

import logging
from typing import Any

from colonies.config import Config

log = logging.getLogger("colonies.server")
BACKLOG = 8192


def serve(config: Config) -> None:
    import uvicorn

    from colonies.server.app import create_app
    from colonies.storage import create_storage

    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(config, create_storage(config))
    scheme = "https" if config.tls else "http"
    where = config.db_path if config.db_type == "sqlite" else f"{config.db_host}:{config.db_port}/{config.db_name}"
    log.info("colonies server %s serving %s://%s:%d (api /api, realtime /pubsub) on %s storage %s",
             config.build_version, scheme, config.bind, config.port, config.db_type, where)
    kwargs: dict[str, Any] = {}
    if config.tls:
        kwargs = {"ssl_certfile": config.tls_cert, "ssl_keyfile": config.tls_key}
    # backlog: room for thousands of long-polling executors (re)connecting at once (uvicorn's default
    # is 2048; the kernel caps it at net.core.somaxconn). See bench/load_longpoll.py.
    uvicorn.run(app, host=config.bind, port=config.port, log_level="warning", access_log=False,
                ws="websockets-sansio", lifespan="on", timeout_keep_alive=75, backlog=BACKLOG, **kwargs)
