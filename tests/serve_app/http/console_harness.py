"""What the console's browser tests share: the gateway (the real ingress app over fake
deployment handles, served by uvicorn on loopback), Debian's Chromium driven by Playwright,
and a page that records every request URL, console error and dialog."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deployments.limits.rate_limiter import RateLimiter
from serve_app.access.admission import Admission
from serve_app.access.key_cache import KeyCache
from serve_app.access.key_store import open_key_store
from serve_app.contracts.config import GatewayConfig
from serve_app.core.gateway import Gateway
from serve_app.http.app import create_app
from tests.serve_app.app_factory import fake_model_handle

ADMIN_KEY = "admin-console-key-0123456789abcdef"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def console_config(db_url: str) -> GatewayConfig:
    """A local model and one model per provider, priced so that costs are visible."""

    def model(model_id: str, provider: str, price_in: float, price_out: float) -> dict[str, Any]:
        return {
            "id": model_id,
            "provider": provider,
            "upstream_model": model_id,
            "price": {"input_per_million_usd": price_in, "output_per_million_usd": price_out},
            "context_window": 4096,
            "max_output_tokens": 64,
        }

    return GatewayConfig.model_validate(
        {
            "auth": {"enabled": True, "cache_ttl_s": 5},
            "models": [
                {
                    "id": "demo",
                    "path": "x",
                    "max_new_tokens": 64,
                    "price": {"input_per_million_usd": 100, "output_per_million_usd": 200},
                }
            ],
            "commercial": {
                "include_default_catalog": False,
                "models": [
                    model("gpt-fake", "openai", 1000, 2000),
                    model("claude-fake", "anthropic", 3000, 15000),
                ],
            },
            "ledger": {"url": db_url, "flush_interval_s": 0.2},
            "logging": {"access_log": False},
        }
    )


def console_gateway(tmp_dir: Path) -> tuple[Any, Gateway, KeyCache]:
    """The real `create_app` app (console mounted) over in-process fake handles."""
    db_url = f"sqlite:///{tmp_dir}/gateway.db"
    config = console_config(db_url)
    handles = {name: fake_model_handle(name) for name in ("demo", "openai", "anthropic")}
    keys = KeyCache(open_key_store(db_url), ttl_s=config.auth.cache_ttl_s)
    admission = Admission(
        config, keys, RateLimiter(), environ={config.auth.admin_key_env: ADMIN_KEY}
    )
    gateway = Gateway(config, handles, admission=admission)
    return create_app(gateway), gateway, keys


def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`CONSOLE_SCREENSHOTS` when set, else a folder of this test run's temporary tree."""
    chosen = os.environ.get("CONSOLE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.getbasetemp() / "console-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Watched:
    """A page and what it did: request URLs, console errors, page errors, dialogs, CSP
    violations reported to the page."""

    page: Any
    urls: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def unexpected_errors(self) -> list[str]:
        """Console errors other than Chrome's log line for an HTTP error status (each one
        a response the test provoked on purpose: a wrong key, a refused edit)."""
        expected = "Failed to load resource: the server responded with a status of 4"
        return [e for e in self.console_errors if not e.startswith(expected)] + self.page_errors


@contextmanager
def chromium() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make chromium installs it)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def watched_page(browser: Any, width: str = "desktop") -> Iterator[Watched]:
    w, h = WIDTHS[width]
    context = browser.new_context(viewport={"width": w, "height": h}, accept_downloads=True)
    page = context.new_page()
    watched = Watched(page)
    page.on("request", lambda request: watched.urls.append(request.url))
    page.on(
        "console",
        lambda message: (
            watched.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))

    def on_dialog(dialog: Any) -> None:
        watched.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        yield watched
    finally:
        context.close()


def sign_in(page: Any, base_url: str, key: str) -> None:
    page.goto(f"{base_url}/ui/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
