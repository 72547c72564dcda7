"""Closes: the sync points and assertions on how a host's connections ended.

Each connection's record knows who closed it first (:meth:`ConnectionRecord.end
<fakepeer._state.ConnectionRecord.end>`): the **client** (the peer read its EOF, from
``close()`` or ``shutdown(SHUT_WR)``, or the connection was reset or lost before the peer
closed it) or the **peer** (a rule's ``.close()``/``.reset()``, ``connection.close()``, a
fault, a failure, a failed STARTTLS handshake, the peer's stop). :class:`Closes`, a base of
:class:`~fakepeer._host.Host`, waits for those closes (sync, asyncio and trio, like the
other waits) and asserts on them. A ``tls=True`` peer's failed handshakes make no connection
(they are ``tls`` events of the peer): they are not counted here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ._errors import ConversationError, ScriptError, WaitTimeout
from ._inspection import Inspection, _reading
from ._state import ConnectionRecord
from ._wait import Waiters

__all__ = ["BY", "Closes"]

#: The values of ``by=``: whose closes count.
BY = ("client", "peer", "any")


def _ended(record: ConnectionRecord) -> str:
    """How ``record`` stands, in the words of a failure: ``#2 closed by the client (EOF)``."""
    if record.ending is None:
        return f"#{record.id} open (from {record.client})"
    by, how = record.ending
    return f"#{record.id} closed by the {by} ({how})"


def _counts(record: ConnectionRecord, by: str) -> bool:
    ending = record.ending
    return ending is not None and (by == "any" or ending[0] == by)


def _whose(by: str) -> str:
    return "either side" if by == "any" else f"the {by}"


def _other_side(records: Sequence[ConnectionRecord], by: str) -> str:
    """A hint line when some of ``records`` were closed by the side ``by`` does not count."""
    side = "peer" if by == "client" else "client"
    other = sum(1 for record in records if by != "any" and _counts(record, side))
    if not other:
        return ""
    why = (
        " (a rule's .close() or .reset(), a fault, a failure, or a preset's rule, such as "
        "mqtt.handshake()'s on a DISCONNECT)"
        if side == "peer"
        else ""
    )
    return (
        f"\n  hint:      {other} connection(s) were closed by the {side} first{why}: to count "
        f'them, pass by="any" (or by="{side}")'
    )


