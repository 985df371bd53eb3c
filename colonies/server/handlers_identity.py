"""Handlers: server, colonies, executors and users (§2.1)."""

from __future__ import annotations

from typing import Any

from colonies.clock import to_datetime
from colonies.cluster import EMPTY_NODE
from colonies.errors import BadRequest, Forbidden, IdInUse, NotFound
from colonies.model import Colony, Executor, ExecutorState, Statistics, User
from colonies.protocol import messages as m
from colonies.services import Services, check_id, check_name
from colonies.storage import rows


# -- server and colonies ------------------------------------------------------------------------------
async def add_colony(s: Services, signer: str, msg: m.AddColonyMsg) -> Colony:
    await s.guard.server_owner(signer)
    check_id(msg.colony.colonyid, "colony id")
    check_name(msg.colony.name, "colony name")
    await s.storage.add_colony(msg.colony)
    return msg.colony


async def remove_colony(s: Services, signer: str, msg: m.RemoveColonyMsg) -> dict[str, Any]:
    await s.guard.server_owner(signer)
    if await s.storage.get_colony(msg.colonyname) is None:
        raise BadRequest(f"colony {msg.colonyname} does not exist")
    await s.storage.remove_colony(msg.colonyname)
    s.bus.wake_colony(msg.colonyname)
    return {}


async def get_colonies(s: Services, signer: str, msg: m.GetColoniesMsg) -> list[Colony]:
    await s.guard.server_owner(signer)
    return await s.storage.list_colonies()


async def get_colony(s: Services, signer: str, msg: m.GetColonyMsg) -> Colony:
    await s.guard.member(signer, msg.colonyname)
    colony = await s.storage.get_colony(msg.colonyname)
    if colony is None:
        raise NotFound(f"colony {msg.colonyname} not found")
    return colony


async def get_colony_stats(s: Services, signer: str, msg: m.GetColonyStatsMsg) -> Statistics:
    await s.guard.member(signer, msg.colonyname)
    return await s.storage.statistics(msg.colonyname)


async def get_statistics(s: Services, signer: str, msg: m.GetStatisticsMsg) -> Statistics:
    await s.guard.server_owner(signer)
    return await s.storage.statistics(None)


async def get_cluster(s: Services, signer: str, msg: m.GetClusterMsg) -> dict[str, Any]:
    await s.guard.server_owner(signer)
    assert s.leadership is not None
    await s.leadership.refresh()
    leader = s.leadership.leader() or EMPTY_NODE
    return {"nodes": [n.to_wire() for n in s.leadership.nodes()], "leader": leader.to_wire()}


async def change_colony_id(s: Services, signer: str, msg: m.ChangeColonyIdMsg) -> dict[str, Any]:
    colony = await s.guard.colony_owner(signer, msg.colonyname)
    new = check_id(msg.colonyid, "colony id")
    if new != colony.colonyid and await s.storage.identity_in_use(new, msg.colonyname):
        # An owner id that is also a member id would blur the two roles (owners are not members).
        raise IdInUse("that id is already in use by an executor or user of the colony")
    await s.storage.change_colony_id(msg.colonyname, new)
    return {}


async def change_server_id(s: Services, signer: str, msg: m.ChangeServerIdMsg) -> dict[str, Any]:
    await s.guard.server_owner(signer)
    new = check_id(msg.serverid, "server id")
    if new != signer and await s.storage.identity_in_use(new, None):
        raise IdInUse("that id is already in use by an executor or user")
    await s.storage.set_server_id(new)
    return {}


# -- executors ---------------------------------------------------------------------------------------------
async def add_executor(s: Services, signer: str, msg: m.AddExecutorMsg) -> Executor:
    e = msg.executor
    await s.guard.colony_owner(signer, e.colonyname)
    check_id(e.executorid, "executor id")
    check_name(e.executorname, "executor name")
    check_name(e.executortype, "executor type")
    e.state = ExecutorState.PENDING
    e.commissiontime = to_datetime(s.now())
    requeued = await s.storage.add_executor(e, replace=s.config.allow_executor_reregister)
    await _publish_ids(s, requeued)
    return e


async def _executor_or_400(s: Services, colony: str, name: str) -> Executor:
    e = await s.storage.get_executor(colony, name)
    if e is None:
        raise BadRequest(f"executor {name} not found in colony {colony}")
    return e


async def approve_executor(s: Services, signer: str, msg: m.ApproveExecutorMsg) -> dict[str, Any]:
    await s.guard.colony_owner(signer, msg.colonyname)
    await _executor_or_400(s, msg.colonyname, msg.executorname)
    await s.storage.set_executor_state(msg.colonyname, msg.executorname, ExecutorState.APPROVED)
    return {}


async def reject_executor(s: Services, signer: str, msg: m.RejectExecutorMsg) -> dict[str, Any]:
    await s.guard.colony_owner(signer, msg.colonyname)
    # A revocation: its RUNNING processes go back to the queue (it could no longer close them), in the
    # same transaction as the state change, and its parked assign polls end at once (403).
    requeued = await s.storage.reject_executor(msg.colonyname, msg.executorname, s.now())
    if requeued is None:
        raise BadRequest(f"executor {msg.executorname} not found in colony {msg.colonyname}")
    s.bus.revoke(msg.colonyname, msg.executorname)
    await _publish_ids(s, requeued)
    return {}


