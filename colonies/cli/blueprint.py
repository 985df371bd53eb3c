"""`colonies blueprint ...`: declared state that reconciler executors make so.

`definition add|get|ls|remove` manage kinds (the colony owner's key adds and removes them); `add`, `get`,
`ls`, `update`, `set`, `remove`, `reconcile`, `history` and `doctor` work with blueprints (a member's key).
Files are JSON, in the wire shape (the original's CLI takes the same files); a missing
`metadata.colonyname` is filled in from --colonyname.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from colonies.cli.common import (
    CLIError,
    Colony,
    ColonyPrvKey,
    Json,
    PrvKey,
    client,
    group,
    kv,
    load_json_file,
    need,
    owner_client,
    print_json,
    show,
    table,
    to_builtins,
    ts,
)

blueprint_app = group("Blueprints: declared state (a kind's definition, then blueprints of it) that reconciler "
                      "executors make so and keep so.")
definition_app = group("Blueprint definitions: a kind, the JSON Schema of its spec, and the executors that "
                       "reconcile it (colony owner adds and removes).")
blueprint_app.add_typer(definition_app, name="definition")

Name = Annotated[str, typer.Option("--name", "-n", help="Blueprint name.")]
DefName = Annotated[str, typer.Option("--name", "-n", help="Blueprint definition name.")]
SpecFile = Annotated[str, typer.Option("--spec", "-f", help="JSON file in the wire shape.")]
ONLINE_S = 120  # a handler executor heard from within this many seconds counts as online (the original's doctor)
SUMMARY = 80    # characters of a spec or status in a table


def _colony(colony: str) -> str:
    return need(colony, "colony", "COLONIES_COLONY_NAME", "--colonyname")


def _file(path: str, colony: str) -> dict[str, Any]:
    need(path, "spec file", "a JSON file", "--spec")
    doc = load_json_file(path)
    if not isinstance(doc, dict):
        raise CLIError(f"{path} must hold a JSON object")
    meta = doc.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise CLIError(f"{path}: metadata must be an object")
    if not meta.get("colonyname"):
        meta["colonyname"] = _colony(colony)
    return doc


def _compact(value: Any, width: int = SUMMARY) -> str:
    """`key=value, ...` of a spec or status in its own order (nested values as compact JSON), cut to `width`."""
    if not value:
        return ""
    value = to_builtins(value)
    parts = [f"{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}" for k, v in value.items()]
    text = ", ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


def _pretty(value: Any) -> str:
    return json.dumps(to_builtins(value), indent=2, sort_keys=True) if value else ""


# -- definitions -----------------------------------------------------------------------------------------------
@definition_app.command("add")
def definition_add(spec: SpecFile = "", colony: Colony = "", colony_prvkey: ColonyPrvKey = "",
                   as_json: Json = False) -> None:
    """Add a blueprint definition from a JSON file (colony owner)."""
    doc = _file(spec, colony)
    with owner_client(colony_prvkey) as c:
        d = c.add_blueprint_definition(doc)
    show(d, as_json, lambda x: f"Blueprint definition {x.metadata.name} (kind {x.spec.names.kind}) added to "
                               f"colony {x.metadata.colonyname}")


def _definition_rows(defs: list[Any]) -> list[tuple[Any, ...]]:
    return [(d.metadata.name, d.spec.names.kind, f"{d.spec.group}/{d.spec.version}", d.spec.handler.executor_type,
             d.spec.handler.function_name, d.spec.handler.reconcile_interval or 60,
             "yes" if d.spec.schema else "no") for d in defs]


_DEF_COLUMNS = ["Name", "Kind", "Group/Version", "ExecutorType", "Function", "Interval", "Schema"]


@definition_app.command("ls")
def definition_ls(colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False) -> None:
    """The colony's blueprint definitions."""
    with client(prvkey) as c:
        defs = c.get_blueprint_definitions(_colony(colony)) or []
    if not defs and not as_json:
        typer.echo(f"No blueprint definitions in colony {colony}", err=True)
        return
    show(defs, as_json, lambda xs: table("Blueprint definitions", _DEF_COLUMNS, _definition_rows(xs)))


