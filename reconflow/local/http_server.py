"""The threading HTTP server under the local stack's API gateway and console.

``http.server`` prints a traceback for every client that goes away mid-answer (a browser leaving a
page, a poller stopped): a ``ConnectionError`` while answering is the client's doing, not the
server's, so it is dropped quietly; anything else is still printed.
"""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any


class LocalHTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a request still being answered never holds the stack's shutdown

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipe, ConnectionReset, ...
            return
        super().handle_error(request, client_address)
