"""Check the gateway under Ray 2.60's HAProxy fast path (GATEWAY_FAST_PATH=on) and under
Serve's own proxy (off): routes, streaming, request ids, ledger, client IPs, rate limits,
error shape, start/stop times and the ports each mode opens.

    .venv/bin/python -m bench.check_fast_path --mode both      # ~5 min on 2 cores

Per mode it starts the fake provider (`bench/soak_upstream.py`) and
`python -m serve_app.runtime.launch <copy of configs/bench.yaml>` (free port, the fake provider, a
fresh SQLite ledger, per-key and per-IP limits, access log on) in its own process group, with
Ray's files under /tmp/fastpath/<run>/<mode>; runs the checks, stops the group (SIGINT, as
Ctrl-C; `--signal TERM`) and reads the Ray logs for the access lines. The client address the
gateway saw is read from those lines, else from the per-IP counter each probe hit (a new
address starts at ip_rpm - 1 remaining). HAProxy's files go to /tmp/fph-<port> (launch.py's
own paths are too long for HAProxy's sockets: `--launch-haproxy-paths` keeps them);
`--request-id-fix` tries serve_app/http/proxy_callback.py. Markdown table on stdout,
JSON to `--out`;
exit status 1 when a check fails (rows marked `info` are facts, not checks).
"""

import argparse
import contextlib
import http.client
import json
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench import fast_path_checks as fp
from bench import fast_path_procs as procs
from bench.soak_procs import REPO, Managed, free_port, gateway_env, start_upstream
from serve_app.runtime.config_check import check_file
from serve_app.runtime.launch import HAPROXY_FILES, apply_fast_path

OPENAI_MODEL, ANTHROPIC_MODEL = "gpt-4o-mini", "claude-haiku-4-5"
REPLY = "Hello from fake"
FIX = "serve_app.http.proxy_callback:request_id_middlewares"
IP_RPM = 1000  # per client IP; tighter than key_rpm, looser than the limited key


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mode", choices=("on", "off", "both"), default="both")
    p.add_argument("--out", type=Path, default=Path("/tmp/fastpath/report.json"))
    p.add_argument("--config", type=Path, default=REPO / "configs/bench.yaml")
    p.add_argument("--cpus", type=float, default=2.0, help="logical CPUs Ray may hand out")
    p.add_argument("--signal", choices=("INT", "TERM"), default="INT", help="to stop the group")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument("--stop-timeout", type=float, default=120.0, help="then SIGKILL")
    p.add_argument(
        "--request-id-fix",
        action="store_true",
        help="try serve_app/http/proxy_callback.py (Ray's HTTP proxy callback) in both modes",
    )
    p.add_argument(
        "--launch-haproxy-paths",
        action="store_true",
        help="keep serve_app.runtime.launch's HAProxy file paths "
        "(else short ones under /tmp/fph-PORT:\n"
        "HAProxy refuses unix socket paths over 97 chars, and Ray adds the node id to them)",
    )
    return p.parse_args(argv)