class Closes(Inspection):
    """The waits and assertions on closes of a host; see the module docstring."""

    timeout: float
    _waiters: Waiters

    def _blocking_ok(self, method: str) -> None:
        """Refuse to block the thread or loop that serves the peer (the host's)."""
        raise NotImplementedError

    # -- checks of the arguments -------------------------------------------------------------

    def _close_args(self, method: str, count: int, connection: int | None, by: str) -> None:
        if getattr(self, "_udp", False):
            raise ScriptError(
                f"{method}(): a UDP peer's clients (transport='udp') are addresses, which "
                "never close"
            )
        if by not in BY:
            raise ScriptError(
                f"{method}(by=...) takes 'client', 'peer' or 'any' (whose closes count), got {by!r}"
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ScriptError(f"{method}(count=...) takes a whole number >= 1, got {count!r}")
        if connection is not None:
            if isinstance(connection, bool) or not isinstance(connection, int) or connection < 1:
                raise ScriptError(
                    f"{method}(connection=...) takes a connection's number (an int, from 1), "
                    f"got {connection!r}"
                )
            if count != 1:
                raise ScriptError(
                    f"{method}(count={count}, connection={connection}): a count is for any "
                    "connections; one connection closes once"
                )

    def _wait_limit(self, method: str, timeout: object) -> float:
        """The seconds a wait of ``method`` waits: ``timeout``, or the peer's if None;
        :class:`~fakepeer.ScriptError` naming ``timeout=`` for anything but a finite
        number > 0 (a wait is bounded, and 0 would race the hub for the peer's lock)."""
        if timeout is None:
            return self.timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ScriptError(
                f"{method}(timeout=...) takes a positive number of seconds (None: the "
                f"peer's timeout, {self.timeout:g} s), got {timeout!r}"
            )
        return timeout  # (as written: an int shows as one in the WaitTimeout)

    # -- the waits ---------------------------------------------------------------------------

    def _closed(self, count: int, connection: int | None, by: str) -> Callable[[], bool]:
        conversation = self._conversation
        records = conversation.connections
        if connection is not None:
            index = connection - 1
            return lambda: (
                bool(conversation.problems)
                or (len(records) > index and records[index].ending is not None)
            )
        return lambda: (
            bool(conversation.problems)
            or (sum(1 for record in records if _counts(record, by)) >= count)
        )

    def _after_closes(
        self, ok: bool, count: int, connection: int | None, by: str, timeout: float
    ) -> None:
        __tracebackhide__ = True
        self.check()
        with _reading(self._lock, self._conversation):
            records = list(self._conversation.connections)
            transcript = self._now().render() if not ok or connection is not None else ""
        if connection is not None:
            record = records[connection - 1] if len(records) >= connection else None
            if ok and record is not None and not _counts(record, by):
                assert record.ending is not None
                problem = ConversationError(
                    f"connection #{connection} was closed by the {record.ending[0]} "
                    f"({record.ending[1]}), not by {_whose(by)}",
                    connection=connection,
                )
                raise problem.with_transcript(transcript)
            if ok:
                return
            if record is None:
                state = f"it has not arrived ({len(records)} connection(s) did)"
            else:
                state = f"it is still open (from {record.client})"
            what = f"connection #{connection} to be closed by {_whose(by)}: {state}"
            raise WaitTimeout(f"timed out after {timeout} s waiting for {what}").with_transcript(
                transcript
            )
        if ok:
            return
        closed = sum(1 for record in records if _counts(record, by))
        lines = "".join(f"\n  {_ended(record)}" for record in records) or (
            "\n  (no client connected)"
        )
        raise WaitTimeout(
            f"timed out after {timeout} s waiting for {count} connection(s) to be closed by "
            f"{_whose(by)}: {closed} of {len(records)} were{lines}{_other_side(records, by)}"
        ).with_transcript(transcript)

    def wait_for_closes(
        self,
        count: int = 1,
        *,
        connection: int | None = None,
        by: str = "client",
        timeout: float | None = None,
    ) -> None:
        """Block until ``count`` connections in all were closed by ``by`` (or a problem
        was seen): ``"client"`` (the default: the peer read its EOF, or it reset the
        connection, before the peer closed), ``"peer"`` (the peer closed or reset it
        first: a rule's ``.close()``, a fault, a failure...) or ``"any"``. With
        ``connection=n``, until the ``n``-th connection (from 1; it may not have arrived
        yet) was closed, and then :class:`~fakepeer.ConversationError` if the other side
        closed it.

        A close that came before the call counts: there is no race with a client that
        closes as the wait begins. Raises :class:`~fakepeer.WaitTimeout` after ``timeout``
        (default: the peer's timeout) naming how each connection stands (closed by whom
        and how, or open); the problem the peer saw, if any, first (as :meth:`check`).
        :class:`~fakepeer.ScriptError` for a bad argument (``timeout``: a finite number of
        seconds > 0, or None), and on a UDP peer."""
        __tracebackhide__ = True
        self._close_args("wait_for_closes", count, connection, by)
        limit = self._wait_limit("wait_for_closes", timeout)
        self._blocking_ok("wait_for_closes")
        ok = self._waiters.wait(self._closed(count, connection, by), limit)
        self._after_closes(ok, count, connection, by, limit)

    async def wait_for_closes_async(
        self,
        count: int = 1,
        *,
        connection: int | None = None,
        by: str = "client",
        timeout: float | None = None,
    ) -> None:
        """:meth:`wait_for_closes` for asyncio and trio code."""
        __tracebackhide__ = True
        self._close_args("wait_for_closes_async", count, connection, by)
        limit = self._wait_limit("wait_for_closes_async", timeout)
        ok = await self._waiters.wait_async(self._closed(count, connection, by), limit)
        self._after_closes(ok, count, connection, by, limit)

    # -- the assertions ----------------------------------------------------------------------

    def _records_for(self, method: str, connection: int | None) -> Sequence[ConnectionRecord]:
        """The records judged (lock held): all, or the ``connection``-th."""
        self._settle(closes=True)  # on the hub: read the closes clients already made
        with _reading(self._lock, self._conversation):
            records = list(self._conversation.connections)
        if connection is None:
            return records
        chosen = [record for record in records if record.id == connection]
        if not chosen:  # the client never made it: its failure, as a wait's timeout says
            self._fails(
                f"expected the client to close connection #{connection}, but it has not "
                f"arrived ({len(records)} connection(s) did)"
            )
        return chosen

    def _fails(self, diagnosis: str) -> None:
        __tracebackhide__ = True
        raise ConversationError(diagnosis).with_transcript(self.render_transcript())

    def assert_client_closed(self, *, connection: int | None = None) -> None:
        """Fail unless the client closed every connection (or the ``connection``-th, from
        1) before the peer did (see :meth:`wait_for_closes`), naming each connection
        still open or closed by the peer, and how; a peer no client connected to fails it
        too. On the hub, it first reads the closes clients already made; a peer served
        in your own event loop judges what that loop has read (``await
        wait_for_closes_async()`` first). A ``connection`` number that did not arrive
        fails it too (:class:`~fakepeer.ConversationError`); :class:`~fakepeer.ScriptError`
        for one that is no connection's number (0, -1, True, "1")."""
        __tracebackhide__ = True
        self._close_args("assert_client_closed", 1, connection, "client")
        records = self._records_for("assert_client_closed", connection)
        if not records:
            self._fails("the client closed no connection: no client connected")
        wrong = [record for record in records if not _counts(record, "client")]
        if wrong:
            lines = "".join(f"\n  {_ended(record)}" for record in wrong)
            some = f"connection #{connection}" if connection is not None else "every connection"
            self._fails(f"expected the client to close {some}, but{lines}")

    def assert_none_open(self) -> None:
        """Fail if a connection is still open: neither the client nor the peer closed it
        (a half-close of the peer is no close), naming each. Read as
        :meth:`assert_client_closed` reads."""
        __tracebackhide__ = True
        self._close_args("assert_none_open", 1, None, "any")
        records = self._records_for("assert_none_open", None)
        still = [record for record in records if record.ending is None]
        if still:
            lines = "".join(f"\n  {_ended(record)}" for record in still)
            self._fails(
                f"{len(still)} of {len(records)} connection(s) still open "
                f"(neither side closed them){lines}"
            )
