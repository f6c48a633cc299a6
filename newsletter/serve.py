"""The long-running roles: ``serve`` (all in one), ``web``, ``scheduler``, ``worker``.

SIGTERM and SIGINT stop a role cleanly: the web server stops accepting, the delivery
worker stops between two messages and hands its unsent rows back, the scheduler
waits for the job that is running.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker

from newsletter.config import Settings
from newsletter.scheduler import DELIVER_EVERY, build_scheduler, run_worker_once
from newsletter.status import recorded

log = logging.getLogger(__name__)


@contextmanager
def stop_on_signals(stop: threading.Event, *, raise_exit: bool = False) -> Iterator[None]:
    """Set ``stop`` on SIGTERM/SIGINT (and raise SystemExit when ``raise_exit``, to
    break the web server's loop)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()
        if raise_exit:
            raise SystemExit(0)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _web_server(settings: Settings, factory: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    from waitress import create_server

    from newsletter.web.app import create_app

    app = create_app(settings, factory=factory)
    return create_server(app, host=settings.host, port=settings.port, threads=8)


def serve(
    settings: Settings,
    factory: sessionmaker[Session],
    *,
    worker: bool = True,
    scheduler: bool = True,
) -> None:
    """Web app in the foreground; scheduler (and delivery worker) in the background."""
    stop = threading.Event()
    sched = build_scheduler(settings, factory, worker=worker, stop=stop) if scheduler else None
    server = _web_server(settings, factory)
    log.info("listening on http://%s:%s/", settings.host, server.effective_port)
    print(
        f"Serving on {settings.base_url}/  (listening on {settings.host}:{server.effective_port})",
        flush=True,
    )
    if sched:
        sched.start()
    try:
        with stop_on_signals(stop, raise_exit=True):
            server.run()
    except SystemExit:
        pass
    finally:
        stop.set()
        server.close()
        if sched:
            sched.shutdown(wait=True)
        log.info("stopped")


def run_scheduler(settings: Settings, factory: sessionmaker[Session]) -> None:
    """Only the scheduler (ingest, plan, prune); deliveries are left to workers."""
    stop = threading.Event()
    sched = build_scheduler(settings, factory, worker=False, stop=stop)
    sched.start()
    with stop_on_signals(stop):
        stop.wait()
    sched.shutdown(wait=True)


def run_worker(
    settings: Settings, factory: sessionmaker[Session], *, until_idle: bool = False
) -> None:
    """Deliver due digests until stopped (or, ``until_idle``, until nothing is due)."""
    stop = threading.Event()
    with stop_on_signals(stop):
        while not stop.is_set():
            recorded(factory, "deliver", lambda: run_worker_once(factory, settings, stop))
            if until_idle:
                break
            stop.wait(DELIVER_EVERY)
