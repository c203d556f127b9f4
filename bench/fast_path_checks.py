"""The pure parts of `bench/check_fast_path.py`, and its raw HTTP client.

`raw_request` uses `http.client`, which keeps every header line as sent (httpx and requests
merge repeated headers), so a response's X-Request-ID lines can be counted.
"""

import contextlib
import http.client
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.soak_traffic import parse_sse
from serve_app.http.middleware import REQUEST_ID_PATTERN

GENERATED_ID = re.compile(
    r"^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
SS_LINE = re.compile(
    r"^LISTEN\s+\d+\s+\d+\s+(?P<addr>\S+):(?P<port>\d+)\s+\S+(?:\s+(?P<rest>.*))?$"
)
SS_PROCESS = re.compile(r'\("(?P<name>[^"]+)",pid=(?P<pid>\d+)')
ACCESS_START = '{"request_id"'
HAPROXY_PORTS = {8404: "HAProxy stats (8404)", 9101: "HAProxy metrics (9101)"}
DIRECT_INGRESS_PORTS = range(30000, 31001)  # RAY_SERVE_DIRECT_INGRESS_{MIN,MAX}_HTTP_PORT
HAPROXY_CFG_WORDS = ("forward", "x-request-id", "bind ", "server ", "x-real-ip")
HAPROXY_SOCKET_MAX = 97  # HAProxy: "... too long (max 97)"
NODE_ID_CHARS = 56  # Ray puts HAProxy's files in <dir>/<node id>/<name>
HAPROXY_SOCKETS = ("RAY_SERVE_HAPROXY_SOCKET_PATH", "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH")


@dataclass
class Check:
    """One row of the report: `ok` None is a fact that passes or fails nothing."""

    name: str
    ok: bool | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    lines: list[tuple[float, str]] = field(default_factory=list)  # streams: (s, line)
    elapsed_s: float = 0.0

    def all(self, name: str) -> list[str]:
        """Every value of header `name`, one per header line received."""
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    port: int,
    method: str,
    path: str,
    *,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    source: str | None = None,
    timeout_s: float = 30.0,
) -> RawResponse:
    """One request on a fresh connection to 127.0.0.1:`port` (from `source`, if given);
    an event stream is read line by line with the time each line arrived."""
    source_address = (source, 0) if source else None
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=timeout_s, source_address=source_address
    )
    payload = json.dumps(body).encode() if body is not None else None
    sent = {"content-type": "application/json"} if payload is not None else {}
    sent.update(headers or {})
    began = time.monotonic()
    try:
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        lines: list[tuple[float, str]] = []
        if "text/event-stream" in (response.getheader("content-type") or ""):
            while raw := response.readline():
                lines.append((time.monotonic() - began, raw.decode().rstrip("\r\n")))
            data = "\n".join(line for _, line in lines).encode()
        else:
            data = response.read()
        elapsed = time.monotonic() - began
        return RawResponse(response.status, response.getheaders(), data, lines, elapsed)
    finally:
        conn.close()


def request_id_verdict(values: Sequence[str], sent: str | None) -> tuple[bool, str]:
    """Whether a response's X-Request-ID lines are right for what the caller sent: exactly
    one line; the caller's id when well formed, else a new uuid-like one."""
    shown = [value[:40] + ("..." if len(value) > 40 else "") for value in values]
    detail = f"{len(values)} header line(s): {shown}"
    if len(values) != 1:
        return False, detail
    value = values[0]
    if sent is not None and REQUEST_ID_PATTERN.match(sent.encode()):
        return value == sent, detail + (" = sent" if value == sent else " != sent")
    return bool(GENERATED_ID.match(value)) and value != sent, detail


def sse_verdict(lines: Sequence[tuple[float, str]], api: str) -> tuple[bool, str]:
    """An SSE body: events counted, the terminal event ([DONE] / message_stop) last and not
    first, and the time of the first and the last line."""
    events = parse_sse(line for _, line in lines)
    if not events:
        return False, "no SSE events"

    def terminal(index: int) -> bool:
        event = events[index]
        return event.data == "[DONE]" if api == "openai" else event.event == "message_stop"

    ends = [i for i in range(len(events)) if terminal(i)]
    times = [t for t, line in lines if line]
    ok = len(events) >= 3 and ends == [len(events) - 1]
    detail = (
        f"{len(events)} events, terminal at {ends}, first line {times[0]:.3f} s, "
        f"last {times[-1]:.3f} s"
    )
    return ok, detail


