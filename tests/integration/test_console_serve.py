"""The console through the real Serve graph (auth off: the demo's open mode): assets and CSP
through Serve's proxy, the timeseries over the real ledger, and the models page showing Serve's
replicas and placement, with a test generation on the real demo model."""

import re
from typing import Any

import httpx
import pytest

from tests.serve_app.http.console_harness import chromium, screenshot_dir, watched_page

pytestmark = pytest.mark.integration


def test_console_on_the_serve_graph(gateway: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    page_response = httpx.get(f"{gateway}/ui/", timeout=30)
    assert page_response.status_code == 200
    assert "script-src 'self';" in page_response.headers["content-security-policy"]
    asset = re.search(r'src="(/ui/assets/[^"]+\.js)"', page_response.text)
    assert asset and httpx.get(gateway + asset.group(1), timeout=30).status_code == 200
    body = {"model_id": "demo", "prompt": "Q: What is the capital of Zorbia?\nA:", "max_tokens": 4}
    assert httpx.post(f"{gateway}/api/v1/generate", json=body, timeout=60).is_success
    series = httpx.get(f"{gateway}/api/v1/usage/timeseries?group_by=provider", timeout=30).json()
    assert "local" in {s["name"] for s in series["series"]}
    shots = screenshot_dir(tmp_path_factory)
    with chromium() as browser, watched_page(browser) as watched:
        page: Any = watched.page
        page.goto(f"{gateway}/ui/")
        page.get_by_role("button", name="Sign in").click()  # auth off: no key needed
        assert page.get_by_test_id("identity").inner_text() == "Signed in: auth off"
        page.get_by_role("link", name="Models").click()
        demo = page.get_by_test_id("models-table").locator("tbody tr").filter(has_text="demo")
        demo.first.wait_for()
        cells = demo.first.locator("td").all_inner_texts()
        assert re.match(r"\d+ running", cells[3]) and cells[4].startswith("node ")
        page.get_by_role("button", name="Test demo", exact=True).click()
        page.get_by_test_id("test-result").filter(has_text="ms").wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "models-serve-1280.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(shots / "models-serve-390.png"), full_page=True)
        assert watched.unexpected_errors() == []
