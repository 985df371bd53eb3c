"""Handlers: locations, the named sites executors sit at (§7.1). An executor names its site with its own
`locationname` (set when it is added); a location is the site's record: description and coordinates.

Who: the colony owner adds and removes; members read, executors in any state included (the original's
`RequireMembership(…, approved=false)`). Unlike the original: the server always sets `locationid` (the
original keeps the client's, even ""), a name must be 1 to 256 characters, coordinates must be in range,
a duplicate name is a 409 and an unknown one a 404 (the original answers 400 to both, except 404 for an
unknown name on get), and an unknown colony is a 403 like every other role check here (the original: 400).
"""

from __future__ import annotations

import math
from typing import Any

from colonies.errors import BadRequest, NotFound
from colonies.model import Location
from colonies.protocol import messages as m
from colonies.server.handlers_types import Handler
from colonies.services import Services, check_text, new_id

MAX_NAME = 256
MAX_DESCRIPTION = 1024


def _colony(value: str) -> str:
    return check_text(value, "colonyname", MAX_NAME)


def _name(value: str, what: str = "name") -> str:
    return check_text(value, what, MAX_NAME, required=True)


def _coordinate(value: float, what: str, bound: float) -> float:
    if not (math.isfinite(value) and -bound <= value <= bound):
        raise BadRequest(f"{what} must be a number from {-bound:g} to {bound:g}")
    return value


def _not_found(colony: str, name: str) -> NotFound:
    return NotFound(f"location {name} not found in colony {colony}")


async def add_location(s: Services, signer: str, msg: m.AddLocationMsg) -> Location:
    loc = msg.location
    await s.guard.colony_owner(signer, _colony(loc.colonyname))
    stored = Location(locationid=new_id(), colonyname=loc.colonyname, name=_name(loc.name, "location.name"),
                      description=check_text(loc.description, "location.description", MAX_DESCRIPTION),
                      long=_coordinate(loc.long, "location.long", 180), lat=_coordinate(loc.lat, "location.lat", 90))
    return await s.storage.add_location(stored)


async def get_locations(s: Services, signer: str, msg: m.GetLocationsMsg) -> list[Location]:
    await s.guard.member(signer, _colony(msg.colonyname), approved=False)
    return await s.storage.list_locations(msg.colonyname)


async def get_location(s: Services, signer: str, msg: m.GetLocationMsg) -> Location:
    await s.guard.member(signer, _colony(msg.colonyname), approved=False)
    found = await s.storage.get_location(msg.colonyname, _name(msg.name))
    if found is None:
        raise _not_found(msg.colonyname, msg.name)
    return found


async def remove_location(s: Services, signer: str, msg: m.RemoveLocationMsg) -> dict[str, Any]:
    await s.guard.colony_owner(signer, _colony(msg.colonyname))
    if not await s.storage.remove_location(msg.colonyname, _name(msg.name)):
        raise _not_found(msg.colonyname, msg.name)
    return {}


HANDLERS: dict[str, Handler] = {
    "addlocationmsg": add_location,
    "getlocationsmsg": get_locations,
    "getlocationmsg": get_location,
    "removelocationmsg": remove_location,
}
