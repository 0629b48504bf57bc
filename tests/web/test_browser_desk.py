"""In a real browser: sign in, review with the keyboard, bulk approve by filter, two reviewers reach adjudication."""

from __future__ import annotations

from typing import Any

from tests.queue.conftest import wait_for
from tests.review.conftest import draft, events
from tests.web.browser import screenshot, sign_in
from tests.web.judged import add_judgement

pytestmark = __import__("pytest").mark.slow


def shown(page: Any) -> int:
    return int(page.get_attribute("#desk", "data-draft-id"))


def test_review_with_the_keyboard_approve_reject_edit_undo(browser, live_server, drafts, web_wired, tmp_path):
    add_judgement(web_wired, drafts["ja-1"], 2.5)
    page = sign_in(browser, live_server.url, "rex")
    order = [drafts[k] for k in ("en-1", "en-2", "ja-1", "zh-1")]
    assert shown(page) == order[0]
    page.keyboard.press("?")
    assert page.is_visible("#help")
    page.keyboard.press("Escape")

    page.keyboard.press("a")  # approve en-1, move on
    page.wait_for_function(f"document.querySelector('#desk').dataset.draftId == '{order[1]}'")
    assert draft(web_wired, order[0]).status == "approved"

    page.keyboard.press("r")  # reject en-2 with a note
    page.keyboard.type("The reasoning skips the input.")
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelector('#desk').dataset.draftId == '{order[2]}'")
    rejected = draft(web_wired, order[1])
    assert (rejected.status, rejected.review_note) == ("rejected", "The reasoning skips the input.")

    assert "二たす二は？" in page.inner_text("#desk")  # CJK record text, as text
    assert "never translates the input" in page.inner_text(".judge")  # the judge's reason, highlighted
    screenshot(page, "web-desk.png", tmp_path)
    page.keyboard.press("e")  # edit ja-1 in place
    area = page.locator("textarea[data-field=reasoning]")
    area.fill("Translate 二たす二は？ first: 'two plus two?'. Then answer: four.")
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    wait_for(lambda: draft(web_wired, order[2]).edited, 20, what="edit saved")
    assert draft(web_wired, order[2]).reasoning.startswith("Translate 二たす二は？")

    with page.expect_navigation():
        page.keyboard.press("u")  # undo the edit; the desk shows the draft undone
    wait_for(lambda: not draft(web_wired, order[2]).reasoning.startswith("Translate"), 20, what="undo")
    assert [e.action for e in events(web_wired, order[2])] == ["edit", "edit"]

    page.keyboard.press("j")  # next, then back
    page.wait_for_function(f"document.querySelector('#desk').dataset.draftId == '{order[3]}'")
    page.keyboard.press("k")
    page.wait_for_function(f"document.querySelector('#desk').dataset.draftId == '{order[2]}'")
    page.context.close()


def test_bulk_approve_by_filter_after_a_count_preview(browser, live_server, drafts, web_wired):
    page = sign_in(browser, live_server.url, "rex")
    page.goto(f"{live_server.url}/desk/bulk?status=pending&lang=en")
    assert page.inner_text("#bulk-count") == "2"
    page.once("dialog", lambda d: d.accept())
    page.keyboard.press("a")
    page.wait_for_selector("#message.ok")
    assert "approve: 2 of 2" in page.inner_text("#message")
    assert {draft(web_wired, drafts[k]).status for k in ("en-1", "en-2")} == {"approved"}
    assert draft(web_wired, drafts["ja-1"]).status == "pending"
    page.context.close()


def test_two_reviewers_disagree_and_an_admin_adjudicates(browser, live_server, drafts, web_wired):
    admin = sign_in(browser, live_server.url, "ada", "/adjudicate")  # not the desk: that would take a place
    admin.select_option("select[name=dataset]", "d")
    admin.fill("input[name=n]", "2")
    admin.click("form.inline button[type=submit]")
    admin.wait_for_selector("text=d: 2")

    rex, rita = sign_in(browser, live_server.url, "rex"), sign_in(browser, live_server.url, "rita")
    target = drafts["en-1"]
    assert shown(rex) == shown(rita) == target  # two places per draft: both may hold it
    rex.keyboard.press("a")
    rex.wait_for_function(f"document.querySelector('#desk').dataset.draftId != '{target}'")
    rita.keyboard.press("r")
    rita.keyboard.type("Wrong answer.")
    rita.keyboard.press("Enter")
    rita.wait_for_function(f"document.querySelector('#desk').dataset.draftId != '{target}'")
    assert draft(web_wired, target).status == "pending"  # disagreement: nobody's decision wins alone

    rex.goto(f"{live_server.url}/desk?draft={target}&status=")
    assert "you can read it, not decide it" in rex.inner_text("#desk")  # never the same draft twice

    admin.goto(f"{live_server.url}/adjudicate")
    card = admin.locator(f"article[data-draft-id='{target}']")
    assert "rex: approve" in card.inner_text() and "rita: reject" in card.inner_text()
    card.locator("button[data-action=approve]").click()
    admin.wait_for_selector("#message.ok")
    settled = draft(web_wired, target)
    assert (settled.status, settled.reviewer) == ("approved", "ada")
    for page in (admin, rex, rita):
        page.context.close()


def test_a_stale_decision_shows_both_versions(browser, live_server, drafts, web_wired):
    rex = sign_in(browser, live_server.url, "rex")
    target = shown(rex)
    rita = sign_in(browser, live_server.url, "rita", f"/desk?draft={target}")
    assert shown(rita) == target
    rex.keyboard.press("e")
    rex.locator("textarea[data-field=response]").fill("Rex's new response")
    with rex.expect_navigation():
        rex.keyboard.press("Control+Enter")
    rita.keyboard.press("a")  # rita still has version 1 on screen
    rita.wait_for_selector("#conflict:not(.hidden)")
    assert "Rex's new response" in rita.inner_text("#conflict-current")
    assert "approve" in rita.inner_text("#conflict-yours")
    assert draft(web_wired, target).status == "pending"
    with rita.expect_navigation():
        rita.click("#conflict-reload")
    assert "Rex's new response" in rita.inner_text("#desk")
    for page in (rex, rita):
        page.context.close()