def parse_listeners(ss_output: str) -> list[dict[str, Any]]:
    """`ss -ltnp` lines as {address, port, process, pid} (process '' when ss shows none)."""
    listeners = []
    for line in ss_output.splitlines():
        match = SS_LINE.match(line.strip())
        if not match:
            continue
        process = SS_PROCESS.search(match.group("rest") or "")
        listeners.append(
            {
                "address": match.group("addr"),
                "port": int(match.group("port")),
                "process": process.group("name") if process else "",
                "pid": int(process.group("pid")) if process else None,
            }
        )
    return listeners


def listener_rows(listeners: Sequence[Mapping[str, Any]], gateway_port: int) -> list[Check]:
    """Facts: who listens on the gateway port and HAProxy's ports, and where the Serve proxy
    and the ingress replica's own HTTP server (direct ingress) listen."""
    named = {gateway_port: "gateway port", **HAPROXY_PORTS}

    def shown(items: Iterable[Mapping[str, Any]]) -> str:
        return ", ".join(f"{x['address']}:{x['port']} {x['process']}" for x in items) or "none"

    rows = [
        Check(f"j {label}", None, shown(x for x in listeners if x["port"] == port))
        for port, label in named.items()
    ]
    others = [
        x
        for x in listeners
        if x["port"] not in named
        and ("ProxyActor" in x["process"] or x["port"] in DIRECT_INGRESS_PORTS)
    ]
    return [*rows, Check("j Serve proxy / direct-ingress ports", None, shown(others))]


def serve_env(environ: bytes) -> dict[str, str]:
    """The RAY_SERVE_* and GATEWAY_FAST_PATH variables of a /proc/<pid>/environ."""
    pairs = (item.decode(errors="replace").partition("=") for item in environ.split(b"\0"))
    return {k: v for k, _, v in pairs if k.startswith(("RAY_SERVE", "GATEWAY_FAST"))}


def haproxy_cfg_lines(text: str) -> list[str]:
    """The lines of an haproxy.cfg on binds, servers, forwarding and request ids."""
    lines = (line.strip() for line in text.splitlines())
    return [
        ln
        for ln in lines
        if not ln.startswith("#") and any(w in ln.lower() for w in HAPROXY_CFG_WORDS)
    ]


def access_ips(lines: Iterable[str], request_ids: Iterable[str]) -> dict[str, str]:
    """{request id: client_ip} from `llm_gateway.access` JSON lines, wherever they sit in a
    log line (alone, after a log prefix, or as the escaped `message` of a JSON log)."""
    wanted, found = set(request_ids), {}
    decoder = json.JSONDecoder()
    for line in lines:
        text = line
        if '\\"request_id\\"' in line:
            try:
                text = str(json.loads(line).get("message", ""))
            except (ValueError, AttributeError):
                continue
        start = text.find(ACCESS_START)
        if start < 0:
            continue
        try:
            record, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if record.get("request_id") in wanted and "client_ip" in record:
            found[record["request_id"]] = str(record["client_ip"])
    return found


def socket_path_lengths(environ: Mapping[str, str]) -> dict[str, int]:
    """The length of each HAProxy unix socket path once Ray has put the node id in it
    (`HAProxyManager._per_node`: dir/<node id>/file)."""
    lengths = {}
    for name in HAPROXY_SOCKETS:
        folder, file_name = environ[name].rsplit("/", 1)
        lengths[name] = len(f"{folder}/{'0' * NODE_ID_CHARS}/{file_name}")
    return lengths


def read_access_ips(ray_dir: Path, request_ids: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """`access_ips` over every log file of the Ray sessions under `ray_dir`, and the files
    (relative to `ray_dir`) that held one of the ids."""
    ids = list(request_ids)
    found: dict[str, str] = {}
    where: list[str] = []
    for path in sorted((ray_dir / "ray").glob("session_2*/logs/**/*")):
        if not path.is_file() or path.suffix not in (".log", ".err", ".out"):
            continue
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if "fpip-" in ln]
        hits = access_ips(lines, ids)
        if hits:
            found.update(hits)
            where.append(str(path.relative_to(ray_dir)))
    return found, where


