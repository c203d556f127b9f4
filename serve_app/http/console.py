"""The operator console: the built single-page app in `ui/dist`, served at `/ui/`.

The assets are built from `ui/` (TypeScript, Vite, Chart.js; `make ui`) and ship in the
package, so serving them needs no Node. They are served under a strict CSP of their own
(`UI_CSP` in `serve_app.http.middleware`): scripts, styles and API calls from this origin
only, no inline script, nothing from a CDN.
"""

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

UI_DIST = Path(__file__).with_name("ui") / "dist"
UI_PREFIX = "/ui"


def mount_console(app: FastAPI, dist: Path = UI_DIST) -> bool:
    """Serve `dist` at /ui/ (and redirect / there); False when it has not been built."""
    if not (dist / "index.html").is_file():
        return False
    app.mount(UI_PREFIX, StaticFiles(directory=dist, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{UI_PREFIX}/", status_code=307)

    return True
