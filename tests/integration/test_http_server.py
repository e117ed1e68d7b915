"""The local servers' error handling: a client gone mid-answer is not a server error."""

from __future__ import annotations

import pytest

from reconflow.local.http_server import LocalHTTPServer


def _handle(server: LocalHTTPServer, error: Exception) -> None:
    try:
        raise error
    except Exception:
        server.handle_error(None, ("127.0.0.1", 1))


@pytest.fixture
def server():
    from http.server import BaseHTTPRequestHandler

    made = LocalHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    yield made
    made.server_close()


@pytest.mark.parametrize("gone", [BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")])
def test_a_client_gone_mid_answer_prints_nothing(server: LocalHTTPServer, gone: Exception, capsys) -> None:
    _handle(server, gone)
    assert capsys.readouterr().err == ""


def test_a_real_server_error_is_still_printed_with_its_traceback(server: LocalHTTPServer, capsys) -> None:
    _handle(server, ValueError("a bug in the handler"))
    printed = capsys.readouterr().err
    assert "Traceback" in printed
    assert "ValueError: a bug in the handler" in printed
