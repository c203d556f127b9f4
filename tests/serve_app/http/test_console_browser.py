"""The operator console (/ui) in a real browser: Debian's Chromium driven by Playwright,
against the gateway's real ingress app served over loopback, after real HTTP traffic
(native API, OpenAI SDK, Anthropic SDK). Screenshots of every page at 1280 and 390 px go
to the folder printed at the start (CONSOLE_SCREENSHOTS overrides it)."""

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import openai
import pytest

from serve_app.accounting.ledger import UsageRecord, as_row
from tests.serve_app.http.console_harness import (
    ADMIN_KEY,
    WIDTHS,
    Watched,
    chromium,
    console_gateway,
    screenshot_dir,
    sign_in,
    watched_page,
)
from tests.serve_app.live_server import serve

XSS_NAME = "<img src=x onerror=alert(1)>"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Site:
    base: str
    user_key: str  # "team-a": an ordinary key with traffic
    user_id: str
    shots: Path
    seeded: list[UsageRecord]

    def seeded_count(self, key_id: str | None = None, ok_only: bool = False) -> int:
        return sum(
            1
            for r in self.seeded
            if (key_id is None or r.key_id == key_id) and (r.outcome == "ok" or not ok_only)
        )

    def api(self, path: str, key: str = ADMIN_KEY) -> Any:
        response = httpx.get(self.base + path, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        return response.json()


def make_key(base: str, name: str, **limits: Any) -> dict[str, Any]:
    response = httpx.post(f"{base}/api/v1/admin/keys", headers=ADMIN, json={"name": name, **limits})
    assert response.status_code == 201, response.text
    return dict(response.json())


def make_traffic(base: str, user_key: str, xss_key: str) -> None:
    """Calls through every surface: native, the OpenAI SDK and the Anthropic SDK."""
    import anthropic

    for key in (user_key, xss_key, ADMIN_KEY):
        headers = {"Authorization": f"Bearer {key}"}
        for model in ("demo", "gpt-fake", "claude-fake"):
            body = {"model_id": model, "prompt": "hello there world", "max_tokens": 8}
            assert httpx.post(f"{base}/api/v1/generate", json=body, headers=headers).is_success
    failed = {"model_id": "gpt-fake", "prompt": "explode now"}  # the fake upstream fails: 502
    assert httpx.post(f"{base}/api/v1/generate", json=failed, headers=ADMIN).status_code == 502
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=user_key, max_retries=0)
    client.chat.completions.create(model="gpt-fake", messages=[{"role": "user", "content": "hi"}])
    claude = anthropic.Anthropic(base_url=base, api_key=user_key, max_retries=0)
    claude.messages.create(
        model="claude-fake", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )


PRICES = {
    "demo": ("local", 100, 200),
    "gpt-fake": ("openai", 1000, 2000),
    "claude-fake": ("anthropic", 3000, 15000),
}


def history(key_ids: list[str]) -> list[UsageRecord]:
    """The previous 23 hours of usage (so that the charts have more than one bucket), as
    the gateway would have recorded it; every 5th record is an upstream error."""
    now, records = time.time(), []
    for hour in range(1, 24):
        for index, (model, (provider, price_in, price_out)) in enumerate(PRICES.items()):
            for n in range(1 + (hour * 7 + index * 3) % 4):
                ok = (hour + n) % 5 != 0
                tokens_in, tokens_out = 200 * (index + 1), (100 if ok else 0)
                cost = (tokens_in * price_in + tokens_out * price_out) / 1e6 if ok else 0.0
                records.append(
                    UsageRecord(
                        now - hour * 3600 + n,
                        f"seed-{hour}-{model}-{n}",
                        key_ids[(hour + n) % 2],
                        model,
                        provider,
                        model,
                        tokens_in,
                        tokens_out,
                        cost,
                        40.0 * (index + 1) + n,
                        "ok" if ok else "upstream_error",
                        200 if ok else 502,
                    )
                )
    return records


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, pytestconfig: Any) -> Iterator[Site]:
    app, gateway, _ = console_gateway(tmp_path_factory.mktemp("console"))
    shots = screenshot_dir(tmp_path_factory)
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"console screenshots: {shots}")
    with serve(app) as port:
        base = f"http://127.0.0.1:{port}"
        user = make_key(base, "team-a", budget_usd=50)
        xss = make_key(base, XSS_NAME)
        make_traffic(base, user["key"], xss["key"])
        seeded = history([user["id"], xss["id"]])
        gateway.ledger.store.write([as_row(record) for record in seeded])
        yield Site(base, user["key"], user["id"], shots, seeded)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running


def shoot(watched: Watched, site: Site, name: str) -> None:
    width = watched.page.viewport_size["width"]
    watched.page.screenshot(path=str(site.shots / f"{name}-{width}.png"), full_page=True)


