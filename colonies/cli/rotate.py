"""Key rotation (`colony|user|executor|server chid`) and `function register|remove`."""

from __future__ import annotations

from typing import Annotated

import typer

from colonies.cli.common import (
    Colony,
    ColonyPrvKey,
    PrvKey,
    ServerPrvKey,
    client,
    owner_client,
    server_client,
)
from colonies.cli.function import function_app
from colonies.cli.identity import colony_app, executor_app, user_app
from colonies.cli.server import server_app

NewId = Annotated[str, typer.Option("--id", help="The new id (`colonies security id --prvkey NEW`).")]
ExecutorPrvKey = Annotated[
    str, typer.Option("--executor-prvkey", envvar="COLONIES_EXECUTOR_PRVKEY", help="The executor's own key.")
]


@colony_app.command("chid")
def colony_chid(new_id: NewId, colony: Colony = "", colony_prvkey: ColonyPrvKey = "") -> None:
    """Move the colony to a new owner id (signed with the current owner key)."""
    with owner_client(colony_prvkey) as c:
        c.change_colony_id(colony, new_id)
    typer.echo(f"Colony {colony} now owned by {new_id}")


@user_app.command("chid")
def user_chid(new_id: NewId, colony: Colony = "", prvkey: PrvKey = "") -> None:
    """Replace your user id with a new one (signed with your current key)."""
    with client(prvkey) as c:
        c.change_user_id(colony, new_id)
    typer.echo(f"User id changed to {new_id}")


@executor_app.command("chid")
def executor_chid(new_id: NewId, colony: Colony = "", executor_prvkey: ExecutorPrvKey = "") -> None:
    """Replace an executor's id with a new one (signed with the executor's current key)."""
    with client(executor_prvkey, "executor key", "COLONIES_EXECUTOR_PRVKEY", "--executor-prvkey") as c:
        c.change_executor_id(colony, new_id)
    typer.echo(f"Executor id changed to {new_id}")


@server_app.command("chid")
def server_chid(new_id: NewId, server_prvkey: ServerPrvKey = "") -> None:
    """Move server ownership to a new id (signed with the current server owner key)."""
    with server_client(server_prvkey) as c:
        c.change_server_id(new_id)
    typer.echo(f"Server owner id changed to {new_id}")


@function_app.command("register")
def function_register(
    funcname: Annotated[str, typer.Option("--name", help="Function name.")],
    executorname: Annotated[
        str, typer.Option("--executor", envvar="COLONIES_EXECUTOR_NAME", help="This executor's name.")
    ],
    colony: Colony = "",
    executor_prvkey: ExecutorPrvKey = "",
    description: Annotated[str, typer.Option("--description", help="What it does.")] = "",
) -> None:
    """Advertise a function this executor serves (signed with the executor's key)."""
    with client(executor_prvkey, "executor key", "COLONIES_EXECUTOR_PRVKEY", "--executor-prvkey") as c:
        f = c.add_function(colony, executorname, funcname, description)
    typer.echo(f"Function {f.funcname} registered (id {f.functionid})")


@function_app.command("remove")
def function_remove(
    functionid: Annotated[str, typer.Option("--functionid", help="The function's id (`function ls --json`).")],
    executor_prvkey: ExecutorPrvKey = "",
) -> None:
    """Remove a function this executor registered."""
    with client(executor_prvkey, "executor key", "COLONIES_EXECUTOR_PRVKEY", "--executor-prvkey") as c:
        c.remove_function(functionid)
    typer.echo(f"Function {functionid} removed")
