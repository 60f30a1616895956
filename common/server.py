"""uvicorn's server, exiting 0 after a graceful shutdown on SIGTERM or SIGINT.

uvicorn re-raises the signal it caught once it has shut down, so the process ends "killed by
SIGTERM" (status 143) even after a clean shutdown. An orchestrator reads that as a crash; a
process that drained its connections and stopped as asked exits 0 here.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Generator

import uvicorn


__all__ = ["GracefulServer"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
