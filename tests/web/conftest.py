"""Web fixtures: the app on a real PostgreSQL, signed-in test clients, and a real uvicorn server for the browser."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from reasongen.bootstrap import Wiring, bootstrap
from reasongen.settings import Settings
from tests.review.conftest import make_drafts
from web import accounts
from web.app import create_app

PASSWORD = "correct horse battery"
USERS = {"ada": "admin", "rex": "reviewer", "rita": "reviewer"}


@pytest.fixture
def web_settings(pg_url: str) -> Settings:
    return Settings(database_url=pg_url, broker_url=None, templates_dir=None)


@pytest.fixture
def web_wired(web_settings: Settings) -> Iterator[Wiring]:
    wired = bootstrap(web_settings)
    with wired.uow() as uow:
        for name, role in USERS.items():
            accounts.add_user(uow, name, role, PASSWORD)
        uow.commit()
    yield wired
    wired.close()


@pytest.fixture
def drafts(web_wired: Wiring) -> dict[str, int]:
    return make_drafts(web_wired)


@pytest.fixture
def app(web_settings: Settings, web_wired: Wiring):  # type: ignore[no-untyped-def]
    return create_app(web_settings, web_wired)


def login(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Sign in through the form (as a browser does); returns the session's CSRF token."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    done = client.post("/login", data={"name": name, "password": password, "csrf_token": token, "next": "/desk"},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/desk", done.text
    desk = client.get("/desk")
    return re.search(r'name="csrf-token" content="([^"]+)"', desk.text).group(1)  # type: ignore[union-attr]


@pytest.fixture
def signed_in(app) -> Callable[[str], tuple[TestClient, str]]:  # type: ignore[no-untyped-def]
    """signed_in(name) -> (client with the session cookie, its CSRF token)."""
    clients: list[TestClient] = []

    def make(name: str) -> tuple[TestClient, str]:
        client = TestClient(app)
        clients.append(client)
        return client, login(client, name)

    yield make
    for c in clients:
        c.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, app: Any):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 30 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from tests.web.browser import launch

    yield from launch()