@dataclass
class Run:
    """One mode's gateway and what was found about it."""

    mode: str
    port: int
    admin_key: str
    workdir: Path
    checks: list[fp.Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    ip_probes: dict[str, fp.IpProbe] = field(default_factory=dict)

    def req(self, method: str, path: str, key: str | None = None, **kw: Any) -> fp.RawResponse:
        headers = dict(kw.pop("headers", None) or {})
        if key:
            headers["authorization"] = f"Bearer {key}"
        return fp.raw_request(self.port, method, path, headers=headers, **kw)

    def add(self, name: str, ok: bool | None, detail: str) -> None:
        self.checks.append(fp.Check(name, ok, detail))


def chat(stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": OPENAI_MODEL,
        "messages": [{"role": "user", "content": "say hello"}],
        "max_tokens": 16,
    }
    return {**body, "stream": True, "stream_options": {"include_usage": True}} if stream else body


def native(model_id: str = OPENAI_MODEL) -> dict[str, Any]:
    return {"prompt": "say hello", "model_id": model_id, "max_tokens": 8}


def create_key(run: Run, rpm: int | None) -> str:
    body = {"name": f"fastpath-{secrets.token_hex(3)}", "rpm": rpm}
    response = run.req("POST", "/api/v1/admin/keys", run.admin_key, body=body)
    if response.status != 201:
        raise RuntimeError(f"creating a key: {response.status} {response.body[:200]!r}")
    return str(response.json()["key"])


def check_routes(run: Run, key: str) -> None:
    """(a) the plain routes answer."""
    for path, auth in (
        ("/api/v1/health", None),
        ("/api/v1/ready", None),
        ("/api/v1/models", key),
        ("/docs", None),
        ("/openapi.json", None),
    ):
        response = run.req("GET", path, auth)
        detail = f"{response.status} {response.all('content-type')}"
        if path == "/openapi.json" and response.status == 200:
            detail += f", {len(response.json().get('paths', {}))} paths"
        run.add(f"a GET {path}", response.status == 200, detail)


def check_generation(run: Run, key: str) -> None:
    """(b) non-streamed generation, (c) streams as SSE."""
    for path, body in (("/api/v1/generate", native()), ("/v1/chat/completions", chat())):
        response = run.req("POST", path, key, body=body)
        text: Any = response.body[:120]
        if response.status == 200:
            data = response.json()
            text = data["text"] if "text" in data else data["choices"][0]["message"]["content"]
        run.add(f"b POST {path}", REPLY in str(text), f"{response.status} {text!r}")
    sent = f"fpstream-{secrets.token_hex(4)}"
    streams = (
        ("openai", "/v1/chat/completions", chat(stream=True)),
        ("anthropic", "/v1/messages", {**chat(), "model": ANTHROPIC_MODEL, "stream": True}),
    )
    for api, path, body in streams:
        response = run.req("POST", path, key, body=body, headers={"x-request-id": sent})
        ok, detail = fp.sse_verdict(response.lines, api) if response.status == 200 else (False, "")
        ids_ok, ids = fp.request_id_verdict(response.all("x-request-id"), sent)
        run.add(
            f"c stream {path}", ok, f"{response.status} {response.all('content-type')}; {detail}"
        )
        run.add(f"d request id on stream {path}", ids_ok, ids)


def check_request_ids(run: Run) -> None:
    """(d) exactly one X-Request-ID: a new one, the caller's, or a new one for a bad one."""
    cases = (
        ("none sent", None),
        ("valid sent", f"fp-valid-{secrets.token_hex(4)}"),
        ("spaces sent", "bad id with spaces"),
        ("300 chars sent", "a" * 300),
    )
    for label, sent in cases:
        headers = {"x-request-id": sent} if sent is not None else {}
        response = run.req("GET", "/api/v1/health", headers=headers)
        ok, detail = fp.request_id_verdict(response.all("x-request-id"), sent)
        run.add(f"d request id, {label}", ok, detail)


def check_ledger(run: Run, key: str) -> None:
    """(e) the request id (the caller's, or the one the response names) is the ledger's."""
    sent = f"fpledger-{secrets.token_hex(4)}"
    with_id = run.req(
        "POST", "/v1/chat/completions", key, body=chat(), headers={"x-request-id": sent}
    )
    without = run.req("POST", "/v1/chat/completions", key, body=chat())
    ids = [sent, *without.all("x-request-id")[:1]]
    found: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(found) < len(ids):
        run.req("GET", "/api/v1/usage", run.admin_key)  # also flushes that replica's buffer
        found = fp.ledger_ids(run.workdir / "usage.db", ids)
        time.sleep(1.0)
    detail = f"statuses {with_id.status}/{without.status}; in ledger: {sorted(found)} of {ids}"
    run.add("e request id in the ledger", set(ids) == found, detail)


def send_ip_probes(run: Run, key: str) -> None:
    """(f) model requests from 127.0.0.2 then 127.0.0.1, without and with a new spoofed
    X-Forwarded-For each; their access lines are read after the stop."""
    for index, (source, spoof) in enumerate(
        (("127.0.0.2", False), ("127.0.0.2", True), ("127.0.0.1", True), ("127.0.0.1", False))
    ):
        rid = f"fpip-{run.mode}-{secrets.token_hex(4)}"
        xff = f"203.0.113.{10 + index}" if spoof else None
        headers = {"x-request-id": rid, **({"x-forwarded-for": xff} if xff else {})}
        response = run.req(
            "POST", "/api/v1/generate", key, body=native(), headers=headers, source=source
        )
        left = response.all("x-ratelimit-remaining-requests")
        run.ip_probes[rid] = fp.IpProbe(source, xff, int(left[0]) if left else None)


def check_rate_limit(run: Run) -> None:
    """(g) a key with rpm 3: 200, 200, 200, 429 with Retry-After."""
    key = create_key(run, rpm=3)
    responses = [run.req("POST", "/api/v1/generate", key, body=native()) for _ in range(4)]
    statuses = [r.status for r in responses]
    retry = responses[-1].all("retry-after")
    ok = statuses == [200, 200, 200, 429] and len(retry) == 1
    run.add("g rate limit rpm 3", ok, f"{statuses}, Retry-After {retry}")


def check_error_shape(run: Run, key: str) -> None:
    """(h) unknown model: 404 in the gateway's error shape, one X-Request-ID."""
    response = run.req("POST", "/api/v1/generate", key, body=native("fastpath-no-such-model"))
    error = response.json().get("error", {}) if response.body.startswith(b"{") else {}
    ids = response.all("x-request-id")
    ok = response.status == 404 and {"type", "message"} <= set(error) and len(ids) == 1
    detail = f"{response.status} type={error.get('type')} X-Request-ID x{len(ids)}"
    run.add("h unknown model -> 404", ok, detail)


def check_listeners(run: Run, tree: list[psutil.Process]) -> None:
    """(j) who listens on the gateway port and HAProxy's, and the Serve proxy's and the
    ingress replica's own ports."""
    ours = {p.pid for p in tree}
    mine = [x for x in procs.listeners() if x["pid"] in ours or x["port"] in fp.HAPROXY_PORTS]
    run.checks += fp.listener_rows(mine, run.port)


def mode_facts(run: Run, pid: int, tree: list[psutil.Process]) -> None:
    """The RAY_SERVE_* variables `serve run` got, HAProxy's command line, and the lines of
    its config on binds, forwarding and request ids (kept under the run's folder)."""
    with contextlib.suppress(OSError):
        run.facts["env"] = fp.serve_env(Path(f"/proc/{pid}/environ").read_bytes())
    with contextlib.suppress(psutil.Error):
        run.facts["haproxy"] = [" ".join(p.cmdline()) for p in tree if "haproxy" in p.name()]
    folder = Path(run.facts.get("env", {}).get("RAY_SERVE_HAPROXY_SERVER_STATE_BASE", "/-"))
    for cfg in folder.glob("*/haproxy.cfg"):  # Ray puts it under <folder>/<node id>/
        shutil.copy(cfg, run.workdir / "haproxy.cfg")
        run.facts["haproxy_cfg"] = fp.haproxy_cfg_lines(cfg.read_text())


def run_checks(run: Run, pid: int) -> None:
    key = create_key(run, rpm=None)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("a", lambda: check_routes(run, key)),
        ("b/c", lambda: check_generation(run, key)),
        ("d", lambda: check_request_ids(run)),
        ("e", lambda: check_ledger(run, key)),
        ("f", lambda: send_ip_probes(run, key)),
        ("g", lambda: check_rate_limit(run)),
        ("h", lambda: check_error_shape(run, key)),
        ("j", lambda: check_listeners(run, procs.tree_of(pid))),
        ("facts", lambda: mode_facts(run, pid, procs.tree_of(pid))),
    ]
    for label, step in steps:
        try:
            step()
        except (OSError, ValueError, KeyError, RuntimeError, psutil.Error) as exc:
            run.add(f"{label} (raised)", False, repr(exc)[:300])


