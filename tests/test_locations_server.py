"""Locations on a real server (both backends): the 4 messages as the original's Go client sends them
(through pycolonies' signed transport: pycolonies 1.0.25 has no location calls of its own) and through
our SDK; who may do what; limits; 409 for a duplicate, 404 for an unknown name; a removed colony's
locations are gone.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from pycolonies import Colonies, ColoniesConnectionError

from colonies.client.core import Call
from colonies.client.sync import Client
from colonies.errors import ClientError
from colonies.protocol.crypto import generate_prvkey, id_of
from colonies.server.handlers_locations import MAX_DESCRIPTION, MAX_NAME
from tests.conftest import ColonyKeys, ServerProc, fresh_pg_database, make_server, setup_colony

_names = itertools.count()
_HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        if request.param == "postgresql":
            env = {**stack.enter_context(fresh_pg_database()).server_env(), "COLONIES_ETCD_ENDPOINTS": ""}
        s = make_server(tmp_path_factory.mktemp(f"locations-{request.param}"), env)
        s.start()
        stack.callback(s.stop)
        yield s


@pytest.fixture
def col(srv: ServerProc) -> ColonyKeys:
    return setup_colony(srv, name=f"loc{next(_names)}")


@pytest.fixture
def owner(srv: ServerProc, col: ColonyKeys) -> Iterator[Client]:
    with srv.client(col.colony_prvkey) as c:
        yield c


@pytest.fixture
def user(srv: ServerProc, col: ColonyKeys) -> Iterator[Client]:
    with srv.client(col.user_prvkey) as c:
        yield c


def status_of(c: Client, msg: dict[str, Any]) -> tuple[int, str]:
    try:
        c._run(Call(msg, Any))
    except ClientError as e:
        return e.status, e.message
    return 200, ""


def go_location(colony: str, name: str, **kw: Any) -> dict[str, Any]:
    """The addlocationmsg the original's CLI sends: a client-made id and every field."""
    loc = {"locationid": id_of(generate_prvkey()), "name": name, "colonyname": colony,
           "description": "", "long": 0.0, "lat": 0.0, **kw}
    return {"msgtype": "addlocationmsg", "location": loc}


def test_the_go_clients_messages(srv: ServerProc, col: ColonyKeys) -> None:
    py = Colonies("127.0.0.1", srv.port)

    def rpc(msg: dict[str, Any], key: str) -> Any:
        return py._Colonies__rpc(msg, key)

    sent = go_location(col.name, "lumi", description="LUMI, Kajaani", long=27.6324735, lat=64.2220316)
    added = rpc(sent, col.colony_prvkey)
    assert set(added) == {"locationid", "name", "colonyname", "description", "long", "lat"}
    assert _HEX64.fullmatch(added["locationid"]) and added["locationid"] != sent["location"]["locationid"]
    assert {k: v for k, v in added.items() if k != "locationid"} == {
        "name": "lumi", "colonyname": col.name, "description": "LUMI, Kajaani", "long": 27.6324735, "lat": 64.2220316}
    rpc(go_location(col.name, "edge", long=18, lat=59), col.colony_prvkey)  # integers are numbers too

    assert rpc({"msgtype": "getlocationmsg", "colonyname": col.name, "name": "lumi"}, col.user_prvkey) == added
    listed = rpc({"msgtype": "getlocationsmsg", "colonyname": col.name}, col.executor_prvkey)
    assert [(x["name"], x["long"], x["lat"]) for x in listed] == [("edge", 18.0, 59.0), ("lumi", 27.6324735, 64.2220316)]
    assert rpc({"msgtype": "removelocationmsg", "colonyname": col.name, "name": "lumi"}, col.colony_prvkey) == {}
    with pytest.raises(ColoniesConnectionError, match="not found"):
        rpc({"msgtype": "getlocationmsg", "colonyname": col.name, "name": "lumi"}, col.user_prvkey)


