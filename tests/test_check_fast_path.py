"""The fast-path check's pure parts (bench/fast_path_checks.py) and its raw HTTP client
against a local server that repeats a header. No Ray, no gateway."""

import asyncio
import contextlib
import http.server
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from starlette.types import Message, Receive, Scope, Send

from bench import fast_path_checks as fp
from bench import fast_path_procs as procs
from bench.soak_procs import REPO
from serve_app.http.proxy_callback import DropMalformedRequestId, request_id_middlewares
from serve_app.runtime.config_check import check_file

SS_OUTPUT = """\
State  Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess
LISTEN 0      4096       127.0.0.1:53111      0.0.0.0:*    users:(("haproxy",pid=30158,fd=7))
LISTEN 0      4096         0.0.0.0:8404       0.0.0.0:*    users:(("haproxy",pid=30158,fd=9))
LISTEN 0      2048       127.0.0.1:30000    0.0.0.0:* users:(("ray::ServeRepli",pid=30057,fd=52))
LISTEN 0      4096               *:40731            *:*
"""


def test_request_id_verdict_counts_lines_and_checks_values() -> None:
    generated = "d383f65c-069c-4c2c-bb24-9001a3b90da9"
    assert fp.request_id_verdict([generated], None)[0]
    assert fp.request_id_verdict(["b41980ee2a5e418a91e441cc59766f6a"], None)[0]
    assert not fp.request_id_verdict(["not a uuid"], None)[0]
    assert fp.request_id_verdict(["fp-1"], "fp-1")[0]
    assert not fp.request_id_verdict(["fp-2"], "fp-1")[0]
    assert not fp.request_id_verdict(["fp-1", "fp-1"], "fp-1")[0]
    assert not fp.request_id_verdict([], None)[0]
    # A malformed id must be replaced, once: echoing it, or adding a second line, fails.
    assert fp.request_id_verdict([generated], "bad id")[0]
    assert not fp.request_id_verdict(["bad id"], "bad id")[0]
    ok, detail = fp.request_id_verdict([generated, "a" * 300], "a" * 300)
    assert not ok and "2 header line(s)" in detail and "a" * 41 not in detail


def timed(lines: list[str]) -> list[tuple[float, str]]:
    return [(0.01 * i, line) for i, line in enumerate(lines)]


def test_sse_verdict_needs_the_terminal_event_last() -> None:
    chunk = 'data: {"choices": [{"delta": {"content": "hi"}}]}'
    good = timed([chunk, "", chunk, "", chunk, "", "data: [DONE]", ""])
    ok, detail = fp.sse_verdict(good, "openai")
    assert ok and detail.startswith("4 events, terminal at [3]")
    assert not fp.sse_verdict(timed([chunk, "", chunk, "", chunk, ""]), "openai")[0]
    assert not fp.sse_verdict(timed(["data: [DONE]", "", chunk, "", chunk, ""]), "openai")[0]
    assert not fp.sse_verdict([], "openai")[0]
    events = ["message_start", "content_block_delta", "message_delta", "message_stop"]
    lines = [part for name in events for part in (f"event: {name}", "data: {}", "")]
    assert fp.sse_verdict(timed(lines), "anthropic")[0]
    assert not fp.sse_verdict(timed(lines[:-3]), "anthropic")[0]


def test_parse_listeners_reads_address_port_and_process() -> None:
    listeners = fp.parse_listeners(SS_OUTPUT)
    assert [(x["address"], x["port"], x["process"]) for x in listeners] == [
        ("127.0.0.1", 53111, "haproxy"),
        ("0.0.0.0", 8404, "haproxy"),
        ("127.0.0.1", 30000, "ray::ServeRepli"),
        ("*", 40731, ""),
    ]
    assert listeners[0]["pid"] == 30158 and listeners[3]["pid"] is None


def test_access_ips_finds_json_lines_in_any_wrapping() -> None:
    record = {"request_id": "fpip-a", "method": "GET", "path": "/x", "client_ip": "127.0.0.2"}
    plain = json.dumps(record)
    prefixed = "INFO 2026-11-27 09:12:05,561 gateway_Gateway abc -- " + json.dumps(
        {**record, "request_id": "fpip-b", "client_ip": "203.0.113.9"}
    )
    as_json_log = json.dumps(
        {"levelname": "INFO", "message": json.dumps({**record, "request_id": "fpip-c"})}
    )
    other = json.dumps({**record, "request_id": "fpip-z"})
    lines = [plain, prefixed, as_json_log, other, "garbage {", '{"request_id": "fpip-a"']
    found = fp.access_ips(lines, ["fpip-a", "fpip-b", "fpip-c"])
    assert found == {"fpip-a": "127.0.0.2", "fpip-b": "203.0.113.9", "fpip-c": "127.0.0.2"}


