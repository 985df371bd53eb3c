"""Handlers: blueprints, declared state that reconciler executors make so (§3, §7.1).

A definition (the colony owner adds and removes it) declares a kind: its JSON Schema and its handler, the
executor type and function that reconcile it. A blueprint's `spec` is checked against the schema on add
and update (a 400 naming the field). Add, every update that changes the spec (or forces), and
`reconcileblueprintmsg` submit one reconcile process to the handler's executor type; remove submits a
`cleanup` process. One cron per (kind, location), `reconcile-<Kind>[-<location>]`, reconciles the kind
there every `reconcileInterval` seconds while blueprints of it are there (storage keeps it so, in the
write's transaction). Adding a blueprint adds its location when the colony has none of that name.

Who: definitions, the colony owner adds and removes; members (users, approved executors) and the colony
owner read them and add, read, update and remove blueprints; only members report status and reconcile.

Unlike the original (README "Where we differ"): definitions, reconcile and cleanup are looked up in the
blueprint's own colony (the original takes the first definition of that kind in any colony); the server
sets every id, `createdAt`/`updatedAt` (never set there) and generation 1 on add (the original keeps the
client's, 0 when omitted); an update without `status` keeps the stored one (the original drops it); a
blueprint's kind and location cannot change by update (the original lets them, leaving its cron behind);
the cron runs every `reconcileInterval` seconds (the original: always 60); refusals are 404 unknown,
409 duplicate or in use, 400 malformed (the original: many are 500).
"""

from __future__ import annotations

from typing import Any

import msgspec

from colonies.blueprints import CLEANUP_FUNCTION, DEFAULT_RECONCILE_INTERVAL, cron_name
from colonies.clock import to_datetime
from colonies.errors import BadRequest, Conflict, Forbidden, NotFound
from colonies.model import (
    Blueprint,
    BlueprintDefinition,
    BlueprintHistory,
    BlueprintMetadata,
    Conditions,
    Cron,
    FunctionSpec,
    Location,
    Process,
    WorkflowSpec,
)
from colonies.protocol import messages as m
from colonies.security import Member, initiator_name
from colonies.server import blueprint_schema as schemas
from colonies.server.handlers_processes import new_process, normalize_spec
from colonies.server.handlers_types import Handler
from colonies.services import Services, check_text, new_id
from colonies.storage.base import BlueprintWrite

MAX_NAME = 256
MAX_LABELS = 64             # entries of labels, and of annotations
MAX_LABEL_VALUE = 4096
MAX_SHORT_NAMES = 16
MAX_INTERVAL = 365 * 86_400  # s
MAX_HISTORY = 1000
UPDATE_ATTEMPTS = 5          # an update re-reads and tries again when another changed the blueprint first
_enc = msgspec.json.Encoder()


def _name(value: str, what: str) -> str:
    return check_text(value, what, MAX_NAME, required=True)


async def _member_or_owner(s: Services, signer: str, colony: str) -> Member | None:
    """A member (a user or an approved executor) of `colony`, or None for its owner; else 403."""
    check_text(colony, "colonyname", MAX_NAME)
    try:
        return await s.guard.member(signer, colony)
    except Forbidden:
        await s.guard.colony_owner(signer, colony)
        return None


def _labels(labels: dict[str, str], what: str) -> None:
    if len(labels) > MAX_LABELS:
        raise BadRequest(f"{what} may have at most {MAX_LABELS} entries")
    for key, value in labels.items():
        _name(key, f"{what} key")
        check_text(value, f"{what}.{key}", MAX_LABEL_VALUE)


# -- definitions -----------------------------------------------------------------------------------------------
def _check_definition(d: BlueprintDefinition) -> None:
    md, spec, names, handler = d.metadata, d.spec, d.spec.names, d.spec.handler
    _name(md.name, "blueprintdefinition.metadata.name")
    _name(names.kind, "blueprintdefinition.spec.names.kind")
    _name(handler.executor_type, "blueprintdefinition.spec.handler.executorType")
    _name(handler.function_name, "blueprintdefinition.spec.handler.functionName")
    for value, what in ((d.kind, "kind"), (spec.group, "spec.group"), (spec.version, "spec.version"),
                        (spec.scope, "spec.scope"), (names.list_kind, "spec.names.listKind"),
                        (names.singular, "spec.names.singular"), (names.plural, "spec.names.plural")):
        check_text(value, f"blueprintdefinition.{what}", MAX_NAME)
    if len(names.short_names) > MAX_SHORT_NAMES:
        raise BadRequest(f"blueprintdefinition.spec.names.shortNames may have at most {MAX_SHORT_NAMES} entries")
    for short in names.short_names:
        _name(short, "blueprintdefinition.spec.names.shortNames")
    if not 0 <= handler.reconcile_interval <= MAX_INTERVAL:
        raise BadRequest(f"blueprintdefinition.spec.handler.reconcileInterval must be 0 (60 s) to {MAX_INTERVAL} s")
    _labels(md.labels, "blueprintdefinition.metadata.labels")
    _labels(md.annotations, "blueprintdefinition.metadata.annotations")
    if spec.schema is not msgspec.UNSET:
        schemas.compile_schema(spec.schema, "blueprintdefinition.spec.schema")


