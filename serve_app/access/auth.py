"""Who is calling: gateway API keys, the admin key, and the per-request context.

`RequestContext` is built once per request by a FastAPI dependency; its `log` dict is the
same object the access-log middleware reads at the end of the response, so the gateway
fills in the model, tokens and cost as it learns them.
"""

import hmac
import ipaddress
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from serve_app.access.key_store import ApiKey
from serve_app.contracts.errors import AuthenticationError, PermissionDeniedError

ANONYMOUS = "anonymous"
ADMIN = "admin"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class RequestContext:
    request_id: str
    client_ip: str
    key: ApiKey | None = None
    is_admin: bool = False
    log: dict[str, Any] = field(default_factory=dict)
    rate_limit_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    deadline: float = math.inf  # wall-clock time (time.time()) the request must end by
    deadline_shortened: bool = False  # the client asked for less than the configured one
    # budget reservations held by this request's calls: call request id -> (period, id)
    reservations: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    # Response cache: read a cached answer / store this one (Cache-Control, `cache: false`).
    cache_read: bool = True
    cache_write: bool = True

    def remaining_s(self, cap_s: float) -> float:
        """Seconds left before the deadline, at most `cap_s`."""
        return min(cap_s, self.deadline - time.time())

    @property
    def key_id(self) -> str:
        if self.key is not None:
            return self.key.id
        return ADMIN if self.is_admin else ANONYMOUS

    def require_model(self, model_id: str) -> None:
        if self.key is not None and not self.key.allows(model_id):
            raise PermissionDeniedError(
                f"This API key may not use the model {model_id!r}.",
                param="model",
                code="model_not_allowed",
            )

    def apply_cache_control(self, header: str | None, body_cache: bool | None = None) -> None:
        """`Cache-Control: no-cache` skips the lookup (a fresh answer, which is stored);
        `no-store` stores nothing; a body's `cache: false` does both."""
        if header:
            directives = {part.strip().lower() for part in header.split(",")}
            if "no-cache" in directives:
                self.cache_read = False
            if "no-store" in directives:
                self.cache_write = False
        if body_cache is False:
            self.cache_read = self.cache_write = False

    def require_admin(self) -> None:
        if not self.is_admin:
            raise PermissionDeniedError("This route needs the admin key.", code="admin_only")


def presented_key(headers: dict[str, str]) -> str | None:
    """`Authorization: Bearer <key>`, else `x-api-key: <key>`."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = headers.get("x-api-key", "").strip()
    return api_key or None


def is_admin_key(presented: str | None, admin_key: str | None) -> bool:
    if not presented or not admin_key:
        return False
    return hmac.compare_digest(presented.encode(), admin_key.encode())


def missing_key_error() -> AuthenticationError:
    return AuthenticationError(
        "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
        code="missing_api_key",
    )


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_ip(peer: str, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client address: the peer, unless the peer is a trusted proxy, in which case the
    right-most address of X-Forwarded-For that is not itself a trusted proxy."""
    if not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def came_over_https(
    scheme: str, peer: str, forwarded_proto: str | None, trusted: tuple[Network, ...]
) -> bool:
    if scheme == "https":
        return True
    return (
        bool(forwarded_proto)
        and _trusted(peer, trusted)
        and (forwarded_proto or "").split(",")[0].strip().lower() == "https"
    )
