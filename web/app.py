"""The ASGI app: pages and a JSON API over the CLI's services; every route behind :func:`web.security.guard`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from reasongen import __version__
from reasongen.bootstrap import Wiring, bootstrap
from reasongen.settings import Settings
from review.rules import ConflictError, DraftNotFoundError, ReviewError
from web import admin, api, desk, metrics, monitor, security
from web.decisions import ConflictResponse
from web.render import register_filters

HERE = Path(__file__).parent


def create_app(settings: Settings, wiring: Wiring | None = None) -> FastAPI:
    wired = wiring or bootstrap(settings)
    app = FastAPI(
        title="reasongen", version=__version__, dependencies=[Depends(security.guard)],
        docs_url=None, redoc_url=None, openapi_url=None,  # the schema is served behind the guard, below
        description="Review desk, monitoring and metrics. Every route but /healthz and /login needs a session "
                    "cookie (browser) or 'Authorization: Bearer TOKEN' (reasongen users token NAME).",
    )
    app.state.wiring = wired
    app.state.templates = templates = Jinja2Templates(directory=HERE / "templates")
    register_filters(templates.env)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (security, desk, api, monitor, admin, metrics):
        app.include_router(module.router)
    _errors(app)
    app.middleware("http")(_timed)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.on_event("shutdown")
    def _close() -> None:
        if wiring is None:
            wired.close()

    return app


async def _timed(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    start = time.perf_counter()
    response = await call_next(request)
    elapsed = time.perf_counter() - start
    # Server time, read by bench/web_bench.py (it excludes the client and the network).
    response.headers["Server-Timing"] = f"app;dur={elapsed * 1000:.2f}"
    metrics.observe_request(request, response.status_code, elapsed)
    return response


def _errors(app: FastAPI) -> None:
    app.add_exception_handler(security.NotSignedIn, security.not_signed_in)

    def status_for(exc: Exception) -> int:
        if isinstance(exc, (ConflictError, ConflictResponse)):
            return 409
        if isinstance(exc, (DraftNotFoundError, LookupError)):
            return 404
        return 400

    def handler(_request: Request, exc: Exception) -> Response:
        body: dict[str, Any] = {"detail": str(exc)}
        body.update(getattr(exc, "web_payload", {}))
        return JSONResponse(body, status_code=status_for(exc))

    for kind in (ReviewError, ValueError, LookupError, ConflictResponse):
        app.add_exception_handler(kind, handler)