def test_sdk_roles_and_the_executors_at_a_site(srv: ServerProc, col: ColonyKeys, owner: Client, user: Client) -> None:
    hpc = owner.add_location(col.name, "hpc", "a supercomputer", 24.9384, 60.1699)
    assert (hpc.name, hpc.colonyname, hpc.description, hpc.long, hpc.lat) == (
        "hpc", col.name, "a supercomputer", 24.9384, 60.1699)
    owner.add_location(col.name, "cloud")
    pending_key = generate_prvkey()
    owner.add_executor(col.name, id_of(pending_key), "slurm-1", "slurm", location="hpc")
    with srv.client(pending_key) as pending:  # an executor not yet approved reads the sites (M*)
        assert [x.name for x in pending.get_locations(col.name)] == ["cloud", "hpc"]
        assert pending.get_location(col.name, "hpc") == hpc
        assert status_of(pending, {"msgtype": "removelocationmsg", "colonyname": col.name, "name": "hpc"})[0] == 403
    at_hpc = [e.executorname for e in user.get_executors(col.name) if e.locationname == hpc.name]
    assert at_hpc == ["slurm-1"]

    # The owner's key alone is not a member; members cannot add or remove.
    assert status_of(owner, {"msgtype": "getlocationsmsg", "colonyname": col.name})[0] == 403
    assert status_of(user, go_location(col.name, "mine"))[0] == 403
    assert status_of(user, {"msgtype": "removelocationmsg", "colonyname": col.name, "name": "hpc"})[0] == 403
    other = setup_colony(srv, name=f"other{next(_names)}")
    with srv.client(other.colony_prvkey) as stranger:  # another colony's owner
        assert status_of(stranger, go_location(col.name, "theirs"))[0] == 403
    with srv.client(other.user_prvkey) as outsider:
        assert status_of(outsider, {"msgtype": "getlocationmsg", "colonyname": col.name, "name": "hpc"})[0] == 403

    owner.remove_location(col.name, "hpc")
    assert [x.name for x in user.get_locations(col.name)] == ["cloud"]
    # The executor keeps naming its site (as in the original); the dashboard shows it without a record.
    assert user.get_executor(col.name, "slurm-1").locationname == "hpc"


def test_duplicates_unknowns_and_limits(col: ColonyKeys, owner: Client, user: Client) -> None:
    owner.add_location(col.name, "edge", long=-180, lat=-90)
    owner.add_location(col.name, "Edge", long=180, lat=90)  # names are exact, as the original
    assert status_of(owner, go_location(col.name, "edge", description="again")) == (
        409, f"a location named edge already exists in colony {col.name}")
    assert user.get_location(col.name, "edge").description == ""
    assert status_of(user, {"msgtype": "getlocationmsg", "colonyname": col.name, "name": "nope"}) == (
        404, f"location nope not found in colony {col.name}")
    assert status_of(owner, {"msgtype": "removelocationmsg", "colonyname": col.name, "name": "nope"})[0] == 404
    assert status_of(owner, go_location("no-such-colony", "x"))[0] == 403

    refused = {
        "location.name is required": go_location(col.name, ""),
        f"location.name is longer than {MAX_NAME} characters": go_location(col.name, "n" * (MAX_NAME + 1)),
        "location.name contains a NUL character": go_location(col.name, "a\x00b"),
        f"location.description is longer than {MAX_DESCRIPTION} characters": go_location(
            col.name, "d", description="x" * (MAX_DESCRIPTION + 1)),
        "location.long must be a number from -180 to 180": go_location(col.name, "w", long=180.000001),
        "location.lat must be a number from -90 to 90": go_location(col.name, "s", lat=-90.5),
        "Expected `float`, got `str` - at `$.location.lat`": go_location(col.name, "t", lat="1.0"),
        "Expected `float`, got `null` - at `$.location.long`": go_location(col.name, "u", long=None),
        "name is required": {"msgtype": "getlocationmsg", "colonyname": col.name, "name": ""},
    }
    for message, msg in refused.items():
        status, text = status_of(user if msg["msgtype"] == "getlocationmsg" else owner, msg)
        assert status == 400 and message in text, (message, status, text)
    assert [x.name for x in user.get_locations(col.name)] == ["Edge", "edge"]  # nothing refused was stored
    longest = owner.add_location(col.name, "n" * MAX_NAME, "x" * MAX_DESCRIPTION)
    assert user.get_location(col.name, longest.name) == longest


def test_removing_a_colony_removes_its_locations(srv: ServerProc) -> None:
    keys = setup_colony(srv, name=f"gone{next(_names)}")
    with srv.client(keys.colony_prvkey) as owner:
        owner.add_location(keys.name, "site", "will go")
    with srv.client(srv.server_prvkey) as admin:
        admin.remove_colony(keys.name)
    again = setup_colony(srv, name=keys.name)  # a colony re-created under the same name starts empty
    with srv.client(again.user_prvkey) as user, srv.client(again.colony_prvkey) as owner:
        assert user.get_locations(keys.name) == []
        assert owner.add_location(keys.name, "site").description == ""
