"""ColonyFS fixtures: a real S3 API server on loopback (moto's standalone server) and a local store dir.

`s3_server` yields the AWS_S3_* variables (as pycolonies reads them) for a fresh bucket on one moto
server shared by the session. Without moto[server] installed the tests skip on a laptop and fail in CI.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from colonies.secure_files import private_dir
from tests.conftest import free_port, need_service

S3_KEYS = {"AWS_S3_ACCESSKEY": "testaccess", "AWS_S3_SECRETKEY": "testsecret", "AWS_S3_REGION": "us-east-1"}


def moto_command(port: int) -> list[str]:
    exe = Path(sys.executable).parent / "moto_server"
    found = str(exe) if exe.exists() else shutil.which("moto_server")
    if found is None:
        need_service("moto[server]", "moto_server not found (pip install -e '.[test]')")
        raise AssertionError("unreachable")
    return [found, "-H", "127.0.0.1", "-p", str(port)]


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a moto S3 server started for this session (objects live in its memory)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(moto_command(port), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    need_service("moto[server]", f"moto_server did not answer: {log_path.read_text()[-2000:]}")
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_server(moto_endpoint: str) -> dict[str, str]:
    """The AWS_S3_* environment for a fresh, already created bucket on the session's moto server."""
    import boto3

    bucket = f"colonies-{secrets.token_hex(6)}"
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://{moto_endpoint}",
        aws_access_key_id=S3_KEYS["AWS_S3_ACCESSKEY"],
        aws_secret_access_key=S3_KEYS["AWS_S3_SECRETKEY"],
        region_name=S3_KEYS["AWS_S3_REGION"],
    )
    s3.create_bucket(Bucket=bucket)
    return {
        "AWS_S3_ENDPOINT": moto_endpoint,
        "AWS_S3_BUCKET": bucket,
        "AWS_S3_TLS": "false",
        "AWS_S3_SKIPVERIFY": "false",
        **S3_KEYS,
    }


@pytest.fixture
def local_store_dir(tmp_path: Path) -> Path:
    """An empty 0700 directory for a LocalStore (COLONIES_FS_DIR)."""
    return private_dir(tmp_path / "objects")
