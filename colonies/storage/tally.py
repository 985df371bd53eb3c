"""In-memory counts of processes, workflows, executors and colonies, kept exact without queries.

`/metrics` reads these counts; it never counts rows. The storage backend seeds them once (one grouped
query per table, `Storage.seed_tally`) and from then on reports every change it commits as deltas:
SQLite through temporary triggers on its own connection (every insert, update of state and delete,
cascades and retention included), PostgreSQL from each statement that changes a counted row. A delta
of a transaction is applied only when it commits.

With several replicas on one PostgreSQL database, each replica forwards its deltas to the others over
LISTEN/NOTIFY (colonies.cluster_events), numbered per replica: a replica that sees a gap in another's
numbers (a notification dropped, a LISTEN connection re-established) seeds again.

Keys are (kind, colony, executor type, state); the executor type is "" for workflows and colonies.
Counts can dip below zero for an instant when another replica's deltas arrive out of order with a
seed; they are exact again once every delta is in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

PROCESS, GRAPH, EXECUTOR, COLONY = 0, 1, 2, 3
UNREGISTERED = 3  # ExecutorState.UNREGISTERED: a removed executor (kept as a row, not counted)
HEARD_FORWARD_NS = 10 * 1_000_000_000  # an executor's sign of life goes to other replicas at most this often

# (kind, colony, executor type, state, n, executor id): n rows enter (n > 0) or leave (n < 0) that key.
# The executor id is set for executors only (for the last-seen ages); "" otherwise.
Delta = tuple[int, str, str, int, int, str]
Key = tuple[int, str, str, int]


class Tally:
    def __init__(self) -> None:
        self.counts: dict[Key, int] = {}
        self.live: dict[str, int] = {}  # executor id -> how many of its rows are not UNREGISTERED
        self.heard: dict[str, int] = {}  # executor id -> last sign of life (Unix ns), live executors only
        self.seeds = 0
        # Forwarding to other replicas (set by colonies.cluster_events): local deltas wait in the outbox,
        # `forward` is called when it stops being empty.
        self.forward: Callable[[], None] | None = None
        self.outbox: list[Delta] = []
        self.heard_out: dict[str, int] = {}
        self._heard_sent: dict[str, int] = {}
        self._seq = 0
        self._remote_seq: dict[str, int] = {}
        self._held: list[Delta] | None = None  # deltas that arrive while a seed is being read

    # -- changes -------------------------------------------------------------------------------------------
    def apply(self, deltas: Sequence[Delta], local: bool = True) -> None:
        """Deltas of one committed change (`local`: committed here, so also for the other replicas)."""
        if local and self.forward is not None:
            idle = not self.outbox and not self.heard_out
            self.outbox.extend(deltas)
            if idle:
                self.forward()
        if self._held is not None:
            self._held.extend(deltas)
        else:
            self._apply(deltas)

    def _apply(self, deltas: Iterable[Delta]) -> None:
        counts, live = self.counts, self.live
        for kind, colony, etype, state, n, ident in deltas:
            key = (kind, colony, etype, state)
            value = counts.get(key, 0) + n
            if value:
                counts[key] = value
            else:
                counts.pop(key, None)
            if kind == EXECUTOR and state != UNREGISTERED and ident:
                refs = live.get(ident, 0) + n
                if refs > 0:
                    live[ident] = refs
                else:
                    live.pop(ident, None)
                    self.heard.pop(ident, None)

    def touched(self, executor_id: str, now_ns: int, local: bool = True) -> None:
        """An executor showed a sign of life (here, or on another replica when not `local`)."""
        if executor_id not in self.live:
            return
        if now_ns > self.heard.get(executor_id, 0):
            self.heard[executor_id] = now_ns
        if local and self.forward is not None and now_ns - self._heard_sent.get(executor_id, 0) >= HEARD_FORWARD_NS:
            idle = not self.outbox and not self.heard_out
            self._heard_sent[executor_id] = now_ns
            self.heard_out[executor_id] = now_ns
            if idle:
                self.forward()

    # -- seeding -------------------------------------------------------------------------------------------
    def begin_seed(self) -> None:
        """From now until `finish_seed`, changes are held and applied on top of the seed."""
        if self._held is None:
            self._held = []

    def finish_seed(self, rows: Iterable[Delta], heard: dict[str, int]) -> None:
        held, self._held = self._held or [], None
        self.counts, self.live, self.heard = {}, {}, {}
        self._apply(rows)
        self.heard = {i: t for i, t in heard.items() if i in self.live and t > 0}
        self._apply(held)
        self.seeds += 1

    def abort_seed(self) -> None:
        held, self._held = self._held or [], None
        self._apply(held)

    @property
    def seeding(self) -> bool:
        return self._held is not None

    # -- between replicas ----------------------------------------------------------------------------------
    def take_outbox(self) -> tuple[list[Delta], dict[str, int]]:
        """The local changes waiting to go to the other replicas (deltas, signs of life)."""
        out, heard = self.outbox, self.heard_out
        self.outbox, self.heard_out = [], {}
        return out, heard

    def next_seq(self) -> int:
        """The number of the next message of count changes this replica sends (1, 2, …)."""
        self._seq += 1
        return self._seq

    def remote(self, replica: str, seq: int, deltas: Sequence[Delta], heard: dict[str, int]) -> bool:
        """Changes from another replica. False when some of its earlier ones never arrived (seed again)."""
        last = self._remote_seq.get(replica)
        if last is not None and seq <= last:
            return True  # a repeat (a batch sent again after a lost acknowledgement)
        self._remote_seq[replica] = seq
        self.apply(deltas, local=False)
        for ident, ts in heard.items():
            self.touched(ident, ts, local=False)
        return last is None or seq == last + 1

    # -- reading -------------------------------------------------------------------------------------------
    def totals(self) -> dict[tuple[int, int], int]:
        """(kind, state) -> count, over every colony and executor type (one pass)."""
        out: dict[tuple[int, int], int] = {}
        for (kind, _colony, _etype, state), n in self.counts.items():
            out[kind, state] = out.get((kind, state), 0) + n
        return out
