"""`serve_app.runtime.launch`: which HTTP path `make run` picks, and the environment it sets."""

from pathlib import Path
from typing import Any

import pytest

from serve_app.contracts.config import GatewayConfig
from serve_app.runtime.launch import apply_fast_path, fast_path_wanted

NODE_ID_CHARS = 56  # Ray appends the node id to every HAProxy path
HAPROXY_SOCKET_LIMIT = 97


def config(**args: Any) -> GatewayConfig:
    return GatewayConfig.model_validate({"auth": {"enabled": False}, **args})


def test_auto_is_on_without_per_ip_limits() -> None:
    assert fast_path_wanted([config()], {})[0] is True


@pytest.mark.parametrize("fast_path", ["auto", "on"])
def test_per_ip_limits_keep_the_serve_proxy(fast_path: str) -> None:
    limited = config(rate_limits={"ip_rpm": 10}, ingress={"fast_path": fast_path})
    on, why = fast_path_wanted([limited], {})
    assert on is False and "per-IP" in why


def test_yaml_off_and_the_environment_switch() -> None:
    assert fast_path_wanted([config(ingress={"fast_path": "off"})], {})[0] is False
    assert fast_path_wanted([config()], {"GATEWAY_FAST_PATH": "off"})[0] is False
    forced = fast_path_wanted([config(ingress={"fast_path": "off"})], {"GATEWAY_FAST_PATH": "on"})
    assert forced == (True, "GATEWAY_FAST_PATH=on")


def test_haproxy_paths_fit_its_socket_limit_and_keep_what_is_set() -> None:
    environ = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5"}
    apply_fast_path(environ, 65535)
    assert environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert environ["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "5"  # operator's value
    for name in ("RAY_SERVE_HAPROXY_SOCKET_PATH", "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH"):
        path = Path(environ[name])
        longest = len(str(path.parent)) + 1 + NODE_ID_CHARS + 1 + len(path.name)
        assert longest <= HAPROXY_SOCKET_LIMIT, environ[name]


REPORT_SIGINT = (
    "import signal, sys; "
    "open(sys.argv[1], 'w').write(str(signal.getsignal(signal.SIGINT) is signal.SIG_IGN))"
)


def test_serve_run_gets_sigint_at_its_default_when_the_shell_ignored_it(tmp_path: Path) -> None:
    """A shell that starts `make run` in the background sets SIGINT to "ignored"; the child
    must not inherit that, or it never stops on the SIGINT that launch passes on."""
    import signal
    import sys

    from serve_app.runtime.launch import run_and_clean_up

    report = tmp_path / "sigint"
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = run_and_clean_up([sys.executable, "-c", REPORT_SIGINT, str(report)], tmp_path)
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
    assert code == 0
    assert report.read_text() == "False"