async def add_blueprint_definition(s: Services, signer: str, msg: m.AddBlueprintDefinitionMsg) -> BlueprintDefinition:
    d = msg.blueprintdefinition
    await s.guard.colony_owner(signer, check_text(d.metadata.colonyname, "colonyname", MAX_NAME))
    _check_definition(d)
    now = to_datetime(s.now())
    md = msgspec.structs.replace(d.metadata, generation=d.metadata.generation or 1, created_at=now, updated_at=now)
    stored = msgspec.structs.replace(d, blueprintdefinitionid=new_id(), kind=d.kind or "BlueprintDefinition",
                                     metadata=md)
    await s.storage.add_blueprint_definition(stored)
    return stored


async def get_blueprint_definition(s: Services, signer: str, msg: m.GetBlueprintDefinitionMsg) -> BlueprintDefinition:
    await _member_or_owner(s, signer, msg.colonyname)
    found = await s.storage.get_blueprint_definition(msg.colonyname, _name(msg.name, "name"))
    if found is None:
        raise NotFound(f"blueprint definition {msg.name} not found in colony {msg.colonyname}")
    return found


async def get_blueprint_definitions(s: Services, signer: str, msg: m.GetBlueprintDefinitionsMsg
                                    ) -> list[BlueprintDefinition]:
    await _member_or_owner(s, signer, msg.colonyname)
    return await s.storage.list_blueprint_definitions(msg.colonyname)


async def remove_blueprint_definition(s: Services, signer: str, msg: m.RemoveBlueprintDefinitionMsg
                                      ) -> dict[str, Any]:
    await s.guard.colony_owner(signer, check_text(msg.namespace, "namespace", MAX_NAME))
    if not await s.storage.remove_blueprint_definition(msg.namespace, _name(msg.name, "name")):
        raise NotFound(f"blueprint definition {msg.name} not found in colony {msg.namespace}")
    return {}


# -- what blueprint changes submit -------------------------------------------------------------------------
def _function_spec(d: BlueprintDefinition, colony: str, location: str, funcname: str, nodename: str,
                   kwargs: dict[str, Any]) -> FunctionSpec:
    return normalize_spec(FunctionSpec(
        nodename=nodename, funcname=funcname, args=[], kwargs=kwargs, maxexectime=-1, maxretries=-1,
        conditions=Conditions(colonyname=colony, executortype=d.spec.handler.executor_type, locationname=location)))


def _process(s: Services, spec: FunctionSpec, member: Member | None, signer: str, now: int) -> Process:
    p = new_process(s, spec, member, signer, now)
    p.initiatorid = signer  # the colony owner too (no member record, so no initiator name)
    return p


def _reconcile_process(s: Services, d: BlueprintDefinition, bp: Blueprint, member: Member | None, signer: str,
                       now: int, force: bool = False) -> Process:
    """The process that reconciles `bp` now; recorded in its metadata as the last reconciliation."""
    h = d.spec.handler
    kwargs: dict[str, Any] = {"kind": bp.kind, "blueprintName": bp.metadata.name}
    if force:
        kwargs["force"] = True
    spec = _function_spec(d, bp.metadata.colonyname, bp.metadata.locationname, h.function_name,
                          f"{h.executor_type}-{h.function_name}", kwargs)
    p = _process(s, spec, member, signer, now)
    bp.metadata.last_reconciliation_process, bp.metadata.last_reconciliation_time = p.processid, to_datetime(now)
    return p


def _cron(d: BlueprintDefinition, colony: str, location: str, member: Member | None, signer: str) -> Cron:
    """The reconcile cron of (the definition's kind, `location`): a one-node workflow with kwargs {"kind"}."""
    h = d.spec.handler
    kind = d.spec.names.kind
    spec = _function_spec(d, colony, location, h.function_name, f"{h.executor_type}-{h.function_name}",
                          {"kind": kind})
    workflow = _enc.encode(WorkflowSpec(colonyname=colony, functionspecs=[spec])).decode()
    return Cron(cronid=new_id(), initiatorid=signer, initiatorname=initiator_name(member) if member else "",
                colonyname=colony,
                name=cron_name(kind, location), interval=h.reconcile_interval or DEFAULT_RECONCILE_INTERVAL,
                workflowspec=workflow, waitforprevprocessgraph=True)


