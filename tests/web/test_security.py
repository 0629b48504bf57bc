"""Every route refuses strangers; CSRF on state changes; record text is inert; roles hold; disabling bites at once."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.helpers import add_records
from tests.web.conftest import PASSWORD, login
from web import accounts

OPEN = {"/healthz", "/login"}


def all_routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(method, path) of every route, included routers unfolded."""
    found: list[tuple[str, str]] = []

    def walk(routes):  # type: ignore[no-untyped-def]
        for route in routes:
            if hasattr(route, "original_router"):
                walk(route.original_router.routes)
            elif isinstance(route, APIRoute):
                found.extend((m, route.path) for m in sorted(route.methods))
    walk(app.router.routes)
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_but_healthz_and_login_refuses_without_a_session(app, drafts):
    routes = all_routes(app)
    assert len(routes) > 35 and ("GET", "/metrics") in routes and ("POST", "/api/drafts/{draft_id}/decision") in routes
    anonymous = TestClient(app)
    for method, path in routes:
        if path in OPEN:
            continue
        for accept in ("application/json", "text/html"):
            r = anonymous.request(method, concrete(path), headers={"accept": accept}, follow_redirects=False)
            refused = r.status_code == 401 or (r.status_code == 303 and r.headers["location"].startswith("/login"))
            assert refused, f"{method} {path} answered {r.status_code} without a session"
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    assert anonymous.get("/api/openapi.json").status_code == 401
    assert anonymous.get("/desk", headers={"authorization": "Bearer rg_forged"}).status_code == 401


def test_state_changes_need_the_session_csrf_token(signed_in, drafts, app):
    rex, csrf = signed_in("rex")
    url = f"/api/drafts/{drafts['en-1']}/decision"
    body = {"action": "approve", "version": 1}
    assert rex.post(url, json=body).status_code == 403
    assert rex.post(url, json=body, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    rita, rita_csrf = signed_in("rita")
    assert rex.post(url, json=body, headers={"X-CSRF-Token": rita_csrf}).status_code == 403  # another session's
    assert rex.post("/logout", data={}, follow_redirects=False).status_code == 403
    assert rex.post(url, json=body, headers={"X-CSRF-Token": csrf}).status_code == 200


def test_login_form_needs_its_csrf_cookie_and_a_right_password(app):
    client = TestClient(app)
    no_cookie = client.post("/login", data={"name": "rex", "password": PASSWORD, "csrf_token": "x"},
                            follow_redirects=False)
    assert no_cookie.status_code == 403
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    wrong = client.post("/login", data={"name": "rex", "password": "nope", "csrf_token": token},
                        follow_redirects=False)
    assert wrong.status_code == 303 and "failed=1" in wrong.headers["location"]
    assert "rg_session" not in client.cookies


def test_session_cookie_is_httponly_samesite_and_secure_behind_tls(app):
    plain = TestClient(app)
    login(plain, "rex")
    tls = TestClient(app, base_url="https://testserver")
    page = tls.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    done = tls.post("/login", data={"name": "rex", "password": PASSWORD, "csrf_token": token},
                    follow_redirects=False)
    cookie = [h for h in done.headers.get_list("set-cookie") if h.startswith("rg_session=")][0].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie
    plain_page = TestClient(app).get("/login")
    assert "secure" not in plain_page.headers["set-cookie"].lower()


def test_record_with_script_and_html_is_shown_inert(signed_in, web_wired):
    with web_wired.uow() as uow:
        add_records(uow, "evil", [{"key": "x<b>", "instruction": '<script>window.pwned=1</script><img src=x '
                                   'onerror="window.pwned=2">', "output": "<i>ref</i>"}])
    from generation.backends import create_backend
    from generation.run import generate_drafts
    from generation.templates import load_template

    with web_wired.uow() as uow:
        ids = uow.records.ids(uow.records.dataset("evil").id)
    generate_drafts(web_wired.uow, ids, create_backend("fake", web_wired.settings), load_template())
    rex, _ = signed_in("rex")
    html = rex.get("/desk", params={"dataset": "evil"}).text
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html
    assert "<script>window.pwned" not in html and "<img src=x" not in html and "<i>ref</i>" not in html


@pytest.mark.parametrize("method,path", [
    ("GET", "/admin/users"), ("GET", "/adjudicate"), ("GET", "/api/users"), ("GET", "/api/adjudication"),
    ("POST", "/api/users"), ("POST", "/api/users/rita/disable"), ("POST", "/admin/users/rita/disable"),
    ("POST", "/api/batches/1/cancel"), ("POST", "/api/batches/1/resume"), ("POST", "/api/drafts/1/adjudicate"),
    ("PUT", "/api/datasets/d/required-decisions?n=2"), ("POST", "/admin/required-decisions"),
])
def test_reviewer_cannot_reach_admin_actions(signed_in, drafts, web_wired, method, path):
    rex, csrf = signed_in("rex")
    body = {"json": {"name": "mallory", "role": "admin", "password": "x" * 12, "action": "approve", "version": 1}}
    if path.startswith("/admin/"):
        body = {"data": {"csrf_token": csrf, "name": "mallory", "dataset": "d", "n": "2"}}
    r = rex.request(method, path, headers={"X-CSRF-Token": csrf}, **body)  # type: ignore[arg-type]
    assert r.status_code == 403, r.text
    with web_wired.uow() as uow:
        assert uow.users.by_name("mallory") is None
        assert uow.users.by_name("rita").disabled_at is None  # type: ignore[union-attr]
    ada, ada_csrf = signed_in("ada")
    assert ada.request(method, path, headers={"X-CSRF-Token": ada_csrf}, **body).status_code != 403  # type: ignore[arg-type]


def test_disabled_users_session_and_token_stop_working_at_once(signed_in, web_wired):
    rex, _ = signed_in("rex")
    with web_wired.uow() as uow:
        token = accounts.new_token(uow, "rex")
        uow.commit()
    assert rex.get("/desk").status_code == 200
    assert TestClient(rex.app).get("/api/drafts", headers={"authorization": f"Bearer {token}"}).status_code == 200
    ada, ada_csrf = signed_in("ada")
    assert ada.post("/api/users/rex/disable", headers={"X-CSRF-Token": ada_csrf}).status_code == 200
    assert rex.get("/desk", headers={"accept": "text/html"}, follow_redirects=False).status_code == 303
    assert rex.get("/api/drafts").status_code == 401
    assert TestClient(rex.app).get("/api/drafts", headers={"authorization": f"Bearer {token}"}).status_code == 401
    relogin = TestClient(rex.app)
    page = relogin.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    again = relogin.post("/login", data={"name": "rex", "password": PASSWORD, "csrf_token": csrf},
                         follow_redirects=False)
    assert "failed=1" in again.headers["location"]


def test_api_token_works_without_csrf_for_scripts(app, drafts, web_wired):
    with web_wired.uow() as uow:
        token = accounts.new_token(uow, "rex")
        uow.commit()
    script = TestClient(app, headers={"authorization": f"Bearer {token}"})
    r = script.post(f"/api/drafts/{drafts['en-1']}/decision", json={"action": "approve", "version": 1})
    assert r.status_code == 200
    assert script.get("/api/openapi.json").json()["paths"]["/api/drafts"]
