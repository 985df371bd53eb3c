"""Blueprint specs against their definition's JSON Schema (python-jsonschema), and the size limits.

jsonschema interprets a schema (nothing is generated from a colony owner's schema and run), reports the
path of the failing field, and checks a schema itself against its draft's meta-schema. A schema may use
every keyword of its draft (2020-12 unless it names another with `$schema`) except those that could make
one request stall the server or reach out of it: regular expressions (`pattern`, `patternProperties`: Python's
backtracking `re`) and `$ref`s that are not local (`#...`). `format` is not asserted (the draft's default).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import msgspec
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from colonies.errors import BadRequest

MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32
MAX_DOC_BYTES = 256 * 1024   # a spec or a status, as JSON
MAX_DOC_DEPTH = 32  # (a whole request may nest 64 levels)
MAX_MESSAGE = 300            # characters of a validation message (it quotes the offending value)
REFUSED_KEYWORDS = frozenset({"pattern", "patternProperties"})
# Keywords whose value is a map of names to subschemas / a list of subschemas / one subschema.
_NAMED = frozenset({"properties", "$defs", "definitions", "dependentSchemas", "patternProperties"})
_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_ONE = frozenset({"items", "additionalItems", "additionalProperties", "unevaluatedItems", "unevaluatedProperties",
                  "contains", "propertyNames", "not", "if", "then", "else"})
_enc = msgspec.json.Encoder()


def depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


def check_document(value: dict[str, Any], what: str) -> None:
    """A spec or status: at most MAX_DOC_BYTES of JSON, nested at most MAX_DOC_DEPTH deep."""
    if len(_enc.encode(value)) > MAX_DOC_BYTES:
        raise BadRequest(f"{what} is larger than {MAX_DOC_BYTES} bytes of JSON")
    if depth(value) > MAX_DOC_DEPTH:
        raise BadRequest(f"{what} is nested deeper than {MAX_DOC_DEPTH} levels")


def _subschemas(schema: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    stack = [(schema, path)]
    while stack:
        node, where = stack.pop()
        if not isinstance(node, dict):
            continue
        yield where, node
        for key, value in node.items():
            if key in _NAMED and isinstance(value, dict):
                stack.extend((v, f"{where}.{key}.{k}") for k, v in value.items())
            elif key in _LISTS and isinstance(value, list) or key == "items" and isinstance(value, list):
                stack.extend((v, f"{where}.{key}[{i}]") for i, v in enumerate(value))
            elif key in _ONE:
                stack.append((value, f"{where}.{key}"))


def compile_schema(schema: dict[str, Any], what: str = "spec.schema") -> Validator:
    """A validator for `schema`, or a 400 naming what is wrong with it."""
    if len(_enc.encode(schema)) > MAX_SCHEMA_BYTES:
        raise BadRequest(f"{what} is larger than {MAX_SCHEMA_BYTES} bytes of JSON")
    if depth(schema) > MAX_SCHEMA_DEPTH:
        raise BadRequest(f"{what} is nested deeper than {MAX_SCHEMA_DEPTH} levels")
    for where, node in _subschemas(schema, what):
        refused = REFUSED_KEYWORDS & node.keys()
        if refused:
            raise BadRequest(f"{where}: the keyword {min(refused)!r} is not supported (regular expressions "
                             "could stall the server)")
        for ref in ("$ref", "$dynamicRef"):
            if ref in node and not (isinstance(node[ref], str) and node[ref].startswith("#")):
                raise BadRequest(f"{where}.{ref}: only local references (#...) are supported")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise BadRequest(f"{what}{_path(e)} is not a valid JSON Schema: {_short(e.message)}") from None
    return cls(schema)


def validate(validator: Validator, spec: dict[str, Any], what: str = "spec") -> None:
    """A 400 naming the first field of `spec` the schema refuses (`spec.replicas: ...`)."""
    try:
        error = best_match(validator.iter_errors(spec))
    except jsonschema.exceptions._WrappedReferencingError as e:  # a local $ref to nowhere
        raise BadRequest(f"the definition's schema cannot be used: {_short(str(e))}") from None
    if error is None:
        return
    where = f"{what}{_path(error)}"
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        if missing:
            raise BadRequest(f"blueprint validation failed: {where}.{missing[0]} is required")
    raise BadRequest(f"blueprint validation failed: {where}: {_short(error.message)}")


def _path(error: ValidationError | jsonschema.SchemaError) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."
