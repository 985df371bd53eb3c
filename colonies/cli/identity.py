"""`colonies colony|user|executor|security ...` (`executor run` lives in `run.py`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from colonies.cli.common import (
    EXECUTOR_STATES,
    CLIError,
    Colony,
    ColonyPrvKey,
    Json,
    PrvKey,
    ServerPrvKey,
    client,
    group,
    kv,
    owner_client,
    server_client,
    show,
    table,
    ts,
)

colony_app = group("Colonies (server owner).")
user_app = group("Users of a colony.")
executor_app = group("Executors of a colony, and `executor run` to serve functions.")
security_app = group("Keys and identities.")

Name = Annotated[str, typer.Option("--name", help="Name.")]


def _member_key(prvkey: str, colony_prvkey: str) -> str:
    """Reads are for members (COLONIES_PRVKEY). Without one, the colony owner's key is sent, which the
    server refuses unless that key is also a user or executor of the colony (protocol §2)."""
    return prvkey or colony_prvkey


# -- colony ---------------------------------------------------------------------------------------------
@colony_app.command("add")
def colony_add(
    name: Name,
    colonyid: Annotated[
        str, typer.Option("--colonyid", help="The colony's id (from the colony owner's key).")
    ] = "",
    colony_prvkey: ColonyPrvKey = "",
    server_prvkey: ServerPrvKey = "",
    as_json: Json = False,
) -> None:
    """Add a colony; its id is --colonyid or the id of the colony owner's key."""
    from colonies.protocol.crypto import id_of

    if not colonyid:
        if not colony_prvkey:
            raise CLIError("no colony id: pass --colonyid, or set COLONIES_COLONY_PRVKEY")
        colonyid = id_of(colony_prvkey)
    with server_client(server_prvkey) as c:
        col = c.add_colony(colonyid, name)
    show(col, as_json, lambda x: f"Colony {x.name} added (id {x.colonyid})")


@colony_app.command("remove")
def colony_remove(name: Name, server_prvkey: ServerPrvKey = "") -> None:
    """Remove a colony and everything in it."""
    with server_client(server_prvkey) as c:
        c.remove_colony(name)
    typer.echo(f"Colony {name} removed")


@colony_app.command("ls")
def colony_ls(server_prvkey: ServerPrvKey = "", as_json: Json = False) -> None:
    """List colonies."""
    with server_client(server_prvkey) as c:
        cols = c.get_colonies() or []
    show(
        cols, as_json, lambda xs: table("Colonies", ["Name", "ColonyId"], [(x.name, x.colonyid) for x in xs])
    )


@colony_app.command("stats")
def colony_stats(
    colony: Colony = "", prvkey: PrvKey = "", colony_prvkey: ColonyPrvKey = "", as_json: Json = False
) -> None:
    """Process and executor counts of a colony."""
    from colonies.cli.server import stats_table

    with client(_member_key(prvkey, colony_prvkey)) as c:
        stats = c.colony_stats(colony)
    show(stats, as_json, lambda s: stats_table(f"Colony {colony}", s))


@colony_app.command("check")
def colony_check(
    name: Annotated[str, typer.Option("--name", help="Colony name.")],
    prvkey: PrvKey = "",
    colony_prvkey: ColonyPrvKey = "",
) -> None:
    """Exit 0 if the colony exists (read with a member's key), 1 if not."""
    from colonies.errors import ClientError

    with client(_member_key(prvkey, colony_prvkey)) as c:
        try:
            c.get_colony(name)
        except ClientError as exc:
            raise CLIError(f"colony {name} not found or not readable with this key: {exc.message}") from None
    typer.echo(f"Colony {name} exists")


# -- user -----------------------------------------------------------------------------------------------
@user_app.command("add")
def user_add(
    name: Name,
    userid: Annotated[str, typer.Option("--userid", help="The user's id (`colonies security generate`).")],
    email: Annotated[str, typer.Option("--email", help="E-mail.")] = "",
    phone: Annotated[str, typer.Option("--phone", help="Phone.")] = "",
    colony: Colony = "",
    colony_prvkey: ColonyPrvKey = "",
    as_json: Json = False,
) -> None:
    """Add a user to a colony (colony owner)."""
    with owner_client(colony_prvkey) as c:
        u = c.add_user(colony, userid, name, email, phone)
    show(u, as_json, lambda x: f"User {x.name} added to colony {colony} (id {x.userid})")


def _users_table(users: list[Any]) -> Any:
    return table(
        "Users", ["Name", "UserId", "Email", "Phone"], [(u.name, u.userid, u.email, u.phone) for u in users]
    )


@user_app.command("ls")
def user_ls(
    colony: Colony = "", prvkey: PrvKey = "", colony_prvkey: ColonyPrvKey = "", as_json: Json = False
) -> None:
    """List the users of a colony."""
    with client(_member_key(prvkey, colony_prvkey)) as c:
        users = c.get_users(colony) or []
    show(users, as_json, _users_table)


