"""`colonies fs snapshot ...`: freeze the newest revision of every file under a label, list, inspect,
download and remove snapshots."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from colonies.cli.common import (
    CLIError,
    Colony,
    Json,
    PrvKey,
    client,
    group,
    kv,
    need,
    print_fitted,
    show,
    table,
    ts,
)
from colonies.cli.fs import DirOpt, LabelOpt, Yes, confirm, filesystem, local_dir, norm_label, size, transfer

snapshot_app = group("Snapshots: the newest revision of every file under a label, frozen under a name.")

SnapshotId = Annotated[str, typer.Option("--snapshotid", "-i", help="Snapshot id.")]
SnapshotName = Annotated[str, typer.Option("--snapshotname", "--name", "-n", help="Snapshot name.")]


def _get(c: Any, colony: str, snapshotid: str, name: str) -> Any:
    if not (snapshotid or name):
        raise CLIError("name a snapshot: --snapshotid or --snapshotname")
    return c.get_snapshot(colony, snapshotid=snapshotid, name=name)


def _snapshot_tables(c: Any, s: Any) -> list[Any]:
    """The snapshot's fields, and its files (one lookup per file, as the original does)."""
    fields = kv(f"Snapshot {s.name}", [("SnapshotId", s.snapshotid), ("Name", s.name), ("Label", s.label),
                                        ("Colony", s.colonyname), ("Added", ts(s.added)), ("Files", len(s.fileids))])
    rows = []
    for fileid in s.fileids:
        found = c.get_file(s.colonyname, fileid=fileid)
        f = found[0] if found else None
        rows.append((f.name if f else "(removed)", f.label if f else "", size(f.size) if f else "", fileid,
                     ts(f.added) if f else ""))
    files = table("Files", ["Name", "Label", "Size", "FileId", "Added"], rows) if rows else "No files in this snapshot"
    return [fields, files]


def _print(c: Any, s: Any) -> None:
    for part in _snapshot_tables(c, s):
        print_fitted(part)


@snapshot_app.command("create")
def snapshot_create(
    label: LabelOpt = "",
    name: SnapshotName = "",
    colony: Colony = "",
    prvkey: PrvKey = "",
    as_json: Json = False,
) -> None:
    """Freeze the newest revision of every file under a label (and its sub-labels) under a name."""
    lab = norm_label(need(label, "label", "a label", "--label"))
    need(name, "snapshot name", "a name", "--snapshotname")
    need(colony, "colony", "COLONIES_COLONY_NAME", "--colonyname")
    with client(prvkey) as c:
        s = c.create_snapshot(colony, lab, name)
        if as_json:
            show(s, True, lambda x: x)
            return
        typer.echo(f"Snapshot {name} of {lab} created ({len(s.fileids)} file{'s' if len(s.fileids) != 1 else ''})")
        _print(c, s)


@snapshot_app.command("download")
def snapshot_download(
    snapshotid: SnapshotId = "",
    name: SnapshotName = "",
    directory: DirOpt = "",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    colony: Colony = "",
    prvkey: PrvKey = "",
) -> None:
    """Download every file of a snapshot into a directory (sub-labels become sub-directories)."""
    d = local_dir(directory)
    with filesystem(prvkey, colony) as (c, fs):
        s = _get(c, colony, snapshotid, name)
        total = 0
        for fileid in s.fileids:
            total += sum(f.size for f in c.get_file(colony, fileid=fileid) or [])
        d.mkdir(parents=True, exist_ok=True)
        with transfer(total, f"snapshot {s.name}", quiet) as progress:
            paths = fs.download_snapshot(d, snapshotid=s.snapshotid, progress=progress)
    typer.echo(f"Downloaded snapshot {s.name} ({len(paths)} file{'s' if len(paths) != 1 else ''}, {size(total)}) "
               f"to {d}")


@snapshot_app.command("ls")
def snapshot_ls(colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False) -> None:
    """The colony's snapshots."""
    need(colony, "colony", "COLONIES_COLONY_NAME", "--colonyname")
    with client(prvkey) as c:
        snaps = c.get_snapshots(colony) or []
    if not as_json and not snaps:
        typer.echo("No snapshots", err=True)
        return
    show(snaps, as_json, lambda xs: table("Snapshots", ["Name", "SnapshotId", "Label", "Files", "Added"],
                                          [(s.name, s.snapshotid, s.label, len(s.fileids), ts(s.added)) for s in xs]))


@snapshot_app.command("info")
def snapshot_info(
    snapshotid: SnapshotId = "", name: SnapshotName = "", colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False
) -> None:
    """A snapshot and its files."""
    need(colony, "colony", "COLONIES_COLONY_NAME", "--colonyname")
    with client(prvkey) as c:
        s = _get(c, colony, snapshotid, name)
        if as_json:
            show(s, True, lambda x: x)
            return
        _print(c, s)


@snapshot_app.command("remove")
def snapshot_remove(snapshotid: SnapshotId = "", name: SnapshotName = "", colony: Colony = "",
                    prvkey: PrvKey = "") -> None:
    """Remove a snapshot (its files stay)."""
    need(colony, "colony", "COLONIES_COLONY_NAME", "--colonyname")
    if not (snapshotid or name):
        raise CLIError("name a snapshot: --snapshotid or --snapshotname")
    with client(prvkey) as c:
        c.remove_snapshot(colony, snapshotid=snapshotid, name=name)
    typer.echo(f"Removed snapshot {snapshotid or name}")


@snapshot_app.command("removeall")
def snapshot_removeall(yes: Yes = False, colony: Colony = "", prvkey: PrvKey = "") -> None:
    """Remove every snapshot of the colony (their files stay)."""
    need(colony, "colony", "COLONIES_COLONY_NAME", "--colonyname")
    confirm(f"Remove every snapshot in colony {colony}? This cannot be undone", yes, word="YES")
    with client(prvkey) as c:
        c.remove_all_snapshots(colony)
    typer.echo(f"Removed every snapshot of colony {colony}")