def card_value(page: Any, testid: str) -> float:
    return float(page.get_by_test_id(testid).get_attribute("data-value"))


def captured_window(watched: Watched, path: str) -> str:
    """The query string the page itself sent for `path` (the same window, to the second)."""
    urls = [u for u in watched.urls if urlsplit(u).path == path]
    assert urls, f"the page never called {path}"
    return urlsplit(urls[-1]).query


def assert_no_key_in_urls(watched: Watched, *keys: str) -> None:
    for url in watched.urls:
        for key in keys:
            assert key not in url, url


def chart_drawn(page: Any, testid: str) -> tuple[int, bool]:
    """(series the chart says it drew, whether its canvas holds any painted pixel)."""
    canvas = page.get_by_test_id(testid)
    painted = canvas.evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v !== 0)"
    )
    return int(canvas.get_attribute("data-series")), bool(painted)


def test_wrong_key_gives_a_clear_sign_in_error(site: Site, browser: Any) -> None:
    with watched_page(browser) as watched:
        sign_in(watched.page, site.base, "gw-" + "x" * 40)
        alert = watched.page.get_by_role("alert")
        assert alert.inner_text() == "Sign-in failed: Invalid API key."
        for width, (w, h) in WIDTHS.items():
            watched.page.set_viewport_size({"width": w, "height": h})
            shoot(watched, site, f"signin-error-{width}")
        assert watched.page.get_by_label("API key").is_visible()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_admin_overview_matches_the_api(site: Site, browser: Any, width: str) -> None:
    with watched_page(browser, width) as watched:
        page = watched.page
        sign_in(page, site.base, ADMIN_KEY)
        page.get_by_test_id("total-requests").wait_for()
        window = captured_window(watched, "/api/v1/usage")
        usage = site.api(f"/api/v1/usage?{window}")
        providers = usage["providers"].values()
        assert (
            card_value(page, "total-requests")
            == sum(p["requests"] for p in providers)
            == 12 + site.seeded_count()
        )
        seeded_errors = site.seeded_count() - site.seeded_count(ok_only=True)
        assert card_value(page, "total-errors") == sum(p["errors"] for p in providers)
        assert card_value(page, "total-errors") == 1 + seeded_errors
        assert card_value(page, "total-cost") == pytest.approx(
            sum(p["cost_usd"] for p in providers)
        )
        commercial = site.api(f"/api/v1/commercial/usage?{window}")["providers"]
        rows = page.get_by_test_id("commercial-providers").locator("tbody tr")
        assert rows.count() == len(commercial) == 2
        for row in rows.all():
            cells = row.locator("td").all_inner_texts()
            assert int(cells[1].replace(",", "")) == commercial[cells[0]]["requests"]
            assert float(cells[5].lstrip("$")) == pytest.approx(
                commercial[cells[0]]["cost_usd"], abs=1e-4
            )
        timeseries = site.api(
            f"/api/v1/usage/timeseries?{captured_window(watched, '/api/v1/usage/timeseries')}"
        )
        assert card_value(page, "latency-p50") == timeseries["totals"]["latency_p50_ms"]
        for testid in ("chart-cost", "chart-requests"):
            assert chart_drawn(page, testid) == (3, True)  # local, openai, anthropic
        top_keys = page.get_by_test_id("top-keys").locator("tbody tr td:first-child")
        assert XSS_NAME in top_keys.all_inner_texts()  # shown as text
        assert page.locator("img").count() == 0 and not watched.dialogs
        shoot(watched, site, "overview")
        assert_no_key_in_urls(watched, ADMIN_KEY)
        assert watched.unexpected_errors() == []


def test_usage_explorer_table_chart_and_csv(site: Site, browser: Any, tmp_path: Path) -> None:
    with watched_page(browser) as watched:
        page = watched.page
        sign_in(page, site.base, ADMIN_KEY)
        page.get_by_role("link", name="Usage").click()
        page.get_by_test_id("usage-table").wait_for()
        page.get_by_label("Group by").select_option("provider")
        page.get_by_label("Status").select_option("ok")
        page.locator("[data-testid=usage-output][aria-busy=false]").wait_for()
        rows = page.get_by_test_id("usage-table").locator("tbody tr")
        shown = [row.locator("td").all_inner_texts() for row in rows.all()]
        assert {row[1] for row in shown} == {"local", "openai", "anthropic"}
        # the failed calls are filtered out
        assert sum(int(row[2]) for row in shown) == 11 + site.seeded_count(ok_only=True)
        assert chart_drawn(page, "chart-explorer") == (3, True)
        with page.expect_download() as download:
            page.get_by_test_id("export-csv").click()
        target = tmp_path / "usage.csv"
        download.value.save_as(target)
        exported = list(csv.reader(io.StringIO(target.read_text())))
        headers = page.get_by_test_id("usage-table").locator("thead th").all_inner_texts()
        assert exported == [headers, *shown]
        for width, (w, h) in WIDTHS.items():
            page.set_viewport_size({"width": w, "height": h})
            shoot(watched, site, f"usage-{width}")
        assert_no_key_in_urls(watched, ADMIN_KEY)
        assert watched.unexpected_errors() == []