def _history(bp: Blueprint, signer: str, change: str, now: int) -> BlueprintHistory:
    return BlueprintHistory(historyid=new_id(), blueprintid=bp.blueprintid, kind=bp.kind,
                            namespace=bp.metadata.colonyname, name=bp.metadata.name,
                            generation=bp.metadata.generation, spec=bp.spec, status=bp.status,
                            timestamp=to_datetime(now), changedby=signer, changetype=change)


async def _submit(s: Services, p: Process, signer: str) -> None:
    await s.storage.add_processes([p], actor=signer)
    s.bus.publish(p)


# -- blueprints --------------------------------------------------------------------------------------------------
def _check_blueprint(bp: Blueprint) -> None:
    md = bp.metadata
    _name(bp.kind, "blueprint.kind")
    _name(md.name, "blueprint.metadata.name")
    check_text(md.locationname, "blueprint.metadata.locationname", MAX_NAME)
    _labels(md.labels, "blueprint.metadata.labels")
    _labels(md.annotations, "blueprint.metadata.annotations")
    schemas.check_document(bp.spec, "blueprint.spec")
    if bp.status is not msgspec.UNSET:
        schemas.check_document(bp.status, "blueprint.status")


async def _definition(s: Services, colony: str, kind: str) -> BlueprintDefinition:
    d = await s.storage.get_blueprint_definition(colony, kind=kind)
    if d is None:
        raise BadRequest(f"no blueprint definition of kind {kind} in colony {colony}")
    return d


def _check_spec(d: BlueprintDefinition, bp: Blueprint) -> None:
    if d.spec.schema is not msgspec.UNSET:
        schemas.validate(schemas.compile_schema(d.spec.schema), bp.spec, "spec")


async def _found(s: Services, colony: str, name: str) -> Blueprint:
    bp = await s.storage.get_blueprint(colony, _name(name, "name"))
    if bp is None:
        raise NotFound(f"blueprint {name} not found in colony {colony}")
    return bp


async def add_blueprint(s: Services, signer: str, msg: m.AddBlueprintMsg) -> Blueprint:
    bp = msg.blueprint
    colony, location = bp.metadata.colonyname, bp.metadata.locationname
    member = await _member_or_owner(s, signer, colony)
    _check_blueprint(bp)
    d = await _definition(s, colony, bp.kind)
    _check_spec(d, bp)
    now = s.now()
    md = bp.metadata
    stored = Blueprint(blueprintid=new_id(), kind=bp.kind, spec=bp.spec, status=bp.status, metadata=BlueprintMetadata(
        name=md.name, colonyname=colony, locationname=location, labels=md.labels, annotations=md.annotations,
        generation=1, created_at=to_datetime(now), updated_at=to_datetime(now)))
    process = _reconcile_process(s, d, stored, member, signer, now)
    site = Location(locationid=new_id(), colonyname=colony, name=location,
                    description=f"Auto-created from blueprint {md.name}") if location else None
    write = BlueprintWrite(history=_history(stored, signer, "create", now), location=site,
                           crons={location: _cron(d, colony, location, member, signer)})
    try:
        await s.storage.add_blueprint(stored, write)
    except NotFound as e:  # the definition was removed meanwhile
        raise BadRequest(e.message) from None
    await _submit(s, process, signer)
    return stored


async def get_blueprint(s: Services, signer: str, msg: m.GetBlueprintMsg) -> Blueprint:
    await _member_or_owner(s, signer, msg.namespace)
    return await _found(s, msg.namespace, msg.name)


async def get_blueprints(s: Services, signer: str, msg: m.GetBlueprintsMsg) -> list[Blueprint]:
    await _member_or_owner(s, signer, msg.namespace)
    return await s.storage.list_blueprints(msg.namespace, check_text(msg.kind, "kind", MAX_NAME),
                                           check_text(msg.locationname, "locationname", MAX_NAME))


async def update_blueprint(s: Services, signer: str, msg: m.UpdateBlueprintMsg) -> Blueprint:
    bp = msg.blueprint
    colony = bp.metadata.colonyname
    member = await _member_or_owner(s, signer, colony)
    _check_blueprint(bp)
    for _ in range(UPDATE_ATTEMPTS):
        old = await _found(s, colony, bp.metadata.name)
        if bp.kind != old.kind:
            raise BadRequest(f"blueprint.kind cannot change ({old.kind}): remove the blueprint and add it again")
        location = old.metadata.locationname
        if bp.metadata.locationname != location:
            raise BadRequest(f"blueprint.metadata.locationname cannot change ({location or 'none'}): remove the "
                             "blueprint and add it again")
        d = await _definition(s, colony, bp.kind)
        _check_spec(d, bp)
        now = s.now()
        bump = msg.forcegeneration or _enc.encode(bp.spec) != _enc.encode(old.spec)
        new = Blueprint(blueprintid=old.blueprintid, kind=old.kind, spec=bp.spec, status=bp.status,
                        metadata=msgspec.structs.replace(
                            old.metadata, labels=bp.metadata.labels, annotations=bp.metadata.annotations,
                            generation=old.metadata.generation + int(bump), updated_at=to_datetime(now)))
        process = _reconcile_process(s, d, new, member, signer, now) if bump else None
        write = BlueprintWrite(history=_history(new, signer, "update", now) if bump else None,
                               crons={location: _cron(d, colony, location, member, signer)})
        if await s.storage.update_blueprint(new, old.metadata.generation, write):
            if process is not None:
                await _submit(s, process, signer)
            if new.status is msgspec.UNSET:
                new.status = old.status
            return new
    raise Conflict(f"blueprint {bp.metadata.name} kept changing while it was being updated; try again")