def wait_ready(run: Run, gateway: Managed, timeout_s: float) -> None:
    def ready() -> bool:
        with contextlib.suppress(OSError, http.client.HTTPException):
            return run.req("GET", "/api/v1/ready", timeout_s=5).status == 200
        return False

    try:
        took = procs.wait_until(ready, gateway.alive, timeout_s)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}:\n{gateway.tail(15)}") from None
    run.add("i start -> first ready 200", None, f"{took:.1f} s")


def stop_gateway(run: Run, gateway: Managed, signame: str, timeout_s: float) -> None:
    """(i) the signal to the whole process group, as Ctrl-C sends it; then every process of
    the tree gone, and nothing left on the gateway's or HAProxy's ports."""
    stopped = procs.stop_group(gateway.pid, getattr(signal, f"SIG{signame}"), timeout_s)
    gateway.stop(10)
    ports = (run.port, *fp.HAPROXY_PORTS)
    still = [f"{x['address']}:{x['port']}" for x in procs.listeners() if x["port"] in ports]
    gone = stopped.total - len(stopped.killed)
    detail = f"SIG{signame}: {gone}/{stopped.total} processes gone in {stopped.took_s:.1f} s"
    detail += f"; killed {stopped.killed}" if stopped.killed else ""
    detail += f"; still listening {still}" if still else ""
    run.add("i stop (process group)", not stopped.killed and not still, detail)


