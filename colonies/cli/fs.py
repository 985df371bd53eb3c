"""`colonies fs ...`: ColonyFS from the shell — sync a directory with a label, list, fetch and remove
files, manage labels (`fs label`) and snapshots (`fs snapshot`, in fs_snapshot.py).

The server holds only metadata; the bytes move between this machine and the object store named by
the environment (AWS_S3_* for S3, else COLONIES_FS_DIR for a local directory), with a progress bar
on stderr. Labels are normalised one way in every command ("x", "/x/" and "/x" are the label "/x"),
unlike the original CLI, which normalised them only in sync, clean and snapshot create.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from colonies.cli.common import (
    CLIError,
    Colony,
    Json,
    PrvKey,
    client,
    console,
    group,
    kv,
    need,
    print_fitted,
    show,
    table,
    ts,
)

fs_app = group("ColonyFS: files and snapshots, bytes in S3 or a local directory (COLONIES_FS_DIR).")
label_app = group("File labels: list them with their file counts, remove one with all its files.")
fs_app.add_typer(label_app, name="label")

LabelOpt = Annotated[str, typer.Option("--label", "-l", help="Label, e.g. /data (a leading / is added).")]
NameOpt = Annotated[str, typer.Option("--name", "-n", help="File name.")]
FileIdOpt = Annotated[str, typer.Option("--fileid", "-i", help="File id (one revision).")]
DirOpt = Annotated[str, typer.Option("--dir", "-d", help="Local directory (default: the current one).")]
Yes = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]
Dry = Annotated[bool, typer.Option("--dry", help="Only show what would be done.")]
Quiet = Annotated[bool, typer.Option("--quiet", "--quite", help="No output (needs --yes).")]


# -- shared helpers -----------------------------------------------------------------------------------------
def norm_label(label: str) -> str:
    """The one form of a label: a leading "/", no trailing "/" ("" stays "")."""
    from colonies.fs import normalise_label

    return normalise_label(label) if label.strip() else ""


def _cfs_label(directory: Path) -> str:
    """The label a `.cfs` file in `directory` names ({"label": ...}, the original's format), or ""."""
    path = directory / ".cfs"
    if not path.is_file():
        return ""
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("label", "")
    except (OSError, ValueError, AttributeError):
        raise CLIError(f"{path} is not a JSON object with a label") from None
    return str(value or "")


def resolve_label(label: str, directory: Path | None = None) -> str:
    """--label, or the label of the `.cfs` file in `directory` (the current one by default)."""
    found = label or _cfs_label(directory or Path.cwd())
    if not found.strip():
        raise CLIError("no label: pass --label (or put {\"label\": \"/x\"} in a .cfs file in the directory)")
    return norm_label(found)


@contextlib.contextmanager
def filesystem(prvkey: str, colony: str) -> Iterator[tuple[Any, Any]]:
    """(client, FileSystem) for the colony, signing with `prvkey`; the store comes from the env."""
    from colonies.fs import FileSystem

    need(colony, "colony", "COLONIES_COLONY_NAME", "--colonyname")
    with client(prvkey) as c:
        yield c, FileSystem(c, colony)


@contextlib.contextmanager
def transfer(total: int, what: str, quiet: bool = False) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for `total` bytes; yields the callback the FileSystem feeds (bytes moved)."""
    if quiet:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    cols = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn())
    with Progress(*cols, console=console(stderr=True)) as bar:
        task = bar.add_task(what, total=max(total, 0))
        yield lambda n: bar.advance(task, n)


def size(n: int) -> str:
    """Bytes for a table: 0 B, 12.3 KiB, 4.0 MiB..."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # unreachable


def where(f: Any) -> str:
    """Where a revision's bytes are: the local path, or s3://bucket/object at the endpoint."""
    o = f.ref.s3object
    if f.ref.protocol == "local":
        return str(Path(o.bucket) / o.object)
    scheme = "https" if o.tls else "http"
    at = f" ({scheme}://{o.server}:{o.port})" if o.server else ""
    return f"{f.ref.protocol}://{o.bucket}/{o.object}{at}"


def file_table(f: Any) -> Any:
    """One revision's fields; secret fields are never printed (our refs hold none)."""
    o = f.ref.s3object
    return kv(f"File {f.name}", [
        ("FileId", f.fileid), ("Name", f.name), ("Label", f.label), ("Colony", f.colonyname),
        ("Added", ts(f.added)), ("Sequence nr", f.sequencenr), ("Size", f"{size(f.size)} ({f.size} bytes)"),
        ("Checksum", f.checksum), ("Checksum alg", f.checksumalg), ("Protocol", f.ref.protocol),
        ("Endpoint", f"{o.server}:{o.port}" if o.server else ""), ("TLS", o.tls if o.server else ""),
        ("Region", o.region), ("Bucket", o.bucket), ("Object", o.object), ("Where", where(f)),
    ])


def confirm(question: str, yes: bool, word: str = "yes") -> None:
    """Go on with --yes or when the user answers `word` (or y for yes); otherwise stop, exit status 1."""
    import sys

    if yes:
        return
    typer.echo(f"{question} ({word}, no): ", nl=False, err=True)
    reply = sys.stdin.readline().strip()
    if reply != word and not (word == "yes" and reply.lower() in ("y", "yes")):
        typer.echo("Aborted", err=True)
        raise typer.Exit(1)


def one_file(c: Any, colony: str, fileid: str, label: str, name: str, latest: bool) -> list[Any]:
    """The revision with `fileid`, or label + name's revisions (the newest only with `latest`)."""
    if fileid:
        files = c.get_file(colony, fileid=fileid)
    elif label and name:
        files = c.get_file(colony, label=norm_label(label), name=name, latest=latest)
    else:
        raise CLIError("name a file: --fileid, or --label and --name")
    if not files:
        raise CLIError(f"no file {fileid or f'{norm_label(label)}/{name}'} in colony {colony}")
    return list(files)


# -- sync and clean -------------------------------------------------------------------------------------------
def local_dir(directory: str) -> Path:
    d = Path(directory or ".").absolute()
    if d.exists() and not d.is_dir():
        raise CLIError(f"{d} is not a directory")
    return d


def _plan_rows(plan: Any) -> tuple[list[Any], list[Any], list[Any]]:
    return list(plan.upload), list(plan.download), list(plan.conflicts)


def _print_plan(plan: Any, directory: Path, keeplocal: bool, details: bool) -> None:
    up, down, conflicts = _plan_rows(plan)
    resolution = "replace remote (--keeplocal)" if keeplocal else "replace local (--no-keeplocal)"
    typer.echo(f"Sync plan: {len(up)} to upload, {len(down)} to download, {len(conflicts)} in conflict "
               f"({resolution})")
    if not details:
        typer.echo("Add --syncplans to see every file")
        return
    cols = ["File", "Size", "Label"]
    for title, rows in (("Upload", up), (f"Download to {directory}", down),
                        ("Replace at the server" if keeplocal else "Replace locally", conflicts)):
        if rows:
            print_fitted(table(title, cols, [(e.name, size(e.size), e.label) for e in rows]))


def _plan_json(plan: Any) -> dict[str, Any]:
    keys = ("upload", "download", "conflicts")
    return {k: [{"label": e.label, "name": e.name, "size": e.size} for e in rows]
            for k, rows in zip(keys, _plan_rows(plan), strict=True)}


@fs_app.command("sync")
def fs_sync(
    directory: DirOpt = "",
    label: LabelOpt = "",
    keeplocal: Annotated[bool, typer.Option("--keeplocal/--no-keeplocal",
                                            help="On a conflict keep the local file (default) or the remote one.")] = True,
    dry: Dry = False,
    yes: Yes = False,
    syncplans: Annotated[bool, typer.Option("--syncplans", help="Show every file of the plan.")] = False,
    quiet: Quiet = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON (with --dry).")] = False,
    colony: Colony = "",
    prvkey: PrvKey = "",
) -> None:
    """Synchronise a local directory with a label, both ways: files only here are uploaded, files only
    in ColonyFS downloaded, and a file that differs is resolved by --keeplocal. Sub-directories are
    sub-labels. The label comes from --label or the directory's .cfs file."""
    if quiet and not yes:
        raise CLIError("--quiet needs --yes (there is nobody to ask)")
    if as_json and not dry:
        raise CLIError("--json prints the plan: use it with --dry")
    d = local_dir(directory)
    lab = resolve_label(label, d)
    with filesystem(prvkey, colony) as (_c, fs):
        plan = fs.sync(d, lab, keeplocal=keeplocal, dry_run=True)
        up, down, conflicts = _plan_rows(plan)
        if as_json:
            show(_plan_json(plan), True, lambda x: x)
            return
        if not (up or down or conflicts):
            if not quiet:
                typer.echo(f"Nothing to do: {d} and {lab} are in sync")
            return
        if dry or not yes:
            _print_plan(plan, d, keeplocal, syncplans)
            if dry:
                return
        confirm("Go on?", yes)
        total = sum(e.size for e in (*up, *down, *conflicts))
        with transfer(total, f"sync {lab}", quiet) as progress:
            fs.sync(d, lab, keeplocal=keeplocal, progress=progress)
    if not quiet:
        typer.echo(f"Synchronised {d} with {lab}: {len(up)} uploaded, {len(down)} downloaded, "
                   f"{len(conflicts)} conflict{'s' if len(conflicts) != 1 else ''} resolved")


@fs_app.command("clean")
def fs_clean(
    directory: DirOpt = "",
    label: LabelOpt = "",
    dry: Dry = False,
    yes: Yes = False,
    cleanplans: Annotated[bool, typer.Option("--cleanplans", help="Show every file that would go.")] = False,
    quiet: Quiet = False,
    colony: Colony = "",
    prvkey: PrvKey = "",
) -> None:
    """Remove local files that have no file in the label (ColonyFS is left alone)."""
    if quiet and not yes:
        raise CLIError("--quiet needs --yes (there is nobody to ask)")
    d = local_dir(directory)
    if not d.is_dir():
        raise CLIError(f"no directory {d}")
    lab = resolve_label(label, d)
    with filesystem(prvkey, colony) as (_c, fs):
        doomed = fs.clean(d, lab, dry_run=True)
        if not doomed:
            if not quiet:
                typer.echo(f"Nothing to clean: every file in {d} is in {lab}")
            return
        if not quiet:
            typer.echo(f"Clean plan: {len(doomed)} local file{'s' if len(doomed) != 1 else ''} to remove")
            if cleanplans or dry:
                print_fitted(table(f"Removed from {d}", ["File"], [(str(p),) for p in doomed]))
        if dry:
            return
        confirm("Go on?", yes)
        removed = fs.clean(d, lab)
    if not quiet:
        typer.echo(f"Removed {len(removed)} local file{'s' if len(removed) != 1 else ''}")


# -- files ----------------------------------------------------------------------------------------------------
@fs_app.command("ls")
def fs_ls(label: LabelOpt = "", colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False) -> None:
    """The files of a label: the newest revision of each, with its size, id, time and revision count."""
    lab = resolve_label(label)
    rows: list[dict[str, Any]] = []
    with filesystem(prvkey, colony) as (_c, fs):
        for fd in fs.files(lab):
            revs = sorted(fs.revisions(lab, fd.name), key=lambda f: f.sequencenr)
            newest = revs[-1] if revs else None
            rows.append({"name": fd.name, "size": fd.size, "checksum": fd.checksum,
                         "fileid": newest.fileid if newest else "", "added": newest.added if newest else None,
                         "revisions": len(revs)})
    if as_json:
        show([{**r, "added": None if r["added"] is None else r["added"].isoformat()} for r in rows], True,
             lambda x: x)
        return
    if not rows:
        typer.echo(f"No files in {lab}", err=True)
        return
    print_fitted(table(f"Files in {lab}", ["Name", "Size", "LatestId", "Added", "Revisions"],
                       [(r["name"], size(r["size"]), r["fileid"], ts(r["added"]), r["revisions"]) for r in rows]))


@fs_app.command("info")
def fs_info(
    fileid: FileIdOpt = "",
    label: LabelOpt = "",
    name: NameOpt = "",
    colony: Colony = "",
    prvkey: PrvKey = "",
    as_json: Json = False,
) -> None:
    """A file's revisions (every one by --label and --name; one by --fileid)."""
    need(colony, "colony", "COLONIES_COLONY_NAME", "--colonyname")
    with client(prvkey) as c:
        files = sorted(one_file(c, colony, fileid, label, name, latest=False), key=lambda f: f.sequencenr)
    if as_json:
        show(files, True, lambda x: x)
        return
    for i, f in enumerate(files):
        if i:
            typer.echo()
        print_fitted(file_table(f))


@fs_app.command("get")
def fs_get(
    fileid: FileIdOpt = "",
    label: LabelOpt = "",
    name: NameOpt = "",
    directory: DirOpt = "",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    colony: Colony = "",
    prvkey: PrvKey = "",
) -> None:
    """Download a file (its newest revision, or the revision --fileid) into a directory; its SHA-256 is
    checked, and a copy that does not match is not kept."""
    d = local_dir(directory)
    with filesystem(prvkey, colony) as (c, fs):
        f = one_file(c, colony, fileid, label, name, latest=True)[0]
        d.mkdir(parents=True, exist_ok=True)
        with transfer(f.size, f.name, quiet) as progress:
            path = fs.download(f.label, f.name, d, fileid=f.fileid, progress=progress)
    typer.echo(f"Downloaded {f.label}/{f.name} ({size(f.size)}) to {path}")


@fs_app.command("remove")
def fs_remove(
    fileid: FileIdOpt = "",
    label: LabelOpt = "",
    name: NameOpt = "",
    colony: Colony = "",
    prvkey: PrvKey = "",
) -> None:
    """Remove one revision (--fileid) or every revision of a file (--label, --name), with their objects.
    Local copies stay."""
    with filesystem(prvkey, colony) as (c, fs):
        if fileid:
            f = one_file(c, colony, fileid, "", "", latest=False)[0]
            n = fs.remove(f.label, fileid=fileid)
            what = f"revision {fileid} of {f.label}/{f.name}"
        elif label and name:
            n = fs.remove(norm_label(label), name)
            what = f"{norm_label(label)}/{name}"
        else:
            raise CLIError("name a file: --fileid, or --label and --name")
    if not n:
        raise CLIError(f"no file {what} in colony {colony}")
    typer.echo(f"Removed {what} ({n} revision{'s' if n != 1 else ''}; local files are not touched)")


# -- labels ---------------------------------------------------------------------------------------------------
@label_app.command("ls")
def label_ls(
    name: Annotated[str, typer.Option("--label", "-l", help="Only this label and its sub-labels.")] = "",
    colony: Colony = "",
    prvkey: PrvKey = "",
    as_json: Json = False,
) -> None:
    """Labels with their file counts (every revision counts, as in the original)."""
    with filesystem(prvkey, colony) as (_c, fs):
        labels = fs.labels(norm_label(name), exact=bool(name))
    if not as_json and not labels:
        typer.echo("No labels", err=True)
        return
    show(labels, as_json, lambda xs: table("Labels", ["Label", "Files"], [(x.name, x.files) for x in xs]))


@label_app.command("remove")
def label_remove(label: LabelOpt = "", yes: Yes = False, colony: Colony = "", prvkey: PrvKey = "") -> None:
    """Remove every file of exactly this label (not /database for /data, not its sub-labels), with every
    revision's object. Local files stay."""
    lab = norm_label(need(label, "label", "a .cfs file", "--label"))
    confirm(f"Remove every file with label {lab} (sub-labels stay; local files are not touched)?", yes)
    with filesystem(prvkey, colony) as (_c, fs):
        n = fs.remove_label(lab)
    typer.echo(f"Removed {n} file revision{'s' if n != 1 else ''} with label {lab}")

