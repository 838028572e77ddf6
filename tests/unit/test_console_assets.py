"""The console's files: every asset it names is served with its type, and the page's policy allows only
this origin, with no inline script or style (the charts and the map set styles through the CSSOM)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes import console


def test_every_asset_is_served_with_its_type_and_the_strict_policy() -> None:
    app = FastAPI()
    app.include_router(console.router)
    http = TestClient(app)
    for name, media_type in console.ASSETS.items():
        r = http.get(f"/console/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(media_type), name
        assert len(r.content) > 100, name
    page = http.get("/console/service/shop.cart")  # any other path is the page (the console routes by hash)
    assert page.headers["content-type"].startswith("text/html") and b"<script" in page.content
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["style-src"] == "'self'", policy
    assert "unsafe" not in page.headers["content-security-policy"]
