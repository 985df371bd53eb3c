"""Key rotation and function registration from the CLI, against a real server."""

from __future__ import annotations

import json

from colonies.protocol.crypto import generate_prvkey, id_of
from tests.conftest import ColonyKeys, ServerProc
from tests.kit_support import cli_env, run_cli_inprocess


def test_user_chid_rotates_the_key(server: ServerProc, colony: ColonyKeys) -> None:
    env = cli_env(server, colony)
    new = generate_prvkey()
    r = run_cli_inprocess(env, "user", "chid", "--id", id_of(new))
    assert r.returncode == 0, r.stderr
    # The old key is no longer a member; the new one is.
    old = run_cli_inprocess(env, "user", "ls", "--json")
    assert old.returncode != 0
    assert "not a member" in old.stderr
    fresh = run_cli_inprocess({**env, "COLONIES_PRVKEY": new}, "user", "ls", "--json")
    assert fresh.returncode == 0, fresh.stderr
    assert id_of(new) in {u["userid"] for u in json.loads(fresh.stdout)}


def test_function_register_and_remove(server: ServerProc, colony: ColonyKeys) -> None:
    env = cli_env(server, colony, COLONIES_EXECUTOR_PRVKEY=colony.executor_prvkey,
                  COLONIES_EXECUTOR_NAME=colony.executor_name)
    r = run_cli_inprocess(env, "function", "register", "--name", "resize", "--description", "thumbnails")
    assert r.returncode == 0, r.stderr
    ls = json.loads(run_cli_inprocess(env, "function", "ls", "--json").stdout)
    assert [f["funcname"] for f in ls] == ["resize"]
    # Only the owning executor may remove it: the user's key is refused.
    fid = ls[0]["functionid"]
    refused = run_cli_inprocess({**env, "COLONIES_EXECUTOR_PRVKEY": colony.user_prvkey}, "function", "remove",
                                "--functionid", fid)
    assert refused.returncode != 0
    assert run_cli_inprocess(env, "function", "remove", "--functionid", fid).returncode == 0
    assert json.loads(run_cli_inprocess(env, "function", "ls", "--json").stdout) == []


def test_server_chid_moves_ownership(server: ServerProc, colony: ColonyKeys) -> None:
    env = cli_env(server, colony)
    new = generate_prvkey()
    assert run_cli_inprocess(env, "server", "chid", "--id", id_of(new)).returncode == 0
    assert run_cli_inprocess(env, "colony", "ls", "--json").returncode != 0
    r = run_cli_inprocess({**env, "COLONIES_SERVER_PRVKEY": new}, "colony", "ls", "--json")
    assert r.returncode == 0, r.stderr
    assert colony.name in {c["name"] for c in json.loads(r.stdout)}
