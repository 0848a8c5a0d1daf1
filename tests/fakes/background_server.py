"""Run a fake server's aiohttp app on a loopback socket from a background thread.

The thread owns its own event loop, from setup to close, so one instance can serve in-process
async tests (whatever loop they run on), sync tests and subprocesses alike, and nothing bound to
the server's loop leaks into a test's loop. Subclasses build the app and may hook into startup
and shutdown; see `BackgroundServer`.
"""

from __future__ import annotations

import abc
import asyncio
import socket
import ssl
import threading
from typing import ClassVar, Self

from aiohttp import web

__all__ = ["SHUTDOWN_GRACE", "STARTUP_TIMEOUT", "BackgroundServer"]

STARTUP_TIMEOUT = 10.0
# Grace given to in-flight handlers (e.g. a long scripted `delay`) when the server stops.
SHUTDOWN_GRACE = 0.25


class BackgroundServer(abc.ABC):
    """Serve `_build_app()` on 127.0.0.1 (a free port) from a daemon thread with its own loop.

    Use as a context manager or call `start()`/`stop()`. Subclasses set `name` (for error
    messages) and `thread_name` (the thread is called "<thread_name>:<port>"), implement
    `_build_app`, and may override `_on_serving` and `_on_stopping`.
    """

    name: ClassVar[str] = "fake server"
    thread_name: ClassVar[str] = "fake-server"

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        # The server's loop and stop event, set only while serving: other threads reach the
        # loop through these (call_soon_threadsafe), so `_loop is None` means "not started".
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._port: int | None = None
        self._startup_error: BaseException | None = None

    # -- subclass API ------------------------------------------------------------------------

    @abc.abstractmethod
    def _build_app(self) -> web.Application:
        """The app to serve; called once per start, on the server's loop."""

    def _on_serving(self) -> None:
        """Called on the server's loop once the socket is listening, before `_loop` is published
        and `start()` returns: the place to create objects that must belong to that loop."""
        return  # a hook, empty on purpose (not abstract)

    def _ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context to serve with (called once per start, on the server's loop); None, the
        default, serves plain HTTP."""
        return None

    async def _on_stopping(self) -> None:
        """Awaited on the server's loop when it stops, before the app is cleaned up (which gives
        in-flight handlers `SHUTDOWN_GRACE` seconds and then cancels them): the place to end
        long-lived connections cleanly."""
        return  # a hook, empty on purpose (not abstract)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind 127.0.0.1 on a free port and serve from a background thread; return when ready."""
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
        except OSError:
            sock.close()
            raise
        port = sock.getsockname()[1]
        ready = threading.Event()
        self._startup_error = None
        thread = threading.Thread(
            target=self._run, args=(sock, ready), name=f"{self.thread_name}:{port}", daemon=True
        )
        thread.start()
        if not ready.wait(STARTUP_TIMEOUT):
            raise RuntimeError(f"{self.name} did not start in time")
        if self._startup_error is not None:
            thread.join()
            raise RuntimeError(f"{self.name} failed to start") from self._startup_error
        self._thread = thread
        self._port = port
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and join the thread. Safe to call twice."""
        thread, loop, stop_requested = self._thread, self._loop, self._stop_requested
        if thread is None or loop is None or stop_requested is None:
            return
        loop.call_soon_threadsafe(stop_requested.set)
        thread.join(STARTUP_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError(f"{self.name} thread did not stop")
        self._thread = None
        self._loop = None
        self._stop_requested = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port served on; RuntimeError when not started."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        """Thread body: own the event loop from setup to close so nothing leaks across threads."""
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(loop, sock, ready))
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
            sock.close()
            if not ready.is_set():  # died before serving: let start() fail now, not time out
                self._startup_error = self._startup_error or RuntimeError("server thread died")
                ready.set()

    async def _serve(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, ready: threading.Event
    ) -> None:
        stop_requested = asyncio.Event()
        runner = web.AppRunner(self._build_app(), access_log=None, shutdown_timeout=SHUTDOWN_GRACE)
        try:
            await runner.setup()
            await web.SockSite(runner, sock, ssl_context=self._ssl_context()).start()
        except BaseException as exc:
            self._startup_error = exc
            await runner.cleanup()
            ready.set()
            return
        self._on_serving()
        self._loop = loop
        self._stop_requested = stop_requested
        ready.set()
        try:
            await stop_requested.wait()
        finally:
            await self._on_stopping()
            await runner.cleanup()