def mode_env(run: Run, options: argparse.Namespace) -> dict[str, str]:
    env = gateway_env(run.workdir, run.admin_key, options.cpus)
    env = {k: v for k, v in env.items() if not k.startswith(("RAY_SERVE_", "GATEWAY_FAST"))}
    env.update(RAY_TMPDIR=str(run.workdir), GATEWAY_FAST_PATH=run.mode)
    if options.request_id_fix:
        env.update(RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=FIX, PYTHONPATH=str(REPO))
    if run.mode != "on":
        return env
    planned = {"RAY_TMPDIR": str(run.workdir)}
    apply_fast_path(planned, run.port)  # what serve_app.runtime.launch would choose
    lengths = fp.socket_path_lengths(planned)
    ok = max(lengths.values()) <= fp.HAPROXY_SOCKET_MAX
    run.add("launch.py HAProxy socket paths <= 97", ok, f"with the node id: {lengths}")
    if not options.launch_haproxy_paths:
        base = f"/tmp/fph-{run.port}"
        env.update({k: f"{base}/{name}" if name else base for k, name in HAPROXY_FILES.items()})
    return env


def run_mode(mode: str, options: argparse.Namespace, run_dir: Path) -> Run:
    workdir = run_dir / mode
    workdir.mkdir(parents=True, exist_ok=True)
    run = Run(mode, free_port(), f"sk-fastpath-admin-{secrets.token_hex(12)}", workdir)
    upstream, upstream_url = start_upstream(workdir, 0.0)
    config = workdir / "bench.yaml"
    document = yaml.safe_load(options.config.read_text())
    ledger = f"sqlite:///{workdir / 'usage.db'}"
    config.write_text(
        yaml.safe_dump(fp.adapt_config(document, run.port, upstream_url, ledger, IP_RPM))
    )
    env = mode_env(run, options)
    check_file(config, env)
    argv = [sys.executable, "-m", "serve_app.runtime.launch", str(config)]
    gateway = Managed("launch", argv, workdir / "launch.log", env)
    try:
        wait_ready(run, gateway, options.startup_timeout)
        run_checks(run, gateway.pid)
    except RuntimeError as exc:
        run.add("i start (failed)", False, str(exc)[-400:])
    finally:
        stop_gateway(run, gateway, options.signal, options.stop_timeout)
        upstream.stop(10)
        shutil.rmtree(f"/tmp/fph-{run.port}", ignore_errors=True)
    seen, where = fp.read_access_ips(workdir, run.ip_probes)
    run.checks += fp.client_ip_checks(seen, run.ip_probes, IP_RPM)
    run.facts["access_log_files"] = where
    launch_log = (workdir / "launch.log").read_text(errors="replace").splitlines()
    run.facts["launch"] = [line.strip() for line in launch_log if "HTTP path" in line]
    return run


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    run_dir = Path("/tmp/fastpath") / f"fp-{secrets.token_hex(3)}"
    modes = ["on", "off"] if options.mode == "both" else [options.mode]
    print(f"working in {run_dir}", file=sys.stderr, flush=True)
    runs = [run_mode(mode, options, run_dir) for mode in modes]
    names = {"on": "on (HAProxy)", "off": "off (Serve proxy)"}
    print(fp.markdown({names[r.mode]: r.checks for r in runs}))
    for r in runs:
        print(f"\nfacts, GATEWAY_FAST_PATH={r.mode}:\n{json.dumps(r.facts, indent=1)}")
    report = {
        "run_dir": str(run_dir),
        "modes": {
            r.mode: {"port": r.port, "checks": [c.as_dict() for c in r.checks], "facts": r.facts}
            for r in runs
        },
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(report, indent=2))
    print(f"JSON report: {options.out}", file=sys.stderr)
    return 1 if any(c.ok is False for r in runs for c in r.checks) else 0


if __name__ == "__main__":
    raise SystemExit(main())