@dataclass(frozen=True)
class IpProbe:
    """One model request sent for the client-IP check, and the per-IP counter it hit:
    `remaining` (x-ratelimit-remaining-requests) is `ip_rpm - 1` only for a new address."""

    source: str
    xff: str | None
    remaining: int | None

    @property
    def label(self) -> str:
        return f"{self.source}" + (f" + XFF {self.xff}" if self.xff else "")


def client_ip_checks(
    seen: Mapping[str, str], probes: Mapping[str, IpProbe], ip_rpm: int
) -> list[Check]:
    """What the gateway took for each probe's client address: the access line's client_ip
    when there is one, else whether the probe started a new per-IP counter. Verdicts: a peer
    outside `trusted_proxies` (127.0.0.2) cannot choose its address with X-Forwarded-For, and
    127.0.0.2 is not taken for 127.0.0.1 (whose counter earlier requests already used)."""
    new = {rid: probe.remaining == ip_rpm - 1 for rid, probe in probes.items()}
    facts = "; ".join(
        f"{p.label} -> {seen.get(rid, 'no access line')}, "
        + ("new IP counter" if new[rid] else f"shared IP counter ({p.remaining} left)")
        for rid, p in probes.items()
    )
    rows = [Check("f client IP as seen", None, facts)]
    spoof = [rid for rid, p in probes.items() if p.source == "127.0.0.2" and p.xff]
    plain = [rid for rid, p in probes.items() if p.source == "127.0.0.2" and not p.xff]
    if not spoof or not plain:
        return [*rows, Check("f client IP checks", False, "probes missing")]
    s_rid, p_rid = spoof[0], plain[0]
    s_ok = seen[s_rid] != probes[s_rid].xff if s_rid in seen else not new[s_rid]
    p_ok = seen[p_rid] == "127.0.0.2" if p_rid in seen else new[p_rid]
    by = "access line" if s_rid in seen else "IP counter"
    rows.append(Check("f untrusted peer cannot spoof XFF", s_ok, f"by {by}"))
    rows.append(Check("f 127.0.0.2 not taken for 127.0.0.1", p_ok, f"by {by}"))
    return rows


def ledger_ids(path: Path, ids: Sequence[str]) -> set[str]:
    """Which of `ids` the SQLite ledger at `path` holds (none before its first flush)."""
    if not path.exists() or not ids:
        return set()
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        marks = ",".join("?" * len(ids))
        with contextlib.suppress(sqlite3.OperationalError):
            rows = db.execute(f"SELECT request_id FROM usage WHERE request_id IN ({marks})", ids)
            return {str(row[0]) for row in rows}
    return set()


def adapt_config(
    document: Mapping[str, Any], port: int, upstream_url: str, ledger_url: str, ip_rpm: int
) -> dict[str, Any]:
    """configs/bench.yaml for one check run: its port, the fake provider, a fresh ledger,
    per-key limits (so a key created with a low rpm is limited), per-IP limits and the
    access log."""
    doc: dict[str, Any] = json.loads(json.dumps(dict(document)))
    doc.setdefault("http_options", {})["port"] = port
    for app in doc.get("applications", []):
        args = app.setdefault("args", {})
        commercial = args.setdefault("commercial", {})
        commercial.setdefault("openai", {})["base_url"] = f"{upstream_url}/v1"
        commercial.setdefault("anthropic", {})["base_url"] = upstream_url
        args.setdefault("ledger", {})["url"] = ledger_url
        args["rate_limits"] = {**args.get("rate_limits", {}), "key_rpm": 100_000, "ip_rpm": ip_rpm}
        args["logging"] = {**args.get("logging", {}), "access_log": True, "level": "INFO"}
    return doc


def mark(ok: bool | None) -> str:
    return "info" if ok is None else ("PASS" if ok else "**FAIL**")


def markdown(results: Mapping[str, Sequence[Check]]) -> str:
    """One table: a row per check, a result column and a detail column per mode."""
    modes = list(results)
    names: list[str] = []
    for checks in results.values():
        names += [check.name for check in checks if check.name not in names]
    cells = {(mode, c.name): c for mode, checks in results.items() for c in checks}
    head = "| check | " + " | ".join(f"{m} | {m}: detail" for m in modes) + " |"
    rows = [head, "|---|" + "---|---|" * len(modes)]
    for name in names:
        row = [name]
        for mode in modes:
            check = cells.get((mode, name))
            detail = check.detail.replace("|", "\\|").replace("\n", " ") if check else ""
            row += [mark(check.ok) if check else "-", detail]
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)
