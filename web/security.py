"""Who is asking, and may they: sessions or API tokens on every route, CSRF on every state change, roles.

One global dependency (:func:`guard`) runs before every route, so a new route is protected without anyone
remembering to protect it; only ``PUBLIC`` paths (and /static, which holds no data) answer anonymously.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from reasongen.bootstrap import Wiring
from web import accounts
from web.accounts import Principal

PUBLIC = frozenset({"/healthz", "/login"})
SESSION_COOKIE = "rg_session"
LOGIN_CSRF_COOKIE = "rg_login_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class NotSignedIn(Exception):
    """No valid session or token: pages redirect to the login form, the API answers 401."""


def wiring_of(request: Request) -> Wiring:
    wiring: Wiring = request.app.state.wiring  # starlette's State holds untyped attributes
    return wiring


def _resolve(wiring: Wiring, request: Request) -> Principal | None:
    auth = request.headers.get("authorization", "")
    with wiring.uow() as uow:
        if auth.lower().startswith("bearer "):
            return accounts.from_api_token(uow, auth[7:].strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        return accounts.from_session(uow, cookie) if cookie else None


async def guard(request: Request) -> None:
    if request.url.path in PUBLIC:
        return
    principal = await run_in_threadpool(_resolve, wiring_of(request), request)
    if principal is None:
        raise NotSignedIn()
    request.state.principal = principal
    if request.method not in SAFE_METHODS and principal.csrf_token is not None:
        await _check_csrf(request, principal.csrf_token)


async def _check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(FORM_TYPES):
        value = (await request.form()).get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, expected):
        raise HTTPException(403, "CSRF token missing or wrong; reload the page and try again")


def me(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def admin(principal: Principal = Depends(me)) -> Principal:
    if not principal.is_admin:
        raise HTTPException(403, "admins only")
    return principal


def not_signed_in(request: Request, _exc: Exception) -> Response:
    wants_page = "text/html" in request.headers.get("accept", "") and not request.url.path.startswith("/api")
    if wants_page and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    return JSONResponse({"detail": "sign in first (session cookie or 'Authorization: Bearer TOKEN')"},
                        status_code=401)


# -- login / logout ------------------------------------------------------------------------------
router = APIRouter(include_in_schema=False)


def _cookie_args(request: Request) -> dict[str, Any]:
    # Secure behind TLS (uvicorn --proxy-headers turns X-Forwarded-Proto into the scheme).
    return {"httponly": True, "samesite": "lax", "secure": request.url.scheme == "https", "path": "/"}


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/") and not target.startswith("//") else "/desk"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None, failed: bool = False) -> Response:
    token = secrets.token_urlsafe(24)
    page: Response = request.app.state.templates.TemplateResponse(
        request, "login.html", {"csrf": token, "next": _safe_next(next), "failed": failed},
        status_code=401 if failed else 200)
    page.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, **_cookie_args(request))
    return page


@router.post("/login")
def login(request: Request, name: str = Form(...), password: str = Form(...), csrf_token: str = Form(""),
          next: str = Form("/desk")) -> Response:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, csrf_token):
        raise HTTPException(403, "CSRF token missing or wrong; reload the login page")
    with wiring_of(request).uow() as uow:
        user = accounts.authenticate(uow, name, password)
        token = accounts.start_session(uow, user) if user else None
        uow.commit()
    if token is None:
        return RedirectResponse(f"/login?failed=1&next={quote(_safe_next(next))}", status_code=303)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(accounts.SESSION_TTL.total_seconds()),
                        **_cookie_args(request))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with wiring_of(request).uow() as uow:
            uow.users.end_session(accounts.digest(cookie))
            uow.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
