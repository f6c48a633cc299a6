"""Render claimed digests in a helper process while the worker sends.

A worker's time per message splits into CPU work that touches nothing shared
(reading the digest's rows, building its context, rendering, building the MIME
message) and the part that must stay in one place (sending, and recording the send
in the outbox: on SQLite only one process should write). :class:`Prerenderer` moves the
first part to a child process: the worker hands it the ids of each claimed batch, the
child reads those rows itself (read-only, its own connection) and streams back each
message, pickled, in id order, while the worker sends and records the previous one.
It uses a second core for the rendering (README: Delivery, and the daily-run rows
under Benchmarks).

The child is only an accelerator. It never sends and never writes, so it cannot
lose or duplicate mail; whatever it cannot do (a row it cannot render or pickle, a
child that died or never started) the worker renders itself, exactly as without it.
Messages are deterministic for a delivery, so both paths give the same bytes. The
child exits when the worker closes the pipe or dies.
"""

from __future__ import annotations

import logging
import pickle
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from email.message import EmailMessage
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.gc_tuning import relaxed_gc

log = logging.getLogger(__name__)

#: Seconds the worker waits for the helper's next message (its start included: the
#: first message of a run comes after the interpreter and the templates load).
RECEIVE_TIMEOUT = 60.0
#: Seconds a closing worker gives the helper to exit before killing it.
CLOSE_TIMEOUT = 10.0


class Prerenderer:
    """Renders a batch's messages ahead in a child process.

    ``submit(ids)`` after each claim (ids in the order they will be taken), then
    ``take(id)`` for the deliveries in that order: the message, or None when the
    caller must render it itself. ``take`` skips results of ids the caller passed
    over; ``drain(ids)`` drops what is left of a batch the caller is done with. The
    next batch may be submitted before the current one is taken: the child renders
    batches back to back.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pending: deque[int] = deque()
        # A database in this process's memory is not the child's to read.
        self._broken = _in_memory(settings.database_url)

    @property
    def started(self) -> bool:
        """Whether the child runs (and batches should go to it)."""
        return self._conn is not None and not self._broken

    def submit(self, ids: Sequence[int]) -> None:
        if self._broken or not ids:
            return
        try:
            if self._conn is None:
                self._start()
            assert self._conn is not None
            self._conn.send(list(ids))
            self._pending.extend(ids)
        except (OSError, EOFError, ValueError) as exc:
            self._fail(exc)

    def take(self, delivery_id: int) -> EmailMessage | None:
        """The pre-rendered message of ``delivery_id``, or None (render it yourself)."""
        if delivery_id not in self._pending:
            return None
        while self._pending and not self._broken:
            expected = self._pending.popleft()
            result = self._receive()
            if result is None:
                return None
            got, blob = result
            if got != expected:  # cannot happen unless the protocol is broken
                self._fail(RuntimeError(f"expected delivery {expected}, got {got}"))
                return None
            if got == delivery_id:
                return _load(blob)
        return None

    def drain(self, ids: Sequence[int]) -> None:
        """Read and drop what is left of the batch ``ids`` (a batch submitted after
        it stays queued)."""
        batch = set(ids)
        while self._pending and self._pending[0] in batch and not self._broken:
            self._pending.popleft()
            if self._receive() is None:
                return

    def close(self) -> None:
        conn, process = self._conn, self._process
        self._conn, self._process = None, None
        self._pending.clear()
        if conn is not None:
            conn.close()  # the child reads EOF and exits
        if process is not None:
            try:
                process.wait(timeout=CLOSE_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> Prerenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- internals

    def _start(self) -> None:
        # A fresh interpreter (``python -m newsletter.digest.prerender FD``) rather
        # than multiprocessing: nothing of the worker is inherited (scheduler threads,
        # pooled connections) and the worker's own __main__ is never re-imported.
        # One end of a socket pair is the child's; it reads EOF when the worker dies.
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "newsletter.digest.prerender", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._conn, self._process = Connection(ours.detach()), process
        self._conn.send(self._settings)

    def _receive(self) -> tuple[int, bytes | None] | None:
        assert self._conn is not None
        try:
            # A child that hangs (a database that stopped answering it, say) must not
            # hang the worker: past the timeout the worker renders the rest itself.
            if not self._conn.poll(RECEIVE_TIMEOUT):
                raise TimeoutError(f"no message from the helper in {RECEIVE_TIMEOUT:.0f} s")
            got: tuple[int, bytes | None] = self._conn.recv()
        except (OSError, EOFError) as exc:
            self._fail(exc)
            return None
        return got

    def _fail(self, exc: BaseException) -> None:
        log.warning("pre-rendering stopped (%s); the worker renders the rest itself", exc)
        self._broken = True
        self._pending.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _in_memory(url: str) -> bool:
    from sqlalchemy.engine import make_url

    parsed = make_url(url) if url else None
    return parsed is None or (
        parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")
    )


def _load(blob: bytes | None) -> EmailMessage | None:
    if blob is None:
        return None
    msg: EmailMessage = pickle.loads(blob)
    return msg


def _child(conn: Connection) -> None:
    """The child: settings first, then batches of ids until EOF."""
    from newsletter.db import make_engine, make_session_factory

    settings: Settings = conn.recv()
    engine = make_engine(settings.database_url)
    try:
        with relaxed_gc():
            _serve(conn, settings, make_session_factory(engine))
    except (EOFError, OSError):
        return  # the worker went away
    finally:
        engine.dispose()


def _serve(conn: Connection, settings: Settings, factory: sessionmaker[Session]) -> None:
    """For each batch of ids: read the rows, then send ``(id, pickled message or
    None)`` for each id, in order."""
    from newsletter.digest.deliver import PaperFields, delivery_message, load_rows
    from newsletter.digest.render import DigestPaper

    papers: dict[int, PaperFields] = {}  # both kept for the whole run
    memo: dict[tuple[Any, ...], DigestPaper] = {}
    while True:
        ids: list[int] = conn.recv()
        with factory() as session:
            rows = {row.id: row for row in load_rows(session, ids, papers)}
            session.rollback()
        for delivery_id in ids:
            blob: bytes | None = None
            row = rows.get(delivery_id)
            if row is not None:
                try:
                    msg = delivery_message(settings, row, row, papers, memo)
                    blob = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:  # the worker renders it and sees the error
                    blob = None
            conn.send((delivery_id, blob))


if __name__ == "__main__":
    _child(Connection(int(sys.argv[1])))
