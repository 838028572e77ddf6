"""The web console: one HTML page, its JS and CSS files from api/console/, no build step.

`/` and any `/console/<page>` path answer the page (the console routes by URL hash); the assets (and
the vendored libraries, api/console/vendor/README.md) answer under `/console/`. A strict
Content-Security-Policy allows only this origin: the console loads nothing from elsewhere (no CDN)
and never runs inline script.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter(tags=["console"], include_in_schema=False)

CONSOLE = Path(__file__).resolve().parents[1] / "console"
ASSETS = {"console.js": "text/javascript", "map.js": "text/javascript", "console.css": "text/css",
          "vendor/dagre-3.1.3.min.js": "text/javascript"}
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                      "object-src 'none'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def _page() -> FileResponse:
    return FileResponse(CONSOLE / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/")
def console_home() -> FileResponse:
    return _page()


@router.get("/console/{name:path}")
def console_file(name: str) -> FileResponse:
    if name in ASSETS:
        return FileResponse(CONSOLE / name, media_type=ASSETS[name], headers=HEADERS)
    return _page()
