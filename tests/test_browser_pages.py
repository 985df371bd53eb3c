"""The web pages as files (no browser needed): routes, the dashboard switch, static serving, and that
everything a page loads comes from this server (no CDN) in the versions the lock file names."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from colonies.config import Config
from colonies.server.web import CSP, IMPORTMAP
from tests.inproc import app_client

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "colonies" / "server" / "static"
JS = ROOT / "clients" / "js"


def test_dashboard_is_off_unless_configured(tmp_path: Path) -> None:
    with app_client(tmp_path) as tc:
        r = tc.get("/")
        assert r.status_code == 404 and "COLONIES_DASHBOARD=true" in r.text
        assert tc.get("/executor").status_code == 200  # the executor page is always there


def test_pages_and_static_files(tmp_path: Path) -> None:
    with app_client(tmp_path, dashboard=True) as tc:
        for path in ("/", "/executor"):
            r = tc.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert f'<script type="importmap">{IMPORTMAP}</script>' in r.text
            assert r.headers["x-frame-options"] == "DENY"
            csp = r.headers["content-security-policy"]
            digest = base64.b64encode(hashlib.sha256(IMPORTMAP.encode()).digest()).decode()
            assert f"script-src 'self' 'sha256-{digest}';" in csp and "frame-ancestors 'none'" in csp
        sdk = tc.get("/static/sdk/colonies.js")
        assert sdk.status_code == 200 and "javascript" in sdk.headers["content-type"]
        assert sdk.content == (JS / "src" / "colonies.js").read_bytes()  # served from the SDK's source
        importmap = tc.get("/static/js/importmap.js")
        assert "javascript" in importmap.headers["content-type"] and json.dumps(IMPORTMAP) in importmap.text
        for target in re.findall(r"(/static/[^\"]+)", IMPORTMAP):
            assert tc.get(target).status_code == 200, target
        for bad in ("/static/../web.py", "/static/%2e%2e/web.py", "/static/sdk/../../web.py", "/static/nope.js"):
            assert tc.get(bad).status_code == 404, bad
        assert tc.get("/health").status_code == 200


def test_static_files_carry_nosniff_and_the_csp(tmp_path: Path) -> None:
    """Every file under /static, an HTML file reached there too (e.g. the dashboard's index.html): a
    browser takes it for what its type says, and a page loaded from there has the pages' policy."""
    with app_client(tmp_path, dashboard=True) as tc:
        for path in ("/static/dashboard/index.html", "/static/executor/index.html", "/static/sdk/colonies.js",
                     "/static/css/colonies.css", "/static/dashboard/dashboard.js",
                     "/static/vendor/noble-secp256k1/index.js"):
            r = tc.get(path)
            assert r.status_code == 200, path
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["content-security-policy"] == CSP, path
            assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer", path
            assert "etag" in r.headers, path  # StaticFiles' validators stay
            again = tc.get(path, headers={"if-none-match": r.headers["etag"]})
            assert again.status_code == 304 and again.headers["x-content-type-options"] == "nosniff", path
        for path in ("/", "/executor", "/static/js/importmap.js"):
            assert tc.get(path).headers["x-content-type-options"] == "nosniff", path


def test_dashboard_does_not_remember_the_key_unless_asked() -> None:
    html = (STATIC / "dashboard" / "index.html").read_text()
    box = re.search(r'<input type="checkbox" id="remember"[^>]*>', html)
    assert box is not None and "checked" not in box.group(0)


def test_config_reads_colonies_dashboard() -> None:
    assert Config.from_env({"COLONIES_DASHBOARD": "true"}).dashboard is True
    assert Config.from_env({}).dashboard is False


@pytest.mark.parametrize("page", sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*")
                                        if p.suffix in {".html", ".js", ".css"} and "vendor" not in p.parts))
def test_pages_load_nothing_from_elsewhere(page: str) -> None:
    text = (STATIC / page).read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), page
    assert not re.search(r"""(from|import)\s*\(?\s*["'](https?:)?//""", text), page
    assert "innerHTML" not in text and "insertAdjacentHTML" not in text, page  # server data is text only
    assert not re.search(r"""\bstyle\s*[:=]\s*["']""", text), page  # inline styles break the pages' CSP


def test_vendored_modules_match_the_lock_file() -> None:
    lock = json.loads((JS / "package-lock.json").read_text())["packages"]
    vendored = json.loads((STATIC / "vendor" / "VERSIONS.json").read_text())
    for name, version in vendored.items():
        assert lock[f"node_modules/{name}"]["version"] == version, name
    assert set(vendored) == {"@noble/secp256k1", "@noble/hashes"}
