"""What every command group shares: the options (each naming its env variable), the client, output.

Only typer and the standard library are imported here at module level, so `colonies --help` stays
fast; rich, httpx and the SDK are imported when a command runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console


class CLIError(Exception):
    """A user-facing failure: printed as one line on stderr, exit status 1."""


@dataclass
class Target:
    """The server to talk to, set by the root options (`colonies --host ... <command>`)."""

    host: str = "127.0.0.1"
    port: int = 50080
    tls: bool = False
    verbose: bool = False
    socket: str = ""  # a Unix socket (a pilot relay's) that carries every request instead of host:port


TARGET = Target()


def group(help: str) -> typer.Typer:
    """A command group. Help is plain click text: rich help would cost ~120 ms of imports per run."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


# -- options shared by many commands; each names its variable in --help ------------------------------------
Colony = Annotated[
    str, typer.Option("--colonyname", "--colony", envvar="COLONIES_COLONY_NAME", help="Colony name.")
]
PrvKey = Annotated[
    str,
    typer.Option("--prvkey", envvar="COLONIES_PRVKEY", help="Your private key (a user's or an executor's)."),
]
ColonyPrvKey = Annotated[
    str,
    typer.Option("--colony-prvkey", envvar="COLONIES_COLONY_PRVKEY", help="The colony owner's private key."),
]
ServerPrvKey = Annotated[
    str,
    typer.Option("--server-prvkey", envvar="COLONIES_SERVER_PRVKEY", help="The server owner's private key."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Count = Annotated[int, typer.Option("--count", help="At most this many.")]
# One convention for ids: each command that acts on one object takes `-i` and the original's long flag
# (`--processid`, `--workflowid`, `--cronid`, `--generatorid`, `--attributeid`); processes keep `-p`.
ProcessId = Annotated[str, typer.Option("--processid", "-p", "-i", help="Process id.")]
Full = Annotated[bool, typer.Option("--full", help="Whole ids, however wide the table gets.")]

STATES = {0: "WAITING", 1: "RUNNING", 2: "SUCCESS", 3: "FAILED", 4: "CANCELLED"}
STATE_COLORS = {0: "yellow", 1: "blue", 2: "green", 3: "red", 4: "magenta"}
# The original's list commands: `ps` running, `psw` waiting, `pss` successful, `psf` failed, `psc` cancelled.
PS_COMMANDS = (
    ("ps", 1, "running"),
    ("psw", 0, "waiting"),
    ("pss", 2, "successful"),
    ("psf", 3, "failed"),
    ("psc", 4, "cancelled"),
)
EXECUTOR_STATES = {0: "PENDING", 1: "APPROVED", 2: "REJECTED", 3: "UNREGISTERED"}


def need(value: str, what: str, env: str, flag: str) -> str:
    if not value:
        raise CLIError(f"no {what}: set {env} or pass {flag}")
    return value


def client(
    prvkey: str, what: str = "private key", env: str = "COLONIES_PRVKEY", flag: str = "--prvkey"
) -> Any:
    """A sync client for the target server, signing with `prvkey` (which must be set).

    Typed `Any`: the client's methods are generated from ClientCore (`bind_sync`), which mypy sees as
    returning `Call`s rather than results.
    """
    from colonies.client.sync import Client

    need(prvkey, what, env, flag)
    return Client(TARGET.host, TARGET.port, prvkey=prvkey, tls=TARGET.tls, socket=TARGET.socket)


def owner_client(colony_prvkey: str) -> Any:
    return client(colony_prvkey, "colony owner key", "COLONIES_COLONY_PRVKEY", "--colony-prvkey")


def server_client(server_prvkey: str) -> Any:
    return client(server_prvkey, "server owner key", "COLONIES_SERVER_PRVKEY", "--server-prvkey")


def state_code(name: str) -> int:
    """`waiting`/`running`/... or a number to a process state; `all`/'' is -1."""
    n = name.strip().lower()
    if n in ("", "all", "-1"):
        return -1
    for code, label in STATES.items():
        if n in (label.lower(), str(code)):
            return code
    raise CLIError(f"unknown state {name!r}: use waiting, running, success, failed, cancelled or all")


# -- output ---------------------------------------------------------------------------------------------
def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def to_builtins(obj: Any) -> Any:
    import msgspec

    return msgspec.to_builtins(obj)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(to_builtins(obj), indent=2) + "\n")


def ts(value: Any) -> str:
    """A timestamp for a table: '' when unset (year 1)."""
    if value is None or getattr(value, "year", 2) == 1:
        return ""
    if isinstance(value, int):
        from datetime import datetime

        value = datetime.fromtimestamp(value / 1e9, tz=UTC)
    return str(value.strftime("%Y-%m-%d %H:%M:%S"))


def state_text(state: int) -> str:
    label = STATES.get(state, str(state))
    return f"[{STATE_COLORS.get(state, 'white')}]{label}[/]"


_TIME_COLUMNS = {"Submitted", "Started", "Ended", "LastRun", "NextRun", "Time", "LastHeardFrom"}
_NO_WRAP = {"State", *_TIME_COLUMNS}
ID_WIDTH = 13  # an id cut to 12 characters and an ellipsis on a narrow terminal (`--full` for all 64)


def table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    full: bool = False,
    optional: Sequence[str] = (),
) -> Any:
    """A rich table that fits the terminal: ids are cut with an ellipsis unless the terminal is wide
    enough for them (or `full`), states and times never wrap. On a narrow terminal the `optional`
    columns are left out and times lose the year and seconds (`--json` always has everything)."""
    from rich.table import Table

    width = console().width
    n_ids = sum(c.endswith("Id") for c in columns)
    narrow = not full and width < 40 + 66 * n_ids + 20 * sum(c in _TIME_COLUMNS for c in columns)
    keep = [i for i, c in enumerate(columns) if not (narrow and c in optional)]
    cells = [["" if r[i] is None else str(r[i]) for i in keep] for r in rows]
    if narrow:  # 2026-12-01 22:00:05 -> 12-01 22:00
        times = [j for j, i in enumerate(keep) if columns[i] in _TIME_COLUMNS]
        for row in cells:
            for j in times:
                row[j] = row[j][5:16] if len(row[j]) == 19 else row[j]
    t: Any = Table(title=title, title_justify="left", header_style="bold")
    t.wide = full  # read by print_fitted
    for j, i in enumerate(keep):
        c = columns[i]
        if c.endswith("Id"):
            whole = max((len(row[j]) for row in cells), default=0)
            t.add_column(c, no_wrap=True, overflow="ellipsis", min_width=ID_WIDTH if narrow else whole,
                         max_width=ID_WIDTH if narrow else None)
        elif c in _NO_WRAP:
            t.add_column(c, no_wrap=True)
        else:
            t.add_column(c, overflow="fold", min_width=min(len(c), 5))
    for row in cells:
        t.add_row(*row)
    return t