async def remove_blueprint(s: Services, signer: str, msg: m.RemoveBlueprintMsg) -> dict[str, Any]:
    member = await _member_or_owner(s, signer, msg.namespace)
    old = await _found(s, msg.namespace, msg.name)
    d = await s.storage.get_blueprint_definition(msg.namespace, kind=old.kind)
    location = old.metadata.locationname
    write = BlueprintWrite(crons={location: _cron(d, msg.namespace, location, member, signer)} if d else {})
    if await s.storage.remove_blueprint(msg.namespace, msg.name, write) is None:
        raise NotFound(f"blueprint {msg.name} not found in colony {msg.namespace}")
    if d is not None:
        spec = _function_spec(d, msg.namespace, location, CLEANUP_FUNCTION,
                              f"{d.spec.handler.executor_type}-{CLEANUP_FUNCTION}",
                              {"blueprintName": msg.name, "kind": old.kind})
        await _submit(s, _process(s, spec, member, signer, s.now()), signer)
    return {}


async def get_blueprint_history(s: Services, signer: str, msg: m.GetBlueprintHistoryMsg) -> list[BlueprintHistory]:
    bp = await s.storage.get_blueprint("", blueprint_id=check_text(msg.blueprintid, "blueprintid", MAX_NAME))
    if bp is None:
        raise NotFound(f"blueprint {msg.blueprintid} not found")
    await _member_or_owner(s, signer, bp.metadata.colonyname)
    limit = min(msg.limit, MAX_HISTORY) if msg.limit > 0 else MAX_HISTORY
    return await s.storage.blueprint_history(bp.blueprintid, limit)


async def update_blueprint_status(s: Services, signer: str, msg: m.UpdateBlueprintStatusMsg) -> dict[str, Any]:
    await s.guard.member(signer, check_text(msg.colonyname, "colonyname", MAX_NAME))
    status = msg.status or {}
    schemas.check_document(status, "status")
    if not await s.storage.set_blueprint_status(msg.colonyname, _name(msg.blueprintname, "blueprintname"), status):
        raise NotFound(f"blueprint {msg.blueprintname} not found in colony {msg.colonyname}")
    return {}


async def reconcile_blueprint(s: Services, signer: str, msg: m.ReconcileBlueprintMsg) -> Process:
    member = await s.guard.member(signer, check_text(msg.namespace, "namespace", MAX_NAME))
    for _ in range(UPDATE_ATTEMPTS):
        old = await _found(s, msg.namespace, msg.name)
        d = await _definition(s, msg.namespace, old.kind)
        now = s.now()
        new = msgspec.structs.replace(old, status=msgspec.UNSET, metadata=msgspec.structs.replace(
            old.metadata, generation=old.metadata.generation + int(msg.force)))
        process = _reconcile_process(s, d, new, member, signer, now, force=msg.force)
        location = old.metadata.locationname
        write = BlueprintWrite(crons={location: _cron(d, msg.namespace, location, member, signer)})
        if await s.storage.update_blueprint(new, old.metadata.generation, write):
            await _submit(s, process, signer)
            return process
    raise Conflict(f"blueprint {msg.name} kept changing while a reconcile was being submitted; try again")


HANDLERS: dict[str, Handler] = {
    "addblueprintdefinitionmsg": add_blueprint_definition,
    "getblueprintdefinitionmsg": get_blueprint_definition,
    "getblueprintdefinitionsmsg": get_blueprint_definitions,
    "removeblueprintdefinitionmsg": remove_blueprint_definition,
    "addblueprintmsg": add_blueprint,
    "getblueprintmsg": get_blueprint,
    "getblueprintsmsg": get_blueprints,
    "updateblueprintmsg": update_blueprint,
    "removeblueprintmsg": remove_blueprint,
    "getblueprinthistorymsg": get_blueprint_history,
    "updateblueprintstatusmsg": update_blueprint_status,
    "reconcileblueprintmsg": reconcile_blueprint,
}
