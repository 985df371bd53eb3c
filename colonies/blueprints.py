"""Blueprints shared by the SDK, the server and the CLI: builders, the reconcile cron's name, and setting
one field of a spec by its dotted path.

A BlueprintDefinition declares a kind (its names, a JSON Schema for `spec`, the handler that reconciles
it); a Blueprint declares one wanted thing of that kind. The server submits a reconcile process (funcname
= the handler's `functionName`, kwargs `{"kind", "blueprintName"}`) to executors of the handler's
`executorType` on every change, and a cron per (kind, location) reconciles the whole kind periodically.
"""

from __future__ import annotations

from typing import Any

from colonies.model import (
    Blueprint,
    BlueprintDefinition,
    BlueprintDefinitionSpec,
    BlueprintHandler,
    BlueprintMetadata,
    BlueprintNames,
)

DEFAULT_RECONCILE_INTERVAL = 60  # s, the original's fixed cron interval
CLEANUP_FUNCTION = "cleanup"     # funcname of the process a removal submits (the original's)


def blueprint_definition(colony: str, kind: str, executor_type: str, function_name: str = "reconcile", *,
                         name: str = "", schema: dict[str, Any] | None = None, group: str = "colonies.io",
                         version: str = "v1", plural: str = "", reconcile_interval: int = 0,
                         short_names: list[str] | None = None) -> BlueprintDefinition:
    """A definition of `kind` in `colony`, reconciled by `function_name` on executors of `executor_type`.
    `name` defaults to `<plural>.<group>` (the Kubernetes CRD convention)."""
    plural = plural or kind.lower() + "s"
    spec = BlueprintDefinitionSpec(
        group=group, version=version, scope="Namespaced",
        names=BlueprintNames(kind=kind, list_kind=kind + "List", singular=kind.lower(), plural=plural,
                             short_names=short_names or []),
        handler=BlueprintHandler(executor_type=executor_type, function_name=function_name,
                                 reconcile_interval=reconcile_interval))
    if schema is not None:
        spec.schema = schema
    return BlueprintDefinition(kind="BlueprintDefinition",
                               metadata=BlueprintMetadata(name=name or f"{plural}.{group}", colonyname=colony),
                               spec=spec)


def blueprint(colony: str, kind: str, name: str, spec: dict[str, Any], location: str = "", *,
              labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> Blueprint:
    """A blueprint `name` of `kind` in `colony` (at `location`, created on add when missing)."""
    return Blueprint(kind=kind, spec=spec, metadata=BlueprintMetadata(
        name=name, colonyname=colony, locationname=location, labels=labels or {}, annotations=annotations or {}))


def cron_name(kind: str, location: str = "") -> str:
    """The reconcile cron of a (kind, location), as the original names it."""
    return f"reconcile-{kind}-{location}" if location else f"reconcile-{kind}"


def set_path(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `spec` with the field at dotted `path` (a leading `spec.` is dropped) set to `value`.
    Every part of the path must exist already, as the original CLI's `blueprint set`: KeyError otherwise."""
    parts = path.removeprefix("spec.").split(".")
    if not all(parts):
        raise KeyError(f"invalid path {path!r}")
    out: dict[str, Any] = _copy(spec)
    node: Any = out
    for i, part in enumerate(parts):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            key: Any = int(part)
        elif isinstance(node, dict) and part in node:
            key = part
        else:
            where = ".".join(parts[:i]) or "spec"
            raise KeyError(f"{path}: {where} has no field {part!r}")
        if i == len(parts) - 1:
            node[key] = value
        else:
            node = node[key]
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