@definition_app.command("get")
def definition_get(name: DefName = "", colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False) -> None:
    """One blueprint definition, with its schema."""
    need(name, "definition name", "a name", "--name")
    with client(prvkey) as c:
        d = c.get_blueprint_definition(_colony(colony), name)
    show(d, as_json, lambda x: kv(f"Blueprint definition {x.metadata.name}", [
        *zip(_DEF_COLUMNS, _definition_rows([x])[0], strict=True), ("DefinitionId", x.blueprintdefinitionid),
        ("Plural", x.spec.names.plural), ("Scope", x.spec.scope), ("Created", ts(x.metadata.created_at)),
        ("Schema", _pretty(x.spec.schema))]))


@definition_app.command("remove")
def definition_remove(name: DefName = "", colony: Colony = "", colony_prvkey: ColonyPrvKey = "") -> None:
    """Remove a blueprint definition (colony owner); refused while blueprints of its kind exist."""
    need(name, "definition name", "a name", "--name")
    with owner_client(colony_prvkey) as c:
        c.remove_blueprint_definition(_colony(colony), name)
    typer.echo(f"Blueprint definition {name} removed from colony {colony}")


# -- blueprints ------------------------------------------------------------------------------------------------
@blueprint_app.command("add")
def blueprint_add(spec: SpecFile = "", colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False) -> None:
    """Add a blueprint from a JSON file; the server submits its first reconcile."""
    doc = _file(spec, colony)
    with client(prvkey) as c:
        bp = c.add_blueprint(doc)
    show(bp, as_json, lambda x: f"Blueprint {x.metadata.name} ({x.kind}) added, generation "
                                f"{x.metadata.generation}, reconcile process {x.metadata.last_reconciliation_process}")


def _rows(bps: list[Any]) -> list[tuple[Any, ...]]:
    return [(b.metadata.name, b.kind, b.metadata.locationname, b.metadata.generation, _compact(b.spec),
             _compact(b.status), ts(b.metadata.last_reconciliation_time)) for b in bps]


@blueprint_app.command("ls")
def blueprint_ls(
    kind: Annotated[str, typer.Option("--kind", "-k", help="Only blueprints of this kind.")] = "",
    location: Annotated[str, typer.Option("--location", "-l", help="Only blueprints at this location.")] = "",
    colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False,
) -> None:
    """The colony's blueprints: desired state (spec) beside observed state (status)."""
    with client(prvkey) as c:
        bps = c.get_blueprints(_colony(colony), kind, location) or []
    if not bps and not as_json:
        typer.echo(f"No blueprints in colony {colony}", err=True)
        return
    show(bps, as_json, lambda xs: table(
        "Blueprints", ["Name", "Kind", "Location", "Gen", "Desired (spec)", "Observed (status)", "Reconciled"],
        _rows(xs), optional=["Reconciled"]))


def _blueprint_kv(b: Any) -> Any:
    md = b.metadata
    return kv(f"Blueprint {md.name}", [
        ("Name", md.name), ("Kind", b.kind), ("BlueprintId", b.blueprintid), ("Colony", md.colonyname),
        ("Location", md.locationname), ("Generation", md.generation), ("Created", ts(md.created_at)),
        ("Updated", ts(md.updated_at)), ("Labels", _compact(md.labels, 200)),
        ("LastReconcileProcess", md.last_reconciliation_process),
        ("LastReconciled", ts(md.last_reconciliation_time)),
        ("Desired (spec)", _pretty(b.spec)), ("Observed (status)", _pretty(b.status))])


@blueprint_app.command("get")
def blueprint_get(name: Name = "", colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False) -> None:
    """One blueprint: its spec and its status."""
    need(name, "blueprint name", "a name", "--name")
    with client(prvkey) as c:
        bp = c.get_blueprint(_colony(colony), name)
    show(bp, as_json, _blueprint_kv)


def _updated(bp: Any, as_json: bool) -> None:
    show(bp, as_json, lambda x: f"Blueprint {x.metadata.name} updated, generation {x.metadata.generation}")


@blueprint_app.command("update")
def blueprint_update(
    spec: SpecFile = "",
    force_generation: Annotated[bool, typer.Option("--force-generation", help="Add 1 to the generation (and "
                                                   "reconcile) even if the spec is unchanged.")] = False,
    colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False,
) -> None:
    """Replace a blueprint's spec (found by metadata.name); a changed spec is reconciled."""
    doc = _file(spec, colony)
    with client(prvkey) as c:
        _updated(c.update_blueprint(doc, force_generation), as_json)


