"""The web pages in a real browser: headless Debian Chromium driven by playwright-core
(clients/js/tools/browser.mjs) against a real server.

* `/executor` joins a colony and executes processes submitted from Python (WebCrypto SHA-256, a canvas
  thumbnail, sum, echo).
* The dashboard signs in with a pasted key, opens a workflow, watches it run to completion (executed by a
  second tab at /executor) live over /pubsub, and saves screenshots under build/screenshots/.

Needs /usr/bin/chromium, node and `npm ci` in clients/js (scripts/browser-deps): skipped without them,
except in CI (CI=true) where they must be present.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from colonies.blueprints import blueprint, blueprint_definition
from colonies.client.core import func_spec
from colonies.model import WorkflowSpec
from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ColonyKeys, ServerProc, make_server, need_service, setup_colony

ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "clients" / "js"
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = os.environ.get("COLONIES_CHROMIUM", "/usr/bin/chromium")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def browser_tools() -> str:
    """`node`, with playwright-core installed and Chromium present; else skip (fail in CI)."""
    exe = shutil.which("node")
    if exe is None:
        need_service("node", "node is not on PATH")
    if not Path(CHROMIUM).exists():
        need_service("chromium", f"{CHROMIUM} is missing (scripts/browser-deps installs Debian's chromium)")
    if not (JS / "node_modules" / "playwright-core").is_dir():
        need_service("playwright-core", "run scripts/browser-deps (npm ci in clients/js)")
    assert exe is not None
    return exe


def drive(scenario: str, config: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    """Run one scenario of clients/js/tools/browser.mjs; its JSON result (asserting it went well)."""
    node = browser_tools()
    config = {"chromium": CHROMIUM, "timeout": 30, **config}
    r = subprocess.run([node, "tools/browser.mjs", scenario, json.dumps(config)], cwd=JS, capture_output=True, check=False,
                       text=True, timeout=timeout)
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from the browser driver: {r.stdout[-2000:]} {r.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert r.returncode == 0 and result["ok"], f"{result.get('error')}\npage errors: {result.get('pageErrors')}"
    return result


def png(width: int, height: int) -> bytes:
    """A small RGB PNG: a horizontal gradient (no imaging library needed)."""
    raw = b"".join(b"\x00" + bytes(c for x in range(width) for c in (x * 255 // width, 80, 200))
                   for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_executor_page_runs_processes_submitted_from_python(server: ServerProc, colony: ColonyKeys) -> None:
    browser_tools()
    import base64

    image = "data:image/png;base64," + base64.b64encode(png(40, 30)).decode()
    with server.client(colony.user_prvkey) as user:
        submitted = {
            "sha256": user.submit(func_spec("sha256", colony.name, "browser", args=["hello", "colonies"])),
            "thumbnail": user.submit(func_spec("thumbnail", colony.name, "browser", args=[image, 16])),
            "sum": user.submit(func_spec("sum", colony.name, "browser", args=[1, 2, 3.5])),
            "echo": user.submit(func_spec("echo", colony.name, "browser", args=["x", {"y": 1}])),
            "missing": user.submit(func_spec("nosuchfunction", colony.name, "browser")),
        }
        result = drive("executor", {
            "url": server.url, "colony": colony.name, "name": "browser-1", "type": "browser",
            "executorKey": generate_prvkey(), "colonyKey": colony.colony_prvkey, "expect": len(submitted),
            "screenshot": str(SCREENSHOTS / "executor.png"),
        })
        assert result["done"] == 4 and result["failed"] == 1, result
        assert result["thumbnails"] == 1
        assert result["pageErrors"] == []
        got = {name: user.get_process(p.processid) for name, p in submitted.items()}
        logs = user.get_logs(colony.name, process_id=submitted["thumbnail"].processid)
    assert [log.message for log in logs] == ["thumbnail 16x12 of 40x30"]
    assert got["sha256"].state == 2
    assert got["sha256"].output == [hashlib.sha256(b"hello colonies").hexdigest()]
    thumb = (got["thumbnail"].output or [None])[0]
    assert (thumb["width"], thumb["height"], thumb["source"]) == (16, 12, [40, 30])
    assert thumb["dataurl"].startswith("data:image/png;base64,")
    decoded = base64.b64decode(thumb["dataurl"].split(",", 1)[1])
    assert decoded[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", decoded[16:24]) == (16, 12)
    assert got["sum"].output == [6.5]
    assert got["echo"].output == ["x", {"y": 1}]
    assert got["missing"].state == 3 and "nosuchfunction" in got["missing"].errors[0]


def test_executor_page_with_an_approved_executor_key(server: ServerProc, colony: ColonyKeys) -> None:
    """No colony key: the page uses an executor the colony owner already registered and approved."""
    browser_tools()
    with server.client(colony.user_prvkey) as user:
        p = user.submit(func_spec("sum", colony.name, colony.executor_type, args=[40, 2]))
        result = drive("executor", {
            "url": server.url, "colony": colony.name, "name": colony.executor_name, "type": colony.executor_type,
            "executorKey": colony.executor_prvkey, "expect": 1,
        })
        assert (result["done"], result["failed"], result["pageErrors"]) == (1, 0, [])
        assert user.get_process(p.processid).output == [42]
        announced = {f.funcname for f in user.get_functions(colony.name, colony.executor_name)}
    assert announced == {"sha256", "thumbnail", "predict", "sum", "echo"}


@pytest.fixture
def dashboard_server(tmp_path: Path) -> Iterator[ServerProc]:
    srv = make_server(tmp_path, {"COLONIES_DASHBOARD": "true"})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_dashboard_watches_a_workflow_run_to_completion(dashboard_server: ServerProc) -> None:
    browser_tools()
    srv = dashboard_server
    keys = setup_colony(srv, "web")

    def spec(node: str, funcname: str, args: list[Any], deps: list[str]) -> Any:
        return func_spec(funcname, keys.name, "browser", args=args, nodename=node, dependencies=deps)

    with srv.client(keys.user_prvkey) as user:
        graph = user.submit_workflow(WorkflowSpec(colonyname=keys.name, functionspecs=[
            spec("hash-a", "sha256", ["a"], []), spec("hash-b", "sha256", ["b"], []),
            spec("join", "echo", [], ["hash-a", "hash-b"]), spec("report", "echo", ["done"], ["join"]),
        ]))
        result = drive("dashboard", {
            "url": srv.url, "colony": keys.name, "userKey": keys.user_prvkey, "graphid": graph.processgraphid,
            "name": "browser-tab", "type": "browser", "executorKey": generate_prvkey(),
            "colonyKey": keys.colony_prvkey, "screenshots": str(SCREENSHOTS),
        }, timeout=80)
        final = user.get_processgraph(graph.processgraphid)
        children = [user.get_process(pid) for pid in final.processids if pid not in final.rootprocessids]
    assert result["counts"]["waiting"] == 4 and result["counts"]["successful"] == 0
    assert result["nodes"] == 4 and result["before"] == ["waiting"] * 4
    assert result["frames"] >= 4, result  # the DAG was recoloured by /pubsub pushes
    assert result["auditEvents"] >= 3
    assert result["phoneOverflow"] <= 0, "the overview scrolls sideways on a phone"
    assert result["pageErrors"] == []
    assert final.state == 2
    hashes = sorted(hashlib.sha256(x).hexdigest() for x in (b"a", b"b"))  # computed with WebCrypto in the tab
    outputs = {p.spec.nodename: p.output or [] for p in children}
    assert sorted(outputs["join"]) == hashes  # echo of its parents' outputs
    assert sorted(outputs["report"][:2]) == hashes and outputs["report"][2] == "done"
    for name in ("dashboard-workflow.png", "dashboard-process.png", "dashboard-phone.png"):
        assert (SCREENSHOTS / name).stat().st_size > 5000


def test_dashboard_sign_in_nav_paging_and_audit_layout(dashboard_server: ServerProc) -> None:
    """The nav hides while signed out; the key is kept for the tab only when asked ("remember", off by
    default); the process list pages through a state with "N of M" (M from the colony's counts, the
    server lists at most 100 per state); a long error in the audit trail wraps inside its card."""
    browser_tools()
    srv = dashboard_server
    keys = setup_colony(srv, "ux")
    long_error = "E" * 600 + " then a long sentence of words that should wrap in the detail column " * 6
    with srv.client(keys.user_prvkey) as user, srv.client(keys.executor_prvkey) as executor:
        for i in range(105):  # nobody serves this type: they stay waiting
            user.submit(func_spec("noop", keys.name, "nobody", args=[i]))
        failed = user.submit(func_spec("boom", keys.name, keys.executor_type))
        assert executor.assign(keys.name, timeout=5).processid == failed.processid
        executor.fail(failed.processid, [long_error])
        result = drive("dashboard-ux", {"url": srv.url, "colony": keys.name, "userKey": keys.user_prvkey,
                                        "pagedState": 0, "typeFilter": keys.executor_type,
                                        "failedid": failed.processid}, timeout=80)
    assert result["pageErrors"] == []
    assert (result["navSignedOut"], result["navAfterReloadWithout"], result["navAfterSignOut"]) == (False,) * 3
    assert result["navSignedIn"] is True
    assert result["rememberDefault"] is False
    assert (result["storedWithout"], result["signedInAfterReloadWithout"]) == (0, False)
    assert (result["storedWith"], result["signedInAfterReloadWith"]) == (1, True)
    assert result["storedAfterSignOut"] == 0
    pages = result["pages"]
    assert [p["text"] for p in pages] == [f"{a}–{a + 19} of 105" for a in range(1, 101, 20)]
    assert [p["rows"] for p in pages] == [20] * 5 and [p["next"] for p in pages] == [True] * 4 + [False]
    assert pages[0]["prev"] is False and pages[-1]["prev"] is True
    assert "100" in pages[-1]["note"] and all(p["note"] == "" for p in pages[:-1])
    assert result["back"]["text"] == "61–80 of 105"
    assert (result["all"]["text"], result["all"]["rows"]) == ("1–20 of 106", 20)
    assert (result["typed"]["text"], result["typed"]["rows"], result["typed"]["next"]) == ("1–1 of 1", 1, False)
    for where in ("auditDesktop", "auditPhone"):
        assert result[where]["rows"] >= 3 and result[where]["overflow"] <= 0, (where, result[where])


def test_dashboard_files_page_labels_revisions_snapshots_and_where_the_bytes_are(
    dashboard_server: ServerProc, tmp_path: Path
) -> None:
    """The files page lists labels with their counts, a label's files with every revision (newest first)
    and where each revision's bytes are — the local store's path, or a direct link for an S3 object — with
    the command that fetches it; snapshots open to their frozen files. It fits a phone."""
    browser_tools()
    from colonies.fs import FileSystem
    from colonies.fs.local import LocalStore
    from colonies.model import File, Ref, S3Object

    srv = dashboard_server
    keys = setup_colony(srv, "files")
    store_dir = tmp_path / "objects"
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "a.txt").write_text("one")
    (work / "sub" / "b.txt").write_text("bee")
    with srv.client(keys.user_prvkey) as user:
        fs = FileSystem(user, keys.name, store=LocalStore(store_dir))
        fs.sync(work, "/data")
        (work / "a.txt").write_text("two")
        fs.sync(work, "/data")
        s3 = user.add_file(File(colonyname=keys.name, label="/data", name="remote.bin", size=2048,
                                checksum="ab" * 32, checksumalg="SHA256",
                                ref=Ref(protocol="s3", s3object=S3Object(server="s3.example", port=9000, tls=True,
                                                                         bucket="bkt", object="k/x y"))))
        snap = fs.create_snapshot("/data", "v1")
        revs = sorted(user.get_file(keys.name, label="/data", name="a.txt", latest=False), key=lambda f: -f.sequencenr)
        result = drive("files", {"url": srv.url, "colony": keys.name, "userKey": keys.user_prvkey, "label": "/data",
                                 "snapshot": "v1", "screenshots": str(SCREENSHOTS)}, timeout=80)
    assert result["pageErrors"] == []
    assert {(r["label"], r["files"]) for r in result["labels"]} == {("/data", "3"), ("/data/sub", "1")}
    assert [r["name"] for r in result["snapshots"]] == ["v1"]
    assert result["labelName"] == "/data"
    a_rows = [r for r in result["files"] if r["name"] == "a.txt"]
    assert [r["fileid"] for r in a_rows] == [f.fileid for f in revs]  # every revision, newest first
    for row, f in zip(a_rows, revs, strict=True):
        assert row["kinds"] == ["local"] and row["links"] == []  # no link a browser could not open
        assert str(store_dir) in row["cells"][-1] and f.ref.s3object.object in row["cells"][-1]
        assert row["commands"] == [f"colonies fs get -i {f.fileid} -d ."]
    [remote] = [r for r in result["files"] if r["name"] == "remote.bin"]
    assert remote["fileid"] == s3.fileid and remote["kinds"] == ["s3"]
    assert remote["links"] == ["https://s3.example:9000/bkt/k/x%20y"]
    assert [r["cells"][0] for r in result["sublabels"]] == ["/data/sub"]
    assert result["desktopOverflow"] <= 0 and result["phoneOverflow"] <= 0, result
    assert result["snapshotName"] == "v1"
    assert sorted(r["fileid"] for r in result["snapshotFiles"]) == sorted(snap.fileids)
    assert {r["cells"][0] for r in result["snapshotFiles"]} == {"a.txt", "b.txt", "remote.bin"}  # sub-labels too
    assert (SCREENSHOTS / "dashboard-files.png").stat().st_size > 5000


def test_dashboard_locations_page_lists_sites_and_the_executors_at_each(dashboard_server: ServerProc) -> None:
    """The locations page lists the colony's sites with their coordinates and the executors at each (their
    `locationname`, ignoring case); a name no location record has is listed too. It fits a phone."""
    browser_tools()
    srv = dashboard_server
    keys = setup_colony(srv, "sites")
    with srv.client(keys.colony_prvkey) as owner:
        owner.add_location(keys.name, "lumi", "LUMI supercomputer, Kajaani", 27.6324735, 64.2220316)
        owner.add_location(keys.name, "cloud", "a cloud region", -122.4194, 37.7749)
        for name, site in (("slurm-1", "LUMI"), ("slurm-2", "lumi"), ("pi-1", "edge-lab")):
            owner.add_executor(keys.name, id_of(generate_prvkey()), name, "t", location=site)
        result = drive("locations", {"url": srv.url, "colony": keys.name, "userKey": keys.user_prvkey,
                                     "screenshots": str(SCREENSHOTS)}, timeout=80)
    assert result["pageErrors"] == []
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["cloud", "lumi", "edge-lab"]  # the records by name, then names with no record
    assert rows["lumi"]["cells"][:4] == ["lumi", "LUMI supercomputer, Kajaani", "27.6325", "64.2220"]
    assert rows["lumi"]["at"] == ["slurm-1", "slurm-2"] and rows["lumi"]["recorded"] == "true"
    assert rows["lumi"]["maps"] == [
        "https://www.openstreetmap.org/?mlat=64.2220316&mlon=27.6324735#map=9/64.2220316/27.6324735"]
    assert rows["cloud"]["at"] == [] and rows["cloud"]["cells"][2:5] == ["-122.4194", "37.7749", "none"]
    assert (rows["edge-lab"]["recorded"], rows["edge-lab"]["at"]) == ("false", ["pi-1"])
    assert "no location record" in rows["edge-lab"]["cells"][1]
    assert result["desktopOverflow"] <= 0 and result["phoneOverflow"] <= 0, result
    assert (SCREENSHOTS / "dashboard-locations.png").stat().st_size > 5000


def test_dashboard_blueprints_page_shows_desired_beside_observed(dashboard_server: ServerProc) -> None:
    """The blueprints page lists each blueprint's spec (desired) beside its status (observed), marks a field
    whose values differ, shows the last reconcile's state with a link to the process, and the kinds with
    their handler. It fits a phone."""
    browser_tools()
    srv = dashboard_server
    keys = setup_colony(srv, "bps", executor_type="reconciler")
    schema = {"type": "object", "properties": {"replicas": {"type": "integer"}}}
    with srv.client(keys.colony_prvkey) as owner, srv.client(keys.user_prvkey) as user, \
            srv.client(keys.executor_prvkey) as reconciler:
        owner.add_blueprint_definition(blueprint_definition(keys.name, "Deployment", "reconciler", schema=schema))
        user.add_blueprint(blueprint(keys.name, "Deployment", "web", {"replicas": 3, "image": "nginx"}, "edge"))
        user.add_blueprint(blueprint(keys.name, "Deployment", "db", {"replicas": 1}))
        edge_key = generate_prvkey()  # web's reconcile goes to a reconciler at its location
        owner.add_executor(keys.name, id_of(edge_key), "reconciler-edge", "reconciler", location="edge")
        owner.approve_executor(keys.name, "reconciler-edge")
        with srv.client(edge_key) as at_edge:
            for who, name, status in ((reconciler, "db", {"replicas": 1, "ready": 1, "generation": 1}),
                                      (at_edge, "web", {"replicas": 3, "ready": 2, "generation": 1})):
                p = who.assign(keys.name, timeout=5)  # web is behind: 2 of its 3 replicas are ready
                assert (p.spec.kwargs or {})["blueprintName"] == name
                who.update_blueprint_status(keys.name, name, status)
                who.close(p.processid, [])
        result = drive("blueprints", {"url": srv.url, "colony": keys.name, "userKey": keys.user_prvkey,
                                      "screenshots": str(SCREENSHOTS)}, timeout=80)
        web = user.get_blueprint(keys.name, "web")
    assert result["pageErrors"] == []
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["db", "web"]
    assert rows["web"]["cells"][:4] == ["web", "Deployment", "edge", "1"]
    assert "replicas=3" in rows["web"]["cells"][4] and "image=nginx" in rows["web"]["cells"][4]
    assert rows["web"]["cells"][5] == "replicas=3ready=2generation=1"  # one field per line
    assert (rows["web"]["sync"], rows["web"]["differs"]) == ("no", ["ready"])
    assert (rows["db"]["sync"], rows["db"]["differs"]) == ("yes", [])
    assert rows["web"]["states"] == ["successful"]
    assert rows["web"]["links"] == [f"#/process/{web.metadata.last_reconciliation_process}"]
    [kind] = result["kinds"]
    assert kind["cells"] == ["Deployment", "deployments.colonies.io", "reconciler", "reconcile", "60 s", "2"]
    assert result["desktopOverflow"] <= 0 and result["phoneOverflow"] <= 0, result
    assert (SCREENSHOTS / "dashboard-blueprints.png").stat().st_size > 5000