def show(items: Any, as_json: bool, render: Callable[[Any], Any]) -> None:
    """Print `items` as JSON for scripts, or as the renderable that `render` builds from them."""
    if as_json:
        print_json(items)
    else:
        print_fitted(render(items))


def print_fitted(renderable: Any) -> None:
    """Print to stdout; a `--full` table that cannot fit the terminal is printed wider than it."""
    from rich.console import Console

    out = console()
    if not getattr(renderable, "wide", False):
        out.print(renderable)
        return
    size = out.measure(renderable, options=out.options.update_width(10_000))
    if size.minimum > out.width:
        out = Console(highlight=False, soft_wrap=False, width=size.maximum)
    out.print(renderable)


def kv(title: str, pairs: Iterable[tuple[str, Any]]) -> Any:
    """A two-column table of field and value."""
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_header=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for k, v in pairs:
        t.add_row(k, "" if v is None else str(v))
    return t


def load_json_file(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise CLIError(f"{path} is not valid JSON: {exc}") from None


def _typed(text: str, flag: str, kind: type, example: str) -> Any:
    """The value of a `--...-json` option: JSON of the given kind, or a CLIError naming the flag."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise CLIError(f"{flag} must be a JSON {'array' if kind is list else 'object'}, e.g. '{example}'")
    return value


def parse_args(values: list[str] | None, as_json: str = "", flag: str = "--args") -> list[Any]:
    """Positional args: each `--args` value is a string, as in the original CLI (`01234` stays
    "01234"); typed values come from one JSON array (`--args-json '[1, "a", true]'`), after them."""
    return list(values or []) + (_typed(as_json, f"{flag}-json", list, '[1, "a"]') if as_json else [])


def _pairs(values: list[str] | None, flag: str, seps: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        cut = min((i for i in (item.find(sep) for sep in seps) if i > 0), default=-1)
        if cut < 0:
            raise CLIError(f"{flag}: expected key=value, got {item!r}")
        out[item[:cut]] = item[cut + 1 :]
    return out


def parse_kwargs(values: list[str] | None, as_json: str = "") -> dict[str, Any]:
    """`--kwargs key=value` (or the original's `key:value`), values strings; typed values come from a
    JSON object (`--kwargs-json '{"n": 3}'`)."""
    typed = _typed(as_json, "--kwargs-json", dict, '{"n": 3}') if as_json else {}
    return {**_pairs(values, "--kwargs", "=:"), **typed}


def parse_env(values: list[str] | None) -> dict[str, str]:
    """`--env KEY=VALUE` (repeatable): the process' environment."""
    return _pairs(values, "--env", "=")


def warn(text: str) -> None:
    typer.echo(f"warning: {text}", err=True)


def warn_if_unserved(c: Any, colony: str, executortypes: Iterable[str]) -> None:
    """A hint on stderr when no APPROVED executor of a type exists in the colony: the process would
    wait until one is added. Best effort: a read the caller may not make is skipped silently."""
    from colonies.errors import ClientError

    wanted = {t for t in executortypes if t}
    if not wanted or not colony:
        return
    try:
        served = {x.executortype for x in c.get_executors(colony) or [] if x.state == 1}
    except ClientError:
        return
    for t in sorted(wanted - served):
        warn(
            f"no approved executor of type {t!r} in colony {colony}: the process waits until one is "
            f"added and approved (`colonies executor ls --all` lists what is there)"
        )