def keys_row(page: Any, name: str) -> Any:
    return (
        page.get_by_test_id("keys-table")
        .locator("tbody tr")
        .filter(has=page.locator("td:first-child", has_text=re.compile(f"^{re.escape(name)}$")))
    )


def test_keys_create_use_disable_edit(site: Site, browser: Any) -> None:
    with watched_page(browser) as watched:
        page = watched.page
        sign_in(page, site.base, ADMIN_KEY)
        page.get_by_role("link", name="Keys").click()
        page.get_by_test_id("keys-table").wait_for()
        assert keys_row(page, XSS_NAME).count() == 1  # the name renders as text
        assert page.locator("img").count() == 0 and not watched.dialogs
        form = page.get_by_test_id("create-key")
        form.get_by_label("Name").fill("made-in-ui")
        form.get_by_label("Budget (USD)").fill("2.5")
        form.get_by_role("button", name="Create key").click()
        new_key = page.get_by_test_id("new-key").input_value()
        assert new_key.startswith("gw-")
        shoot(watched, site, "keys-created")
        client = openai.OpenAI(base_url=f"{site.base}/v1", api_key=new_key, max_retries=0)
        answer = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hello"}]
        )
        assert answer.choices[0].message.content
        page.get_by_role("button", name="Done").click()
        keys_row(page, "made-in-ui").get_by_role("button", name="Disable made-in-ui").click()
        page.get_by_role("button", name="Enable made-in-ui").wait_for()
        with pytest.raises(openai.AuthenticationError, match="disabled"):
            client.chat.completions.create(
                model="demo", messages=[{"role": "user", "content": "x"}]
            )
        keys_row(page, "team-a").get_by_role("button", name="Edit team-a").click()
        editor = page.get_by_role("form", name="Edit team-a")
        editor.get_by_label("Requests / min").fill("0")
        editor.get_by_role("button", name="Save").click()
        refused = httpx.patch(
            f"{site.base}/api/v1/admin/keys/{site.user_id}", headers=ADMIN, json={"rpm": 0}
        ).json()["error"]["message"]
        assert refused in page.get_by_role("alert").inner_text()  # the API's own words
        editor.get_by_label("Requests / min").fill("77")
        editor.get_by_label("Budget (USD)").fill("40")
        editor.get_by_role("button", name="Save").click()
        keys_row(page, "team-a").locator("td", has_text="$40.0000").wait_for()
        team = {k["id"]: k for k in site.api("/api/v1/admin/keys")["keys"]}[site.user_id]
        assert (team["rpm"], team["budget_usd"]) == (77, 40.0)
        row = keys_row(page, "team-a").locator("td").all_inner_texts()
        assert row[6] == f"${team['spend_usd']:.4f}" and row[7].endswith("UTC")
        for width, (w, h) in WIDTHS.items():
            page.set_viewport_size({"width": w, "height": h})
            shoot(watched, site, f"keys-{width}")
        assert_no_key_in_urls(watched, ADMIN_KEY, new_key)
        assert len(watched.unexpected_errors()) == 0


def test_models_page_and_its_test_button(site: Site, browser: Any) -> None:
    with watched_page(browser) as watched:
        page = watched.page
        sign_in(page, site.base, ADMIN_KEY)
        page.get_by_role("link", name="Models").click()
        table = page.get_by_test_id("models-table")
        table.wait_for()
        assert table.locator("tbody tr").count() == 3
        page.get_by_role("button", name="Test claude-fake").click()
        result = page.get_by_test_id("test-result")
        result.filter(has_text="ms").wait_for()
        assert re.search(r"claude-fake: [\d.]+ ms, \d+ tokens, \$0\.\d+", result.inner_text())
        for width, (w, h) in WIDTHS.items():
            page.set_viewport_size({"width": w, "height": h})
            shoot(watched, site, f"models-{width}")
        assert watched.unexpected_errors() == []


