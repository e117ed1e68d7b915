"""The threading HTTP server under the local stack's API gateway and console, served on a thread.

``http.server`` prints a traceback for every client that goes away mid-answer (a browser leaving a
page, a poller stopped): a ``ConnectionError`` while answering is the client's doing, not the
server's, so it is dropped quietly; anything else is still printed.
"""

from __future__ import annotations

import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any

SHUTDOWN_JOIN_S = 5.0  # how long close() waits for the serving thread


class LocalHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a request still being answered never holds the stack's shutdown
    _serving: threading.Thread | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipe, ConnectionReset, ...
            return
        super().handle_error(request, client_address)

    def serve_in_background(self, name: str) -> None:
        """``serve_forever`` on a daemon thread called ``name``; ``close`` ends it."""
        self._serving = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        self._serving.start()

    def close(self) -> None:
        """Stop serving, release the socket and wait for the serving thread."""
        if self._serving is not None:  # shutdown() waits for serve_forever: only when it runs
            self.shutdown()
            self._serving.join(timeout=SHUTDOWN_JOIN_S)
        self.server_close()