@blueprint_app.command("set")
def blueprint_set(
    name: Name = "",
    key: Annotated[str, typer.Option("--key", help="Dotted path of an existing spec field, e.g. replicas or "
                                     "env.TZ (a leading spec. is dropped).")] = "",
    value: Annotated[str, typer.Option("--value", help="New value: JSON (3, true, {...}) or else a string.")] = "",
    colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False,
) -> None:
    """Set one field of a blueprint's spec; a change is reconciled."""
    from colonies.blueprints import set_path

    need(name, "blueprint name", "a name", "--name")
    need(key, "key", "a dotted path", "--key")
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    with client(prvkey) as c:
        bp = c.get_blueprint(_colony(colony), name)
        try:
            bp.spec = set_path(bp.spec, key, parsed)
        except KeyError as exc:
            raise CLIError(f"invalid key: {exc.args[0]}") from None
        _updated(c.update_blueprint(bp), as_json)


@blueprint_app.command("remove")
def blueprint_remove(name: Name = "", colony: Colony = "", prvkey: PrvKey = "") -> None:
    """Remove a blueprint; the server submits a cleanup process to its reconciler."""
    need(name, "blueprint name", "a name", "--name")
    with client(prvkey) as c:
        c.remove_blueprint(_colony(colony), name)
    typer.echo(f"Blueprint {name} removed from colony {colony}")


@blueprint_app.command("reconcile")
def blueprint_reconcile(
    name: Name = "",
    force: Annotated[bool, typer.Option("--force", "-f", help="Add 1 to the generation and pass force: true "
                                        "(the reconciler recreates what it runs).")] = False,
    colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False,
) -> None:
    """Submit a reconcile process for a blueprint now (members)."""
    need(name, "blueprint name", "a name", "--name")
    with client(prvkey) as c:
        p = c.reconcile_blueprint(_colony(colony), name, force)
    show(p, as_json, lambda x: f"Reconcile process {x.processid} submitted (colonies log get -p {x.processid})")


@blueprint_app.command("history")
def blueprint_history(
    name: Name = "",
    limit: Annotated[int, typer.Option("--limit", "-l", help="At most this many entries, newest first.")] = 10,
    generation: Annotated[int, typer.Option("--generation", "-g", help="Show this generation's spec.")] = -1,
    colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False,
) -> None:
    """A blueprint's spec changes, newest first."""
    need(name, "blueprint name", "a name", "--name")
    with client(prvkey) as c:
        bp = c.get_blueprint(_colony(colony), name)
        entries = c.get_blueprint_history(bp.blueprintid, 0 if generation >= 0 else limit) or []
    if generation >= 0:
        chosen = [h for h in entries if h.generation == generation]
        if not chosen:
            raise CLIError(f"generation {generation} not found in the history of blueprint {name}")
        show(chosen[0], as_json, lambda h: kv(f"Blueprint {name}, generation {h.generation}", [
            ("Generation", h.generation), ("Change", h.changetype), ("Time", ts(h.timestamp)),
            ("ChangedById", h.changedby), ("Spec", _pretty(h.spec))]))
        return
    show(entries, as_json, lambda hs: table(f"History of blueprint {name}", ["Gen", "Change", "Time", "ChangedById",
                                                                              "Spec"],
                                             [(h.generation, h.changetype, ts(h.timestamp), h.changedby,
                                               _compact(h.spec)) for h in hs], optional=["ChangedById"]))