def test_ordinary_key_sees_its_own_usage_and_no_admin_page(site: Site, browser: Any) -> None:
    with watched_page(browser, "phone") as watched:
        page = watched.page
        sign_in(page, site.base, site.user_key)
        page.get_by_test_id("total-requests").wait_for()
        nav = page.get_by_role("navigation", name="Console").get_by_role("link")
        assert nav.all_inner_texts() == ["Overview", "Usage"]
        own = site.api(f"/api/v1/usage?{captured_window(watched, '/api/v1/usage')}", site.user_key)
        assert (
            card_value(page, "total-requests")
            == sum(p["requests"] for p in own["providers"].values())
            == 5 + site.seeded_count(site.user_id)
        )
        own_keys = page.get_by_test_id("top-keys").locator("tbody tr td:first-child")
        assert own_keys.all_inner_texts() == ["team-a"]
        page.goto(f"{site.base}/ui/#/keys")  # not offered: the overview stays
        assert page.get_by_role("heading", level=1).inner_text() == "Overview"
        for width, (w, h) in WIDTHS.items():
            page.set_viewport_size({"width": w, "height": h})
            shoot(watched, site, f"overview-ordinary-key-{width}")
        assert not any("/admin/" in url or "/commercial/" in url for url in watched.urls)
        assert_no_key_in_urls(watched, site.user_key)
        assert watched.unexpected_errors() == []


def test_a_key_disabled_mid_session_signs_the_user_out(site: Site, browser: Any) -> None:
    victim = make_key(site.base, "short-lived")
    with watched_page(browser) as watched:
        page = watched.page
        sign_in(page, site.base, victim["key"])
        page.get_by_test_id("total-requests").wait_for()
        response = httpx.post(
            f"{site.base}/api/v1/admin/keys/{victim['id']}/disable", headers=ADMIN
        )
        assert response.status_code == 200
        page.get_by_role("link", name="Usage").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        assert alert.inner_text() == "You were signed out: This API key is disabled."
        assert page.get_by_label("API key").input_value() == ""
        # Signing out forgets the key: no page can be reached without signing in again.
        page.goto(f"{site.base}/ui/#/overview")
        assert page.get_by_label("API key").is_visible()


def test_csp_blocks_inline_scripts(site: Site, browser: Any) -> None:
    response = httpx.get(f"{site.base}/ui/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    assert '<script type="module" crossorigin src="/ui/assets/' in response.text
    with watched_page(browser) as watched:
        page = watched.page
        page.goto(f"{site.base}/ui/")
        violations = page.evaluate(
            """() => new Promise(resolve => {
                document.addEventListener('securitypolicyviolation',
                    e => resolve([e.violatedDirective, window.ranInline === true]));
                const script = document.createElement('script');
                script.textContent = 'window.ranInline = true';
                document.body.append(script);
            })"""
        )
        assert violations[0].startswith("script-src") and violations[1] is False
        assert any("Content Security Policy" in error for error in watched.console_errors)


def test_timeseries_errors_keep_the_error_shape(site: Site) -> None:
    cases = {
        "bucket=minute": "bucket",
        "since=2020-01-01T00:00:00Z&until=2026-01-01T00:00:00Z&bucket=hour": "since",
        "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z": "until",
        "since=not-a-date": "since",
        "group_by=nothing": "group_by",
    }
    for params, param in cases.items():
        response = httpx.get(f"{site.base}/api/v1/usage/timeseries?{params}", headers=ADMIN)
        assert response.status_code == 400, (params, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and param in json.dumps(error)
        assert response.headers["x-request-id"]
    other = parse_qs("key_id=someone-else")
    response = httpx.get(
        f"{site.base}/api/v1/usage/timeseries",
        params=other,
        headers={"Authorization": f"Bearer {site.user_key}"},
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "admin_only"


UNLABELLED = """() => [...document.querySelectorAll('input, select, button, canvas, [role=region]')]
    .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !el.getAttribute('aria-labelledby') && !(el.textContent || '').trim()
                  && el.type !== 'hidden')
    .map(el => el.outerHTML.slice(0, 80))"""


def test_every_control_is_labelled_and_keyboard_focus_shows(site: Site, browser: Any) -> None:
    with watched_page(browser) as watched:
        page = watched.page
        page.goto(f"{site.base}/ui/")
        assert page.evaluate("document.activeElement.name") == "api-key"  # focused at once
        page.keyboard.type(ADMIN_KEY)
        page.keyboard.press("Enter")
        page.get_by_test_id("total-requests").wait_for()
        for name in ("Usage", "Keys", "Models", "Overview"):
            page.get_by_role("link", name=name).click()
            page.locator("main h1").wait_for()
            page.locator("[aria-busy=true]").wait_for(state="detached", timeout=10_000)
            assert page.evaluate(UNLABELLED) == [], name
        page.keyboard.press("Tab")  # the skip link, then the first nav link
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const el = document.activeElement; const style = getComputedStyle(el);"
            " return [el.textContent, style.outlineStyle, style.outlineWidth]; }"
        )
        assert focused[1] == "solid" and focused[2] == "3px", focused
        assert watched.unexpected_errors() == []
