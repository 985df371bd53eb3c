"""Who may do what (§2): server owner, colony owner, colony member, the assigned executor."""

from __future__ import annotations

from collections.abc import Callable

from colonies.errors import BadRequest, Forbidden
from colonies.model import Colony, Executor, ExecutorState, User
from colonies.storage.base import Storage

Member = Executor | User


MEMBER_TTL_NS = 1_000_000_000
MAX_CACHED = 100_000


class Guard:
    """Authorization checks against storage. Every check that finds an executor records a sign of
    life for it, at most once a second per executor.

    Membership lookups are cached per (colony, signer) for at most a second. Handlers that change
    executors, users or colonies on this server call `forget()`, so a single server is exact; a
    revocation on another replica arrives as EventBus.revoke and drops the cache too, other changes on
    another replica are seen within the TTL. Assignment does not rely on the cache: the claim itself
    checks that the executor is still approved (ClaimRequest.approved_only)."""

    def __init__(self, storage: Storage, now_ns: Callable[[], int]) -> None:
        self.storage = storage
        self._now = now_ns
        self._touched: dict[str, int] = {}
        self._members: dict[tuple[str, str], tuple[int, Executor | None, User | None]] = {}

    def forget(self) -> None:
        """Drop cached memberships (after any change to executors, users or colonies)."""
        self._members.clear()

    def forget_revoked(self, colony: str, executor_name: str) -> None:
        """An executor was rejected or removed, maybe on another replica (EventBus.revoke)."""
        self.forget()

    async def _lookup(self, signer: str, colony_name: str) -> tuple[Executor | None, User | None]:
        now = self._now()
        key = (colony_name, signer)
        hit = self._members.get(key)
        if hit is not None and now - hit[0] < MEMBER_TTL_NS:
            return hit[1], hit[2]
        executor = await self.storage.get_colony_executor_by_id(colony_name, signer)
        user = None if executor is not None else await self.storage.get_user_by_id(colony_name, signer)
        if len(self._members) >= MAX_CACHED:
            self._members.clear()
        self._members[key] = (now, executor, user)
        return executor, user

    async def server_owner(self, signer: str) -> None:
        server_id = await self.storage.get_server_id()
        if not server_id or signer != server_id:
            raise Forbidden("access denied, not server owner")

    async def colony_owner(self, signer: str, colony_name: str) -> Colony:
        colony = await self.storage.get_colony(colony_name)
        if colony is None:
            raise Forbidden(f"access denied, colony {colony_name} does not exist")
        if colony.colonyid != signer:
            raise Forbidden("access denied, not colony owner")
        return colony

    async def member(self, signer: str, colony_name: str, approved: bool = True) -> Member:
        """The executor (approved unless `approved=False`) or user of `colony_name` that signed."""
        executor, user = await self._lookup(signer, colony_name)
        if executor is not None and (not approved or executor.state == ExecutorState.APPROVED):
            await self.alive(executor.executorid)
            return executor
        if user is None and executor is not None:
            user = await self.storage.get_user_by_id(colony_name, signer)
        if user is not None:
            return user
        raise Forbidden(f"access denied, not a member of colony {colony_name}")

    async def executor(self, signer: str, colony_name: str) -> Executor:
        """An approved executor of the colony (assign, add function, ...)."""
        member = await self.member(signer, colony_name)
        if not isinstance(member, Executor):
            raise Forbidden("access denied, only executors may do this")
        return member

    async def alive(self, executor_id: str) -> None:
        now = self._now()
        last = self._touched.get(executor_id, 0)
        if now - last >= 1_000_000_000:
            self._touched[executor_id] = now
            if len(self._touched) > 100_000:
                self._touched.clear()
            await self.storage.touch_executor(executor_id, now)


def initiator_name(member: Member) -> str:
    if isinstance(member, Executor):
        return member.executorname
    if member.name:
        return member.name
    raise BadRequest("initiator has no name")

