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
ProcessId = Annotated[str, typer.Option("--processid", "-p", help="Process id.")]

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
    return Client(TARGET.host, TARGET.port, prvkey=prvkey, tls=TARGET.tls)


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


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Any:
    """A rich table. On a narrow terminal ids are cut with an ellipsis rather than folded over many
    lines (`--json`, or a wider terminal, shows them whole); times never wrap."""
    from rich.table import Table

    narrow = console().width < 40 + 66 * sum(c.endswith("Id") for c in columns)
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        if c.endswith("Id"):
            t.add_column(c, no_wrap=True, overflow="ellipsis", max_width=18 if narrow else None)
        elif c in _TIME_COLUMNS and not narrow:
            t.add_column(c, no_wrap=True)
        else:
            t.add_column(c, overflow="fold", min_width=min(len(c), 5))
    for r in rows:
        t.add_row(*(str(v) if v is not None else "" for v in r))
    return t


def show(items: Any, as_json: bool, render: Callable[[Any], Any]) -> None:
    """Print `items` as JSON for scripts, or as the renderable that `render` builds from them."""
    if as_json:
        print_json(items)
    else:
        console().print(render(items))


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


def parse_args(values: list[str] | None) -> list[Any]:
    """Positional args from the command line: numbers stay numbers, anything else is a string."""
    out: list[Any] = []
    for v in values or []:
        try:
            out.append(int(v))
        except ValueError:
            try:
                out.append(float(v))
            except ValueError:
                out.append(v)
    return out


def parse_kwargs(values: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"expected key=value, got {item!r}")
        out[key] = value
    return out