@user_app.command("get")
def user_get(
    name: Name,
    colony: Colony = "",
    prvkey: PrvKey = "",
    colony_prvkey: ColonyPrvKey = "",
    as_json: Json = False,
) -> None:
    """Show one user."""
    with client(_member_key(prvkey, colony_prvkey)) as c:
        u = c.get_user(colony, name)
    show(u, as_json, lambda x: _users_table([x]))


@user_app.command("remove")
def user_remove(name: Name, colony: Colony = "", colony_prvkey: ColonyPrvKey = "") -> None:
    """Remove a user (colony owner)."""
    with owner_client(colony_prvkey) as c:
        c.remove_user(colony, name)
    typer.echo(f"User {name} removed from colony {colony}")


# -- executor -------------------------------------------------------------------------------------------
ExecName = Annotated[str, typer.Option("--name", envvar="COLONIES_EXECUTOR_NAME", help="Executor name.")]
ExecType = Annotated[str, typer.Option("--type", envvar="COLONIES_EXECUTOR_TYPE", help="Executor type.")]
Location = Annotated[str, typer.Option("--location", help="Location name.")]
Approve = Annotated[bool, typer.Option("--approve", help="Approve it at once.")]


def _add(colony: str, colony_prvkey: str, executorid: str, name: str, executortype: str, location: str,
         approve: bool) -> Any:
    from colonies.model import ExecutorState

    with owner_client(colony_prvkey) as c:
        e = c.add_executor(colony, executorid, name, executortype, location)
        if approve:
            c.approve_executor(colony, name)
            # The owner may not read executors (protocol §2: owners are not members), so no re-fetch.
            e.state = ExecutorState.APPROVED
    return e


def _executors_table(xs: list[Any], full: bool = False) -> Any:
    rows = [
        (
            x.executorname,
            x.executortype,
            x.executorid,
            EXECUTOR_STATES.get(x.state, x.state),
            x.locationname,
            ts(x.lastheardfromtime),
        )
        for x in xs
    ]
    cols = ["Name", "Type", "ExecutorId", "State", "Location", "LastHeardFrom"]
    return table("Executors", cols, rows, full=full, optional=("Location",))


@executor_app.command("add")
def executor_add(
    name: ExecName,
    executortype: ExecType,
    executorid: Annotated[str, typer.Option("--executorid", help="The executor's id.")] = "",
    executor_prvkey: Annotated[
        str,
        typer.Option(
            "--executor-prvkey",
            envvar="COLONIES_EXECUTOR_PRVKEY",
            help="The executor's key (its id is used if --executorid is not given).",
        ),
    ] = "",
    location: Location = "",
    approve: Approve = False,
    colony: Colony = "",
    colony_prvkey: ColonyPrvKey = "",
    as_json: Json = False,
) -> None:
    """Add an executor (colony owner); --approve approves it too."""
    from colonies.protocol.crypto import id_of

    if not executorid:
        if not executor_prvkey:
            raise CLIError("no executor id: pass --executorid, or set COLONIES_EXECUTOR_PRVKEY")
        executorid = id_of(executor_prvkey)
    e = _add(colony, colony_prvkey, executorid, name, executortype, location, approve)
    show(e, as_json, lambda x: _executors_table([x]))


@executor_app.command("create")
def executor_create(
    name: ExecName,
    executortype: ExecType,
    keypath: Annotated[str, typer.Option("--keypath", help="File to write the new private key to (0600).")],
    idpath: Annotated[str, typer.Option("--idpath", help="File to write the new executor id to.")],
    location: Location = "",
    approve: Approve = False,
    colony: Colony = "",
    colony_prvkey: ColonyPrvKey = "",
    as_json: Json = False,
) -> None:
    """Generate a key, add an executor with its id (colony owner), and write the key and id files.

    The files are created new (an existing file is never overwritten) before the executor is added,
    and removed again if adding it fails. Run it with `COLONIES_PRVKEY=$(cat KEYPATH)`."""
    import os

    from colonies.protocol.crypto import generate_prvkey, id_of

    prv = generate_prvkey()
    written: list[str] = []
    try:
        for path, text, mode in ((keypath, prv, 0o600), (idpath, id_of(prv), 0o644)):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            except FileExistsError:
                raise CLIError(f"{path} exists: pick another file (an existing key is never overwritten)") from None
            except OSError as exc:
                raise CLIError(f"cannot write {path}: {exc.strerror}") from None
            written.append(path)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        e = _add(colony, colony_prvkey, id_of(prv), name, executortype, location, approve)
    except BaseException:
        for path in written:
            os.unlink(path)
        raise
    if as_json:
        show(e, True, _executors_table)
        return
    typer.echo(f"Executor {e.executorname} added ({EXECUTOR_STATES.get(e.state, e.state)}), id {e.executorid}")
    typer.echo(f"Private key in {keypath}, id in {idpath}")


