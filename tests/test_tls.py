"""TLS: `COLONIES_TLS=true` with COLONIES_TLSCERT/COLONIES_TLSKEY serves HTTPS on /api and WSS on /pubsub.
A self-signed certificate for 127.0.0.1 is generated at test time (openssl); our SDK, the realtime client, the
CLI and pycolonies all work over it."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pycolonies import Colonies
from pycolonies import func_spec as py_func_spec

from colonies.client.core import func_spec, tls_verify
from colonies.client.realtime import wait_for
from colonies.client.sync import Client
from tests.conftest import ColonyKeys, ServerProc, make_server, need_service


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for 127.0.0.1 and localhost, made with the openssl CLI
    (no extra Python dependency)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        need_service("openssl", "the openssl command is not installed")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    subprocess.run([str(openssl), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key_path), "-out", str(cert_path), "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True, timeout=30)
    return cert_path, key_path


class TlsServer(ServerProc):
    ca: str = ""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self, prvkey: str) -> Client:
        return Client("127.0.0.1", self.port, prvkey=prvkey, tls=True, verify=self.ca)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = make_cert(folder)
    plain = make_server(folder, {"COLONIES_TLS": "true", "COLONIES_TLSCERT": str(cert),
                                 "COLONIES_TLSKEY": str(key)})
    srv = TlsServer(**{k: getattr(plain, k) for k in ("port", "db_path", "server_prvkey", "env", "log_path")})
    srv.ca = str(cert)
    srv.verify = tls_verify(srv.ca)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def keys(tls_server: TlsServer) -> ColonyKeys:
    from tests.conftest import setup_colony

    return setup_colony(tls_server)  # our SDK over HTTPS, every admin call


def test_plain_http_is_not_served(tls_server: TlsServer) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/health", timeout=2)
    with pytest.raises(httpx.ConnectError):  # an untrusted certificate is refused by default
        httpx.get(f"{tls_server.url}/health", timeout=2)


def test_our_sdk_and_realtime_client(tls_server: TlsServer, keys: ColonyKeys) -> None:
    with tls_server.client(keys.user_prvkey) as user, tls_server.client(keys.executor_prvkey) as exe:
        p = user.submit(func_spec("echo", keys.name, keys.executor_type, args=["x"]))

        async def waiter() -> object:
            return await wait_for("127.0.0.1", tls_server.port, keys.user_prvkey, p, 10, tls=True,
                                  verify=tls_server.ca)

        async def scenario() -> object:
            task = asyncio.create_task(waiter())
            await asyncio.to_thread(lambda: exe.close(exe.assign(keys.name, 5).processid, ["tls"]))
            return await asyncio.wait_for(task, 15)

        got = asyncio.run(scenario())
        assert getattr(got, "output", None) == ["tls"]
        info = user.server_info()
        assert info.backends[0].tls is True


def test_realtime_refuses_an_untrusted_certificate(tls_server: TlsServer, keys: ColonyKeys) -> None:
    with tls_server.client(keys.user_prvkey) as user:
        p = user.submit(func_spec("echo", keys.name, keys.executor_type))
    with pytest.raises(ssl.SSLError):
        asyncio.run(wait_for("127.0.0.1", tls_server.port, keys.user_prvkey, p, 2, tls=True))


def test_pycolonies_over_tls(tls_server: TlsServer, keys: ColonyKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_server.ca)
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", tls_server.ca)
    c = Colonies("127.0.0.1", tls_server.port, tls=True)
    p = c.submit_func_spec(py_func_spec("echo", ["x"], keys.name, keys.executor_type, maxexectime=30),
                           keys.user_prvkey)
    got = c.assign(keys.name, 5, keys.executor_prvkey)
    assert got.processid == p.processid
    c.close(got.processid, ["py"], keys.executor_prvkey)
    done = c.wait(p, 5, keys.user_prvkey)  # over wss
    assert done.state == 2 and done.output == ["py"]


def test_cli_over_tls(tls_server: TlsServer, keys: ColonyKeys) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONIES_")}
    env.update({"COLONIES_SERVER_HOST": "127.0.0.1", "COLONIES_SERVER_PORT": str(tls_server.port),
                "COLONIES_TLS": "true", "SSL_CERT_FILE": tls_server.ca,
                "COLONIES_PRVKEY": tls_server.server_prvkey, "COLONIES_SERVER_PRVKEY": tls_server.server_prvkey})
    out = subprocess.run([sys.executable, "-m", "colonies", "colony", "ls"], env=env, capture_output=True, check=False,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert keys.name in out.stdout


def _start_refused(tmp_path: Path, env: dict[str, str]) -> str:
    """Start a real server process that must refuse to start: its one-line error (stderr)."""
    srv = make_server(tmp_path, env)
    proc = subprocess.Popen([sys.executable, "-m", "colonies", "server", "start"], env=srv.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the server started instead of refusing to") from None
    assert proc.returncode != 0, (out, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{srv.port}/health", timeout=2)
    return lines[0]


@pytest.mark.parametrize("given", [{}, {"COLONIES_TLSCERT": "cert.pem"}, {"COLONIES_TLSKEY": "key.pem"}])
def test_tls_without_a_certificate_or_key_refuses_to_start(tmp_path: Path, given: dict[str, str]) -> None:
    """It used to serve plain HTTP while its log and getserverinfomsg said TLS (issue 10 item 7)."""
    cert, key = make_cert(tmp_path)
    env = {"COLONIES_TLS": "true", **{k: str(cert if k == "COLONIES_TLSCERT" else key) for k in given}}
    line = _start_refused(tmp_path, env)
    for name in ("COLONIES_TLSCERT", "COLONIES_TLSKEY"):
        assert (name in line) == (name not in given), line
    assert "COLONIES_TLS=true" in line


def test_tls_with_an_unreadable_certificate_refuses_to_start(tmp_path: Path) -> None:
    _, key = make_cert(tmp_path)
    missing = tmp_path / "nowhere.pem"
    line = _start_refused(tmp_path, {"COLONIES_TLS": "true", "COLONIES_TLSCERT": str(missing),
                                     "COLONIES_TLSKEY": str(key)})
    assert "COLONIES_TLSCERT" in line and str(missing) in line