async def remove_executor(s: Services, signer: str, msg: m.RemoveExecutorMsg) -> dict[str, Any]:
    await s.guard.colony_owner(signer, msg.colonyname)
    await _executor_or_400(s, msg.colonyname, msg.executorname)
    requeued = await s.storage.remove_executor(msg.colonyname, msg.executorname, s.now())
    s.bus.revoke(msg.colonyname, msg.executorname)
    await _publish_ids(s, requeued)
    return {}


async def _publish_ids(s: Services, ids: list[str]) -> None:
    for pid in ids:
        p = await s.storage.get_process(pid)
        if p is not None:
            s.bus.publish(p)


async def get_executors(s: Services, signer: str, msg: m.GetExecutorsMsg) -> list[Executor]:
    await s.guard.member(signer, msg.colonyname, approved=False)
    return await s.storage.list_executors(msg.colonyname)


async def get_executor(s: Services, signer: str, msg: m.GetExecutorMsg) -> Executor:
    await s.guard.member(signer, msg.colonyname)
    e = await s.storage.get_executor(msg.colonyname, msg.executorname)
    if e is None:
        raise NotFound(f"executor {msg.executorname} not found")
    return e


async def get_executor_by_id(s: Services, signer: str, msg: m.GetExecutorByIdMsg) -> Executor:
    e = await s.storage.get_colony_executor_by_id(msg.colonyname, msg.executorid) if msg.colonyname else \
        await s.storage.get_executor_by_id(msg.executorid)
    if e is None:
        await s.guard.member(signer, msg.colonyname)
        raise NotFound("executor not found")
    await s.guard.member(signer, e.colonyname)
    return e


async def _self_executor(s: Services, signer: str, colony: str, name: str) -> Executor:
    await s.guard.member(signer, colony, approved=False)
    e = await _executor_or_400(s, colony, name)
    if e.executorid != signer:
        raise Forbidden("access denied, only the executor itself may do this")
    return e


async def report_allocation(s: Services, signer: str, msg: m.ReportAllocationMsg) -> dict[str, Any]:
    await _self_executor(s, signer, msg.colonyname, msg.executorname)
    await s.storage.update_executor(msg.colonyname, msg.executorname, None, rows.dumps(msg.allocations or {}))
    return {}


async def update_executor(s: Services, signer: str, msg: m.UpdateExecutorMsg) -> dict[str, Any]:
    await _self_executor(s, signer, msg.colonyname, msg.executorname)
    await s.storage.update_executor(msg.colonyname, msg.executorname, rows.dumps(msg.capabilities or {}), None)
    return {}


async def change_executor_id(s: Services, signer: str, msg: m.ChangeExecutorIdMsg) -> dict[str, Any]:
    member = await s.guard.member(signer, msg.colonyname, approved=False)
    if not isinstance(member, Executor):
        raise Forbidden("access denied, signer is not an executor")
    await s.storage.change_executor_id(msg.colonyname, signer, check_id(msg.executorid, "executor id"))
    return {}


# -- users ----------------------------------------------------------------------------------------------------
async def add_user(s: Services, signer: str, msg: m.AddUserMsg) -> User:
    u = msg.user
    await s.guard.colony_owner(signer, u.colonyname)
    check_id(u.userid, "user id")
    check_name(u.name, "user name")
    await s.storage.add_user(u)
    return u


async def get_users(s: Services, signer: str, msg: m.GetUsersMsg) -> list[User]:
    await s.guard.member(signer, msg.colonyname, approved=False)
    return await s.storage.list_users(msg.colonyname)


async def get_user(s: Services, signer: str, msg: m.GetUserMsg) -> User:
    await s.guard.member(signer, msg.colonyname, approved=False)
    u = await s.storage.get_user(msg.colonyname, msg.name)
    if u is None:
        raise NotFound(f"user {msg.name} not found")
    return u


async def get_user_by_id(s: Services, signer: str, msg: m.GetUserByIdMsg) -> User:
    await s.guard.member(signer, msg.colonyname, approved=False)
    u = await s.storage.get_user_by_id(msg.colonyname, msg.userid)
    if u is None:
        raise NotFound("user not found")
    return u


async def remove_user(s: Services, signer: str, msg: m.RemoveUserMsg) -> dict[str, Any]:
    await s.guard.colony_owner(signer, msg.colonyname)
    if not await s.storage.remove_user(msg.colonyname, msg.name):
        raise BadRequest(f"user {msg.name} not found")
    return {}


async def change_user_id(s: Services, signer: str, msg: m.ChangeUserIdMsg) -> dict[str, Any]:
    member = await s.guard.member(signer, msg.colonyname, approved=False)
    if not isinstance(member, User):
        raise Forbidden("access denied, signer is not a user")
    await s.storage.change_user_id(msg.colonyname, signer, check_id(msg.userid, "user id"))
    return {}