def test_read_access_ips_walks_the_session_logs(tmp_path: Path) -> None:
    logs = tmp_path / "ray" / "session_2026-11-27_09-00-00_1_2" / "logs" / "serve"
    logs.mkdir(parents=True)
    line = json.dumps({"request_id": "fpip-a", "client_ip": "127.0.0.1"})
    (logs / "replica_gateway_Gateway_x.log").write_text(f"noise\n{line}\n")
    (logs / "ignored.bin").write_text(line)
    found, where = fp.read_access_ips(tmp_path, ["fpip-a"])
    assert found == {"fpip-a": "127.0.0.1"}
    assert where == ["ray/session_2026-11-27_09-00-00_1_2/logs/serve/replica_gateway_Gateway_x.log"]


def probes(remaining: tuple[int, int, int, int]) -> dict[str, fp.IpProbe]:
    sent: list[tuple[str, str | None]] = [
        ("127.0.0.2", None),
        ("127.0.0.2", "203.0.113.10"),
        ("127.0.0.1", "203.0.113.11"),
        ("127.0.0.1", None),
    ]
    return {
        f"r{i}": fp.IpProbe(s, x, left) for i, ((s, x), left) in enumerate(zip(sent, remaining))
    }


def verdicts(checks: list[fp.Check]) -> dict[str, bool | None]:
    return {check.name: check.ok for check in checks}


def test_client_ip_checks_from_the_ip_counters() -> None:
    # Serve proxy: 127.0.0.2 gets its own counter, and its XFF is not believed (shared).
    serve = verdicts(fp.client_ip_checks({}, probes((99, 98, 99, 80)), ip_rpm=100))
    assert serve["f untrusted peer cannot spoof XFF"] is True
    assert serve["f 127.0.0.2 not taken for 127.0.0.1"] is True
    # HAProxy: every peer is HAProxy's 127.0.0.1 (shared counter), whose XFF is believed.
    haproxy = verdicts(fp.client_ip_checks({}, probes((85, 99, 99, 84)), ip_rpm=100))
    assert haproxy["f untrusted peer cannot spoof XFF"] is False
    assert haproxy["f 127.0.0.2 not taken for 127.0.0.1"] is False
    assert verdicts(fp.client_ip_checks({}, {}, 100))["f client IP checks"] is False


def test_client_ip_checks_prefer_the_access_lines() -> None:
    seen = {"r0": "127.0.0.1", "r1": "203.0.113.10", "r2": "203.0.113.11", "r3": "127.0.0.1"}
    checks = fp.client_ip_checks(seen, probes((99, 98, 99, 80)), ip_rpm=100)
    assert verdicts(checks)["f untrusted peer cannot spoof XFF"] is False
    assert verdicts(checks)["f 127.0.0.2 not taken for 127.0.0.1"] is False
    assert "127.0.0.2 + XFF 203.0.113.10 -> 203.0.113.10" in checks[0].detail


def test_adapt_config_gives_a_valid_gateway_config() -> None:
    document = yaml.safe_load((REPO / "configs/bench.yaml").read_text())
    adapted = fp.adapt_config(document, 12345, "http://127.0.0.1:9", "sqlite:////tmp/x.db", 50)
    args = adapted["applications"][0]["args"]
    assert adapted["http_options"]["port"] == 12345
    assert args["commercial"]["openai"]["base_url"] == "http://127.0.0.1:9/v1"
    assert args["commercial"]["anthropic"]["base_url"] == "http://127.0.0.1:9"
    assert args["rate_limits"] == {"key_rpm": 100_000, "ip_rpm": 50}
    assert args["logging"]["access_log"] is True
    assert document["http_options"]["port"] != 12345  # the original is left alone


def test_adapted_config_passes_the_config_check(tmp_path: Path) -> None:
    document = yaml.safe_load((REPO / "configs/bench.yaml").read_text())
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(fp.adapt_config(document, 1, "http://x", "sqlite:///a.db", 5)))
    [config] = check_file(path, {"GATEWAY_ADMIN_KEY": "sk-admin-0123456789abcdef"})
    assert config.rate_limits.ip_rpm == 5 and config.auth.enabled


def test_socket_path_lengths_add_the_node_id() -> None:
    lengths = fp.socket_path_lengths(
        {
            "RAY_SERVE_HAPROXY_SOCKET_PATH": "/tmp/haproxy-serve/admin.sock",
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "/tmp/llm-gateway-haproxy-8000/metrics.sock",
        }
    )
    assert lengths["RAY_SERVE_HAPROXY_SOCKET_PATH"] == len("/tmp/haproxy-serve//admin.sock") + 56
    assert lengths["RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"] == 99 > fp.HAPROXY_SOCKET_MAX


