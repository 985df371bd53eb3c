"""The JavaScript SDK (clients/js): its Node unit tests, signature interop with the Python side both
ways, and the SDK against a real server from Node.js (submit, assign, close, fail, get, list,
workflow, /pubsub, the Executor class).

Needs `node` (>= 20) and `npm ci` in clients/js (scripts/browser-deps): skipped without them, except in
CI (CI=true) where they must be present.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from colonies.protocol.crypto import generate_prvkey, id_of, recover_id, sign
from tests.conftest import ColonyKeys, ServerProc, make_server, need_service, setup_colony

JS = Path(__file__).resolve().parents[1] / "clients" / "js"


def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        need_service("node", "node is not on PATH")
    assert exe is not None
    if not (JS / "node_modules" / "@noble" / "secp256k1").is_dir():
        need_service("clients/js node modules", "run scripts/browser-deps (npm ci in clients/js)")
    return exe


def run_node(args: list[str], stdin: str = "", env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([node(), *args], input=stdin, capture_output=True, text=True, cwd=JS, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


_JS_SIGN = """
import { sign, idOf, base64Encode } from './src/colonies.js';
const cases = JSON.parse(readFileSync(0, 'utf8'));
console.log(JSON.stringify(cases.map(([prv, text]) => {
  const payload = base64Encode(text);
  return { id: idOf(prv), payload, signature: sign(payload, prv) };
})));
"""

_JS_RECOVER = """
import { recoverId } from './src/colonies.js';
const cases = JSON.parse(readFileSync(0, 'utf8'));
console.log(JSON.stringify(cases.map(([payload, sig]) => recoverId(payload, sig))));
"""


def _module(body: str) -> list[str]:
    return ["--input-type=module", "-e", "import { readFileSync } from 'node:fs';\n" + body]


def test_node_unit_tests() -> None:
    """`node --test clients/js/test/` — includes the protocol.md §1.4 vectors in JS."""
    r = run_node(["--test", "test/"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "# fail 0" in r.stdout


def test_signed_in_js_recovers_in_python() -> None:
    texts = ['{"msgtype":"getcoloniesmsg"}', '{"msgtype":"x","s":"héllo ✓ \\u0000"}', "{}" * 500]
    cases = [[generate_prvkey(), t] for t in texts for _ in range(4)]
    r = run_node(_module(_JS_SIGN), stdin=json.dumps(cases))
    assert r.returncode == 0, r.stderr
    for (prv, _), got in zip(cases, json.loads(r.stdout), strict=True):
        assert got["id"] == id_of(prv)
        assert recover_id(got["payload"], got["signature"]) == id_of(prv)
        # RFC6979 is deterministic: both sides produce the very same signature
        assert got["signature"] == sign(got["payload"], prv)


def test_signed_in_python_recovers_in_js() -> None:
    keys = [generate_prvkey() for _ in range(12)]
    payloads = [f"eyJtc2d0eXBlIjoi{i}In0=" for i in range(12)]
    cases = [[p, sign(p, k)] for p, k in zip(payloads, keys, strict=True)]
    r = run_node(_module(_JS_RECOVER), stdin=json.dumps(cases))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [id_of(k) for k in keys]


@pytest.mark.parametrize("strict", [False, True], ids=["default", "fresh-signatures-required"])
def test_sdk_against_a_real_server(tmp_path: Path, strict: bool) -> None:
    """clients/js/test/e2e.test.js, which skips unless it is given a server: here it is given one. With
    COLONIES_REQUIRE_FRESH_SIGNATURES the server refuses requests without the SDK's timestamp and nonce."""
    server = make_server(tmp_path, {"COLONIES_REQUIRE_FRESH_SIGNATURES": "true"} if strict else None)
    server.start()
    try:
        _run_e2e(server, setup_colony(server))
    finally:
        server.stop()


def _run_e2e(server: ServerProc, colony: ColonyKeys) -> None:
    env = {"COLONIES_TEST_URL": server.url, "COLONIES_TEST_COLONY": colony.name,
           "COLONIES_TEST_COLONY_PRVKEY": colony.colony_prvkey, "COLONIES_TEST_USER_PRVKEY": colony.user_prvkey}
    args = ["--test", "test/e2e.test.js"]
    if int(subprocess.run([node(), "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True,
                          check=True).stdout) < 22:
        args.insert(0, "--experimental-websocket")  # Node 20: WebSocket is behind a flag
    r = run_node(args, env=env, timeout=90)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "# fail 0" in r.stdout and "# skipped 0" in r.stdout, r.stdout[-3000:]


@pytest.mark.parametrize("text", ["", "a", "ü" * 10])
def test_js_base64_and_sha3_match_python(text: str) -> None:
    import base64
    import hashlib

    r = run_node(_module(
        "import { base64Encode, sha3Hex } from './src/colonies.js';\n"
        "const t = JSON.parse(readFileSync(0, 'utf8'));\n"
        "console.log(JSON.stringify([base64Encode(t), sha3Hex(t)]));"), stdin=json.dumps(text))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [base64.b64encode(text.encode()).decode(), hashlib.sha3_256(text.encode()).hexdigest()]
