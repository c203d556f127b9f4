"""An ASGI app served by uvicorn on a loopback port in a background thread, and raw-socket
HTTP/1.1 exchanges for clients no HTTP library would be (slow-loris, stalled bodies)."""

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from tests.serve_app.app_factory import error_shape_problems

START_TIMEOUT_S = 10.0
SLOW_PATH = "/api/v1/generate"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[int]:
    """Serve `app` on 127.0.0.1 (lifespan included); yields the port, stops on exit."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, list[str]]
    body: bytes
    elapsed_s: float  # from the first byte sent to the end of the response headers
    closed_by_server: bool  # the server closed the connection after the response


def open_request(port: int, head: bytes) -> tuple[socket.socket, float]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    started = time.monotonic()
    sock.sendall(head)
    return sock, started


def trickle_until_answered(
    sock: socket.socket, started: float, drip: bytes, every_s: float, limit_s: float
) -> RawResponse | None:
    """Send `drip` every `every_s` (none if empty) until the server answers, or None after
    `limit_s`; then read the response to its end or to a 2 s silence."""
    while time.monotonic() - started < limit_s:
        readable, _, _ = select.select([sock], [], [], every_s)
        if readable:
            return read_response(sock, started)
        if drip:
            try:
                sock.sendall(drip)
            except OSError:  # the server closed on us: read what it sent
                return read_response(sock, started)
    return None


def read_response(sock: socket.socket, started: float) -> RawResponse:
    data, answered, closed = b"", 0.0, False
    sock.settimeout(2.0)
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
        if not answered and b"\r\n\r\n" in data:
            answered = time.monotonic() - started
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    status = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/") else 0
    return RawResponse(status, headers, body, answered, closed)


def slow_head(request_id: str) -> bytes:
    """Headers promising 1000 bytes of body, and the first few of them."""
    return (
        f"POST {SLOW_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: 1000\r\nX-Request-ID: {request_id}\r\n\r\n"
        '{"model_id": "demo", "prompt": "'
    ).encode()


def assert_cut_off(response: RawResponse | None, request_id: str) -> None:
    """408 in the route's error shape, with the caller's request id; connection closed."""
    assert response is not None, "the slow request was never answered"
    assert response.status == 408, response
    assert response.headers.get("x-request-id") == [request_id]
    assert response.headers.get("connection") == ["close"] and response.closed_by_server
    assert not error_shape_problems(SLOW_PATH, 408, response.body), response.body