@executor_app.command("ls")
def executor_ls(
    colony: Colony = "",
    prvkey: PrvKey = "",
    colony_prvkey: ColonyPrvKey = "",
    as_json: Json = False,
    full: Annotated[bool, typer.Option("--full", help="Every field of each executor, whole ids.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Also removed (UNREGISTERED) executors.")] = False,
    executortype: Annotated[str, typer.Option("--type", help="Only this executor type.")] = "",
    location: Annotated[str, typer.Option("--location", help="Only at this location.")] = "",
    filter_text: Annotated[
        str, typer.Option("--filter", "-f", help="Only those whose name or type contains this text.")
    ] = "",
) -> None:
    """List the executors of a colony (removed ones only with --all)."""
    from colonies.model import ExecutorState

    with client(_member_key(prvkey, colony_prvkey)) as c:
        xs = c.get_executors(colony) or []
    needle = filter_text.lower()
    xs = [
        x
        for x in xs
        if (show_all or x.state != ExecutorState.UNREGISTERED)
        and (not executortype or x.executortype == executortype)
        and (not location or x.locationname == location)
        and (not needle or needle in x.executorname.lower() or needle in x.executortype.lower())
    ]
    if full and not as_json:
        from colonies.cli.common import print_fitted

        for x in xs:
            print_fitted(_executor_kv(x))
        return
    show(xs, as_json, lambda ys: _executors_table(ys, full))


@executor_app.command("get")
def executor_get(
    name: ExecName,
    colony: Colony = "",
    prvkey: PrvKey = "",
    colony_prvkey: ColonyPrvKey = "",
    as_json: Json = False,
) -> None:
    """Show one executor."""
    with client(_member_key(prvkey, colony_prvkey)) as c:
        e = c.get_executor(colony, name)
    show(e, as_json, _executor_kv)


def _executor_kv(x: Any) -> Any:
    return kv(
        f"Executor {x.executorname}",
        [
            ("Name", x.executorname),
            ("Type", x.executortype),
            ("Id", x.executorid),
            ("Colony", x.colonyname),
            ("State", EXECUTOR_STATES.get(x.state, x.state)),
            ("Location", x.locationname),
            ("CommissionTime", ts(x.commissiontime)),
            ("LastHeardFrom", ts(x.lastheardfromtime)),
            *_pilot_rows(x),
        ],
    )


def _pilot_rows(x: Any) -> list[tuple[str, str]]:
    """A pilot allocator's reported state (colonies/executors/pilot.py), when it is one."""
    p = (x.allocations.projects or {}).get("pilot") if x.allocations else None
    if not isinstance(p, dict):
        return []
    rows = [("Pilot", (f"{p.get('state', '')}: {p.get('running', 0)} allocation(s) running, {p.get('queued', 0)} "
                      f"queued, {p.get('slots', 0)} slots; {p.get('waiting', 0)} waiting process(es) fit, "
                      f"{p.get('never_fit', 0)} never fit; {p.get('failures', 0)} failed submission(s) in a row"))]
    if p.get("reason"):
        rows.append(("PilotReason", str(p["reason"])))
    return rows


def _owner_action(action: str, name: str, colony: str, colony_prvkey: str) -> None:
    with owner_client(colony_prvkey) as c:
        getattr(c, f"{action}_executor")(colony, name)
    typer.echo(f"Executor {name} {action.rstrip('e')}ed")


@executor_app.command("approve")
def executor_approve(name: ExecName, colony: Colony = "", colony_prvkey: ColonyPrvKey = "") -> None:
    """Approve an executor (colony owner)."""
    _owner_action("approve", name, colony, colony_prvkey)


@executor_app.command("reject")
def executor_reject(name: ExecName, colony: Colony = "", colony_prvkey: ColonyPrvKey = "") -> None:
    """Reject an executor (colony owner)."""
    _owner_action("reject", name, colony, colony_prvkey)


@executor_app.command("remove")
def executor_remove(name: ExecName, colony: Colony = "", colony_prvkey: ColonyPrvKey = "") -> None:
    """Remove an executor (colony owner)."""
    _owner_action("remove", name, colony, colony_prvkey)


# -- security -------------------------------------------------------------------------------------------
@security_app.command("generate")
def security_generate() -> None:
    """Print a new private key and its id."""
    from colonies.protocol.crypto import generate_prvkey, id_of

    prv = generate_prvkey()
    typer.echo(f"Id:         {id_of(prv)}")
    typer.echo(f"PrvKey:     {prv}")


@security_app.command("id")
def security_id(prvkey: PrvKey = "") -> None:
    """Print the id of a private key."""
    from colonies.protocol.crypto import id_of

    if not prvkey:
        raise CLIError("no private key: set COLONIES_PRVKEY or pass --prvkey")
    try:
        typer.echo(id_of(prvkey))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