def test_ledger_ids(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    assert fp.ledger_ids(path, ["a"]) == set()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE other (x)")
    assert fp.ledger_ids(path, ["a"]) == set()  # no usage table yet
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE usage (request_id TEXT)")
        db.executemany("INSERT INTO usage VALUES (?)", [("a",), ("b",)])
    assert fp.ledger_ids(path, ["a", "c"]) == {"a"}


def test_markdown_has_a_row_per_check_and_columns_per_mode() -> None:
    table = fp.markdown(
        {
            "on": [fp.Check("x", True, "a|b"), fp.Check("y", False, "bad")],
            "off": [fp.Check("x", None, "fact")],
        }
    )
    lines = table.splitlines()
    assert lines[0] == "| check | on | on: detail | off | off: detail |"
    assert lines[2] == "| x | PASS | a\\|b | info | fact |"
    assert lines[3] == "| y | **FAIL** | bad | - |  |"


class RepeatingHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("X-Request-ID", "one")
        self.send_header("X-Request-ID", "two")
        if self.path == "/stream":
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b"data: 1\n\ndata: [DONE]\n\n")
            return
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        peer = self.client_address[0]
        self.wfile.write(
            json.dumps({"peer": peer, "xff": self.headers["x-forwarded-for"]}).encode()
        )

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def repeating_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RepeatingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_raw_request_keeps_repeated_headers(repeating_server: int) -> None:
    response = fp.raw_request(
        repeating_server,
        "GET",
        "/",
        headers={"x-forwarded-for": "203.0.113.9"},
        source="127.0.0.2",
        timeout_s=5,
    )
    assert response.status == 200 and response.all("x-request-id") == ["one", "two"]
    assert response.json() == {"peer": "127.0.0.2", "xff": "203.0.113.9"}
    stream = fp.raw_request(repeating_server, "GET", "/stream", timeout_s=5)
    assert [line for _, line in stream.lines] == ["data: 1", "", "data: [DONE]", ""]
    ok, detail = fp.sse_verdict(stream.lines, "openai")
    assert not ok and detail.startswith("2 events, terminal at [1]")  # fewer than 3 events


def test_listener_rows_name_the_gateway_haproxy_and_direct_ingress_ports() -> None:
    listeners = fp.parse_listeners(SS_OUTPUT)
    rows = {row.name: row.detail for row in fp.listener_rows(listeners, 53111)}
    assert rows["j gateway port"] == "127.0.0.1:53111 haproxy"
    assert rows["j HAProxy stats (8404)"] == "0.0.0.0:8404 haproxy"
    assert rows["j HAProxy metrics (9101)"] == "none"
    assert rows["j Serve proxy / direct-ingress ports"] == "127.0.0.1:30000 ray::ServeRepli"


def test_serve_env_and_haproxy_cfg_lines() -> None:
    environ = b"PATH=/bin\0RAY_SERVE_ENABLE_HA_PROXY=1\0GATEWAY_FAST_PATH=on\0A=RAY_SERVE_X\0"
    assert fp.serve_env(environ) == {"RAY_SERVE_ENABLE_HA_PROXY": "1", "GATEWAY_FAST_PATH": "on"}
    cfg = """frontend http_frontend
    bind 127.0.0.1:8000
    # Generate a request ID here when the client did not provide one (x-request-id)
    http-request set-header x-request-id %[unique-id] if !{ req.hdr(x-request-id) -m found }
    acl routes path -i /-/routes
    server SERVE_REPLICA_gateway 127.0.0.1:30000 check
"""
    assert fp.haproxy_cfg_lines(cfg) == [
        "bind 127.0.0.1:8000",
        "http-request set-header x-request-id %[unique-id] if !{ req.hdr(x-request-id) -m found }",
        "server SERVE_REPLICA_gateway 127.0.0.1:30000 check",
    ]


async def run_fix(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(list(scope["headers"]))

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    await DropMalformedRequestId(app)({"type": "http", "headers": headers}, receive, send)
    return seen[0]


def test_the_fix_prototype_drops_only_malformed_request_ids() -> None:
    other = (b"accept", b"*/*")
    assert asyncio.run(run_fix([other, (b"x-request-id", b"ok-1")])) == [
        other,
        (b"x-request-id", b"ok-1"),
    ]
    assert asyncio.run(run_fix([(b"x-request-id", b"bad id"), other])) == [other]
    assert asyncio.run(run_fix([(b"x-request-id", b"a" * 300)])) == []
    [middleware] = request_id_middlewares()
    assert middleware.cls is DropMalformedRequestId


def test_wait_until_and_stop_group() -> None:
    calls = iter([False, False, True])
    assert procs.wait_until(lambda: next(calls), lambda: True, timeout_s=5) < 5
    with pytest.raises(RuntimeError, match="exited"):
        procs.wait_until(lambda: False, lambda: False, timeout_s=5)
    with pytest.raises(RuntimeError, match="not ready"):
        procs.wait_until(lambda: False, lambda: True, timeout_s=0.6)
    child = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30; wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(procs.tree_of(child.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the shell and its two sleeps
        stopped = procs.stop_group(child.pid, signal.SIGTERM, timeout_s=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert stopped.total == 3 and stopped.killed == [] and stopped.took_s < 10