# -- doctor ------------------------------------------------------------------------------------------------------
def diagnose(bp: Any, definition: Any, executors: list[Any], cron_names: set[str], last: Any,
             now: float) -> list[dict[str, Any]]:
    """Checks of one blueprint's health: [{check, ok, message}]. `status` follows the reconciler kit's
    convention: `generation` is the generation it reconciled, `error` the last failure."""
    from colonies.blueprints import cron_name

    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, message: str) -> None:
        checks.append({"check": name, "ok": ok, "message": message})

    md = bp.metadata
    if definition is None:
        check("definition", False, f"no blueprint definition of kind {bp.kind}")
        return checks
    h = definition.spec.handler
    check("definition", True, f"kind {bp.kind} is reconciled by {h.function_name} on executors of type "
                              f"{h.executor_type}")
    site = md.locationname.lower()
    handlers = [e for e in executors if e.executortype == h.executor_type and e.state == 1
                and (not site or (e.locationname or "").lower() == site)]
    where = f" at location {md.locationname}" if md.locationname else ""
    online = [e for e in handlers if now - e.lastheardfromtime.timestamp() <= ONLINE_S]
    if not handlers:
        check("handler", False, f"no approved executor of type {h.executor_type}{where}")
    elif not online:
        check("handler", False, f"{len(handlers)} executor(s) of type {h.executor_type}{where}, none heard from "
                                f"in the last {ONLINE_S} s")
    else:
        check("handler", True, f"{len(online)} executor(s) of type {h.executor_type}{where} online: "
                               + ", ".join(sorted(e.executorname for e in online)))
    cron = cron_name(bp.kind, md.locationname)
    check("cron", cron in cron_names, f"reconcile cron {cron} " + ("exists" if cron in cron_names else "is missing"))
    if last is None:
        check("last reconcile", False, "no reconcile process on record" if not md.last_reconciliation_process
              else f"reconcile process {md.last_reconciliation_process} is gone")
    else:
        state = {0: "WAITING", 1: "RUNNING", 2: "SUCCESS", 3: "FAILED", 4: "CANCELLED"}.get(last.state, str(last.state))
        detail = f": {last.errors[0]}" if last.state == 3 and last.errors else ""
        check("last reconcile", last.state in (1, 2) or (last.state == 0 and bool(online)),
              f"reconcile process {last.processid} {state}{detail}")
    status = bp.status or {}
    if status.get("error"):
        check("status", False, f"the last reconcile failed: {status['error']}")
    elif isinstance(status.get("generation"), int) and status["generation"] < md.generation:
        check("status", False, f"the status is of generation {status['generation']}, the blueprint is at "
                               f"{md.generation}")
    elif status:
        check("status", True, "reported" + (f" for generation {status['generation']}" if "generation" in status else ""))
    replicas = bp.spec.get("replicas")
    if isinstance(replicas, int) and not isinstance(replicas, bool):
        # A reconciler's executors carry the blueprint's id; blueprintgen is the generation each was started
        # at (a replicas-only change keeps the running ones), so every generation counts.
        mine = [e for e in executors if e.blueprintid == bp.blueprintid and e.state == 1]
        check("replicas", len(mine) >= replicas, f"{len(mine)}/{replicas} executors running for this blueprint")
    return checks


@blueprint_app.command("doctor")
def blueprint_doctor(
    name: Annotated[str, typer.Option("--name", "-n", help="Blueprint name (all blueprints if omitted).")] = "",
    colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False,
) -> None:
    """Check blueprints' health: definition present, handler executors online, reconcile cron, last
    reconcile's outcome, replicas. Exit status 1 when a check fails."""
    colony = _colony(colony)
    with client(prvkey) as c:
        bps = [c.get_blueprint(colony, name)] if name else c.get_blueprints(colony) or []
        defs = {d.spec.names.kind: d for d in c.get_blueprint_definitions(colony) or []}
        executors = c.get_executors(colony) or []
        crons = {cr.name for cr in c.get_crons(colony, 1000) or []}
        report = []
        for bp in bps:
            last = None
            if bp.metadata.last_reconciliation_process:
                from colonies.errors import ClientError

                try:
                    last = c.get_process(bp.metadata.last_reconciliation_process)
                except ClientError as exc:
                    if exc.status != 404:
                        raise
            report.append({"blueprint": bp.metadata.name, "kind": bp.kind,
                           "checks": diagnose(bp, defs.get(bp.kind), executors, crons, last, time.time())})
    failing = sum(not ch["ok"] for r in report for ch in r["checks"])
    if as_json:
        print_json(report)
    else:
        from rich.markup import escape

        from colonies.cli.common import console

        out = console()
        for r in report:
            out.print(f"[bold]{escape(r['blueprint'])}[/] ({escape(r['kind'])})")
            for ch in r["checks"]:
                mark = "[green]OK[/]   " if ch["ok"] else "[red]FAIL[/] "
                out.print(f"  {mark} {ch['check']}: {escape(ch['message'])}")
        if not report:
            out.print(f"No blueprints in colony {colony}")
        elif failing:
            out.print(f"[red]{failing} check(s) failed[/]: colonies blueprint reconcile --name <name> --force "
                      "resubmits; colonies executor ls shows the handlers")
        else:
            out.print("[green]No issues found[/]")
    if failing:
        raise typer.Exit(1)
