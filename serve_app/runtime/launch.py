"""`make run`: validate a Serve config, apply `PORT`, pick the HTTP path, `serve run` it.

python -m serve_app.runtime.launch configs/local.yaml

The fast HTTP path (Ray 2.60's HAProxy ingress, straight to the ingress replica's own
server, gRPC between deployments) must be chosen before Ray starts, so it is set here in
the environment `serve run` inherits: `ingress.fast_path` in the YAML, or GATEWAY_FAST_PATH.
"""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from types import FrameType

import yaml

from serve_app.contracts.config import GatewayConfig
from serve_app.runtime.preflight import (
    Plan,
    directory_problems,
    key_problems,
    load,
    port_problems,
)

PROXY_CALLBACK_ENV = {
    # One well-formed X-Request-ID per response, whichever HTTP server Ray puts in front.
    "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": (
        "serve_app.http.proxy_callback:request_id_middlewares"
    ),
}
FAST_PATH_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # Replicas otherwise drain for 30 s on every stop or redeploy.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}
HAPROXY_FILES = {
    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg",
    "RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
    "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": "",
    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state",
    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
}


def fast_path_wanted(configs: list[GatewayConfig], environ: Mapping[str, str]) -> tuple[bool, str]:
    """(on?, why), from GATEWAY_FAST_PATH, else each application's `ingress.fast_path`."""
    per_ip = any(c.rate_limits.ip_rpm or c.rate_limits.ip_tpm for c in configs)
    if per_ip:  # HAProxy (Ray 2.60) adds no X-Forwarded-For: every client has its address
        return False, "per-IP limits are set (HAProxy would hide client addresses)"
    forced = environ.get("GATEWAY_FAST_PATH", "").strip().lower()
    if forced in ("on", "1", "true", "off", "0", "false"):
        return forced in ("on", "1", "true"), f"GATEWAY_FAST_PATH={forced}"
    choices = {config.ingress.fast_path for config in configs}
    if "off" in choices:
        return False, "ingress.fast_path: off"
    return True, "ingress.fast_path: " + ("on" if "on" in choices else "auto")


def haproxy_base(port: int) -> Path:
    # Ray appends the 56-character node id; HAProxy refuses socket paths over 97 characters.
    return Path("/tmp") / f"gw-haproxy-{port}"


def stop_stale_haproxy(base: Path) -> None:
    """An HAProxy left by a run on this port (Ray does not stop it when `serve run` is
    killed) would hold the stats and metrics ports: stop it."""
    import psutil

    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "haproxy" in (process.info["name"] or "") and any(str(base) in a for a in cmdline):
            print(f"  stopping HAProxy (pid {process.pid}) left by Ray", flush=True)
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
                process.wait(timeout=5)


def apply_fast_path(environ: MutableMapping[str, str], port: int) -> None:
    """The HAProxy switches, with HAProxy's files in a folder of their own per port."""
    environ.update(RAY_SERVE_ENABLE_HA_PROXY="1", RAY_SERVE_THROUGHPUT_OPTIMIZED="1")
    for name, value in FAST_PATH_ENV.items():
        environ.setdefault(name, value)
    base = haproxy_base(port)
    base.mkdir(parents=True, exist_ok=True)
    for name, file_name in HAPROXY_FILES.items():
        environ.setdefault(name, str(base / file_name) if file_name else str(base))


KEY_HINT = """\
llm-gateway on http://{host}:{port}  (docs: /docs)
{auth_line}
  create a key:  GATEWAY_ADMIN_KEY=... .venv/bin/llm-gateway-keys create --name me
                 (or POST /api/v1/admin/keys with 'Authorization: Bearer $GATEWAY_ADMIN_KEY')
  then call:     curl -H "Authorization: Bearer <key>" http://{host}:{port}/api/v1/models
"""


def preflight(source: Path, environ: MutableMapping[str, str]) -> tuple[Plan | None, bool, str]:
    """The checks before Ray starts: (plan or None when it must not start, fast?, why).
    Each problem is printed on stderr as one line naming its fix."""
    plan, problems = load(source, environ)
    fast, why = False, ""
    if plan is not None:
        http = plan.document.setdefault("http_options", {})
        if environ.get("PORT"):
            try:
                http["port"] = int(environ["PORT"])
            except ValueError:
                problems.append(f"PORT={environ['PORT']!r} is not a port number: e.g. PORT=8001")
        fast, why = fast_path_wanted(plan.configs, environ)
        if not problems:
            if fast:  # one left by an earlier run on this port would hold the ports
                stop_stale_haproxy(haproxy_base(int(http.get("port", 8000))))
            problems += port_problems(plan, fast, environ)
        problems += directory_problems(plan) + key_problems(plan, environ)
    for problem in problems:
        print(f"cannot start: {problem}", file=sys.stderr, flush=True)
    return (None if problems else plan), fast, why


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    plan, fast, why = preflight(Path(args[0] if args else "configs/local.yaml"), os.environ)
    if plan is None:
        return 2
    http = plan.document["http_options"]
    auth_on = any(config.auth.enabled for config in plan.configs)
    auth_line = (
        "  auth: ON (every model route needs a key)"
        if auth_on
        else "  auth: OFF for this demo config (set auth.enabled: true to require keys)"
    )
    print(
        KEY_HINT.format(
            host=http.get("host", "127.0.0.1"), port=http.get("port", 8000), auth_line=auth_line
        ),
        flush=True,
    )
    for name, value in PROXY_CALLBACK_ENV.items():
        os.environ.setdefault(name, value)
    if fast:
        apply_fast_path(os.environ, int(http.get("port", 8000)))
    else:  # whatever the shell had: this run uses Serve's proxy
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "0"
    print(f"  HTTP path: {'HAProxy fast path' if fast else 'Serve proxy'} ({why})", flush=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(plan.document, handle)
    serve = Path(sys.executable).with_name("serve")
    if not fast:
        default_sigint()  # kept across exec (see run_and_clean_up)
        os.execv(str(serve), [str(serve), "run", handle.name])
    port = int(http.get("port", 8000))
    return run_and_clean_up([str(serve), "run", handle.name], haproxy_base(port))


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_and_clean_up(command: list[str], base: Path) -> int:
    """`serve run` as a child: SIGINT/SIGTERM are passed on as SIGINT (Serve's clean stop),
    and an HAProxy that Ray left behind (it runs in a process group of its own, which a
    group kill does not reach) is stopped once `serve run` has exited."""
    # SIGINT at its default in the child: a shell that starts `make run` in the background
    # sets it to "ignored", which `serve run` would inherit and never stop on what we pass.
    child = subprocess.Popen(command, preexec_fn=default_sigint)

    def pass_on(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, pass_on)
    signal.signal(signal.SIGTERM, pass_on)
    code = child.wait()
    stop_stale_haproxy(base)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
