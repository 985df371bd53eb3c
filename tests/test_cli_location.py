"""`colonies location add|ls|get|remove` as a user runs them, against a real server on loopback: the
colony owner's key adds and removes, a member's key reads; tables show the executors at each site."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import cli_env, run_cli_inprocess

cli = run_cli_inprocess


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stdout}\n{r.stderr}"
    return r.stdout


def js(r: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(r))


def failed(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    return r.stderr


@pytest.fixture
def env(server: ServerProc, colony: ColonyKeys) -> dict[str, str]:
    return cli_env(server, colony)


def test_add_ls_get_remove(env: dict[str, str], colony: ColonyKeys) -> None:
    assert "No locations in colony testcolony" in cli(env, "location", "ls").stderr
    assert js(cli(env, "location", "ls", "--json")) == []
    out = ok(cli(env, "location", "add", "--name", "lumi", "--desc", "LUMI supercomputer, Kajaani",
                 "--long", "27.6324735", "--lat", "64.2220316"))
    assert out.strip() == "Location lumi added to colony testcolony (27.6325, 64.222)"
    edge = js(cli(env, "location", "add", "-n", "edge", "--long", "-122.4194", "--lat", "-37.7749", "--json"))
    assert (edge["name"], edge["long"], edge["lat"], edge["description"]) == ("edge", -122.4194, -37.7749, "")
    assert len(edge["locationid"]) == 64

    # Executors sit at a site by their own locationname (`executor add --location`), matched ignoring case.
    ok(cli(env, "executor", "add", "--name", "slurm-1", "--type", "slurm", "--location", "LUMI",
           "--executorid", id_of(generate_prvkey())))
    ok(cli(env, "executor", "add", "--name", "slurm-2", "--type", "slurm", "--location", "lumi",
           "--executorid", id_of(generate_prvkey())))
    table = ok(cli(env, "location", "ls"))
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
            for line in table.splitlines() if line.startswith("│")}
    assert rows["lumi"] == ["lumi", "LUMI supercomputer, Kajaani", "27.6325", "64.2220", "slurm-1, slurm-2"]
    assert rows["edge"] == ["edge", "", "-122.4194", "-37.7749", ""]
    listed = js(cli(env, "location", "ls", "--json"))
    assert [x["name"] for x in listed] == ["edge", "lumi"] and "executors" not in listed[0]  # the wire shape

    got = ok(cli(env, "location", "get", "--name", "lumi"))
    for field in ("LUMI supercomputer, Kajaani", "27.6324735", "64.2220316", "slurm-1, slurm-2", "testcolony"):
        assert field in got, (field, got)
    assert js(cli(env, "location", "get", "--name", "edge", "--json")) == edge

    assert ok(cli(env, "location", "remove", "--name", "edge")).strip() == "Location edge removed from colony testcolony"
    assert [x["name"] for x in js(cli(env, "location", "ls", "--json"))] == ["lumi"]


def test_refusals_are_one_line(env: dict[str, str], colony: ColonyKeys) -> None:
    ok(cli(env, "location", "add", "--name", "hpc"))
    assert failed(cli(env, "location", "add", "--name", "hpc")).strip() == (
        "error: a location named hpc already exists in colony testcolony (status 409)")
    assert failed(cli(env, "location", "get", "--name", "nope")).strip() == (
        "error: location nope not found in colony testcolony (status 404)")
    assert "(status 404)" in failed(cli(env, "location", "remove", "--name", "nope"))
    assert failed(cli(env, "location", "add", "--name", "x", "--lat", "91")).strip() == (
        "error: location.lat must be a number from -90 to 90 (status 400)")
    assert "no location name" in failed(cli(env, "location", "get"))
    # A member cannot add; the owner's key alone cannot read (owners are not members, protocol §2).
    member = {**env, "COLONIES_COLONY_PRVKEY": colony.user_prvkey}
    assert "(status 403)" in failed(cli(member, "location", "add", "--name", "mine"))
    owner_only = {**env, "COLONIES_PRVKEY": colony.colony_prvkey}
    assert "(status 403)" in failed(cli(owner_only, "location", "ls"))
    no_owner_key = {k: v for k, v in env.items() if k != "COLONIES_COLONY_PRVKEY"}
    assert "COLONIES_COLONY_PRVKEY" in failed(cli(no_owner_key, "location", "remove", "--name", "hpc"))
    # An executor not yet approved reads the sites (as in the original).
    pending = generate_prvkey()
    ok(cli(env, "executor", "add", "--name", "new", "--type", "t", "--executorid", id_of(pending)))
    assert [x["name"] for x in js(cli({**env, "COLONIES_PRVKEY": pending}, "location", "ls", "--json"))] == ["hpc"]
