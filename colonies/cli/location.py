"""`colonies location add|ls|get|remove`: the named sites executors sit at (an executor names its own
with `executor add --location`). The colony owner adds and removes; members read."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from colonies.cli.common import (
    Colony,
    ColonyPrvKey,
    Json,
    PrvKey,
    client,
    group,
    kv,
    need,
    owner_client,
    show,
    table,
)

location_app = group("Locations: named sites (HPC centre, cloud, edge) with coordinates, where executors sit.")

LocName = Annotated[str, typer.Option("--name", "-n", help="Location name.")]


def _at(executors: list[Any], name: str) -> list[str]:
    """Names of the executors at location `name` (their `locationname`, ignoring case, as assign matches)."""
    return sorted(e.executorname for e in executors if e.locationname and e.locationname.lower() == name.lower())


def _coordinate(value: float) -> str:
    return f"{value:.4f}"


@location_app.command("add")
def location_add(
    name: LocName = "",
    desc: Annotated[str, typer.Option("--desc", "--description", help="What the site is.")] = "",
    long: Annotated[float, typer.Option("--long", help="Longitude, -180 to 180.")] = 0.0,
    lat: Annotated[float, typer.Option("--lat", help="Latitude, -90 to 90.")] = 0.0,
    colony: Colony = "",
    colony_prvkey: ColonyPrvKey = "",
    as_json: Json = False,
) -> None:
    """Add a location (colony owner)."""
    need(name, "location name", "a name", "--name")
    need(colony, "colony", "COLONIES_COLONY_NAME", "--colonyname")
    with owner_client(colony_prvkey) as c:
        loc = c.add_location(colony, name, desc, long, lat)
    show(loc, as_json, lambda x: f"Location {x.name} added to colony {x.colonyname} ({x.long:g}, {x.lat:g})")


@location_app.command("ls")
def location_ls(colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False) -> None:
    """The colony's locations and the executors at each."""
    need(colony, "colony", "COLONIES_COLONY_NAME", "--colonyname")
    with client(prvkey) as c:
        locs = c.get_locations(colony) or []
        executors = (c.get_executors(colony) or []) if locs and not as_json else []
    if not as_json and not locs:
        typer.echo(f"No locations in colony {colony}", err=True)
        return
    show(locs, as_json, lambda xs: table(
        "Locations", ["Name", "Description", "Long", "Lat", "Executors"],
        [(x.name, x.description, _coordinate(x.long), _coordinate(x.lat), ", ".join(_at(executors, x.name)))
         for x in xs]))


@location_app.command("get")
def location_get(name: LocName = "", colony: Colony = "", prvkey: PrvKey = "", as_json: Json = False) -> None:
    """One location and the executors at it."""
    need(name, "location name", "a name", "--name")
    need(colony, "colony", "COLONIES_COLONY_NAME", "--colonyname")
    with client(prvkey) as c:
        loc = c.get_location(colony, name)
        executors = [] if as_json else c.get_executors(colony) or []
    show(loc, as_json, lambda x: kv(f"Location {x.name}", [
        ("Name", x.name), ("LocationId", x.locationid), ("Colony", x.colonyname), ("Description", x.description),
        ("Longitude", repr(x.long)), ("Latitude", repr(x.lat)), ("Executors", ", ".join(_at(executors, x.name)))]))


@location_app.command("remove")
def location_remove(name: LocName = "", colony: Colony = "", colony_prvkey: ColonyPrvKey = "") -> None:
    """Remove a location (colony owner). Executors at it keep their location name."""
    need(name, "location name", "a name", "--name")
    need(colony, "colony", "COLONIES_COLONY_NAME", "--colonyname")
    with owner_client(colony_prvkey) as c:
        c.remove_location(colony, name)
    typer.echo(f"Location {name} removed from colony {colony}")
