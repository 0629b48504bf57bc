"""In a real browser: the batches page follows a batch that a real `reasongen worker` process is running."""

from __future__ import annotations

import re

import pytest

from reasongen.settings import Settings
from tests.queue.conftest import broker_url, queue_settings, queue_wired, start_worker, wait_for  # noqa: F401
from tests.queue.test_workers import enqueue, finished, ready
from tests.web.browser import screenshot, sign_in
from tests.web.conftest import PASSWORD, LiveServer
from web import accounts
from web.app import create_app

pytestmark = pytest.mark.slow


def done_count(page) -> int:  # type: ignore[no-untyped-def]
    text = page.inner_text("tr[data-batch] .counts")
    return int(re.match(r"(\d+) done", text).group(1))  # type: ignore[union-attr]


def test_batches_page_updates_while_a_worker_runs_a_batch(browser, queue_settings: Settings, queue_wired,  # noqa: F811
                                                          start_worker, tmp_path):  # noqa: F811
    with queue_wired.uow() as uow:
        accounts.add_user(uow, "ada", "admin", PASSWORD)
        uow.commit()
    worker = start_worker(concurrency=1)
    ready(queue_wired, worker)
    with LiveServer(create_app(queue_settings, queue_wired)) as server:
        page = sign_in(browser, server.url, "ada", "/batches")
        assert "No batch yet" in page.inner_text("#batches")
        batch_id = enqueue(queue_wired, 24, chunk_size=4, sub_batch_size=2, backend_options={"delay_s": 0.4})
        # No reload from here on: the table polls (htmx) and must show the batch appear, move, and finish.
        page.wait_for_selector(f"tr[data-batch='{batch_id}']")
        first = done_count(page)
        wait_for(lambda: 0 < done_count(page) < 24, 60, every=0.2, what="a partly done batch on the page")
        partial = done_count(page)
        page.set_viewport_size({"width": 1440, "height": 300})
        screenshot(page, "web-batches.png", tmp_path)
        wait_for(lambda: finished(queue_wired, batch_id), 120, what="the batch to finish")
        wait_for(lambda: done_count(page) == 24, 30, every=0.2, what="the page to show 24 done")
        assert first <= partial < 24
        assert "done" in page.inner_text(f"tr[data-batch='{batch_id}']")
        page.goto(f"{server.url}/workers")
        assert worker.hostname in page.inner_text("#workers")
        page.context.close()


def test_batches_page_warns_while_no_live_worker_consumes_the_batch_queue(browser, queue_settings: Settings,  # noqa: F811
                                                                          queue_wired, start_worker):  # noqa: F811
    with queue_wired.uow() as uow:
        accounts.add_user(uow, "ada", "admin", PASSWORD)
        uow.commit()
    batch_id = enqueue(queue_wired, 4, chunk_size=2)  # on the real broker, with no worker to take it
    warning = f"[data-unserved='{batch_id}']"
    with LiveServer(create_app(queue_settings, queue_wired)) as server:
        page = sign_in(browser, server.url, "ada", "/batches")
        shown = " ".join(page.inner_text(warning).split())
        assert (f"batch {batch_id}: 2 chunk(s) queued on 'teacher', but no live worker consumes it; start one "
                f"with: reasongen worker --queues teacher") in shown  # the words `reasongen status` prints
        assert page.request.get(f"{server.url}/api/batches/{batch_id}").json()["no_worker_on"] == "teacher"
        assert page.request.get(f"{server.url}/api/batches").json()[0]["no_worker_on"] == "teacher"
        ready(queue_wired, start_worker())
        # No reload: the polled table drops the warning once a worker consumes the queue, and the batch ends.
        wait_for(lambda: page.locator(warning).count() == 0, 30, every=0.2, what="the warning to go")
        wait_for(lambda: finished(queue_wired, batch_id), 60, what="the batch to finish")
        wait_for(lambda: done_count(page) == 4, 30, every=0.2, what="the page to show 4 done")
        page.context.close()
