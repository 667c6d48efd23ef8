"""GET /: the dashboard, a static page (service/static/) that reads the API like any client.

No CDN and no build step: hand-written HTML, CSS and ES modules, served from the package, so
the page works on machines without internet. The page holds no data; its scripts call
/v1/jobs with the API key the user enters (kept in the browser's localStorage).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from service.errors import ApiError
from service.deps import IdCheckedRoute

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"dashboard.js": "text/javascript", "api.js": "text/javascript",
          "chart.js": "text/javascript", "dataset.js": "text/javascript",
          "format.js": "text/javascript", "model.js": "text/javascript",
          "sweeps.js": "text/javascript",
          "dashboard.css": "text/css",
          "favicon.svg": "image/svg+xml"}
"""The files under /static/ and their types: a fixed list, so no path reaches other files."""

HEADERS = {
    # Scripts, styles and fetches from this origin only; no inline script, no framing.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate, so an upgraded service serves its new page
}

router = APIRouter(route_class=IdCheckedRoute, tags=["dashboard"], include_in_schema=False)


@router.get("/")
def dashboard_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/static/{name}")
def dashboard_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise ApiError(404, f"no dashboard file {name!r}; the dashboard is at /")
    return FileResponse(STATIC_DIR / name, media_type=ASSETS[name], headers=HEADERS)
