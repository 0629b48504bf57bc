"""`reasongen review next` driven key by key through a pseudo-terminal, like a reviewer would."""

import os
import sys
from pathlib import Path

import pexpect
import pytest

from tests.review.conftest import draft, events

REASONGEN = str(Path(sys.executable).with_name("reasongen"))


def _spawn(db_url: str, tmp_path: Path, *args: str) -> pexpect.spawn:
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import sys\np = sys.argv[1]\nt = open(p, encoding='utf-8').read()\n"
        "t = t.replace('=== response ===\\n', '=== response ===\\nEdited in the loop. ', 1)\n"
        "open(p, 'w', encoding='utf-8').write(t)\n", encoding="utf-8")
    env = {**os.environ, "REASONGEN_DATABASE_URL": db_url, "TERM": "xterm", "COLUMNS": "140", "LINES": "50",
           "EDITOR": f"{sys.executable} {editor}"}
    env.pop("REASONGEN_REVIEWER", None)
    return pexpect.spawn(REASONGEN, ["review", "next", *args], env=env, encoding="utf-8", timeout=60,
                         dimensions=(50, 140))


@pytest.mark.slow
def test_review_loop_approve_reject_edit_skip_quit(wired, drafts, db_url, tmp_path):
    child = _spawn(db_url, tmp_path, "--reviewer", "pat")
    # Pending drafts come oldest first: en-1, en-2, ja-1, zh-1 (en-bad failed and is not offered).
    child.expect("4 pending left")
    child.send("x")
    child.expect("unknown key")
    child.send("a")  # one key, no Enter: raw mode
    child.expect("approve done")
    child.expect("3 pending left")
    child.send("r")
    child.expect("Why is it rejected")
    child.sendline("The summary misses the point.")
    child.expect("reject done")
    child.expect("2 pending left")
    child.send("s")
    child.expect("1 pending left")  # ja-1 skipped: zh-1 is next; the count leaves skipped drafts out
    child.send("e")
    child.expect("edit done")
    child.expect("1 pending left")  # the edited draft is still pending and shown again
    child.send("q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before

    en1, en2, ja, zh = (draft(wired, drafts[k]) for k in ("en-1", "en-2", "ja-1", "zh-1"))
    assert (en1.status, en1.reviewer, en1.version) == ("approved", "pat", 2)
    assert (en2.status, en2.review_note, en2.reviewer) == ("rejected", "The summary misses the point.", "pat")
    assert (ja.status, ja.version, events(wired, drafts["ja-1"])) == ("pending", 1, [])
    assert (zh.status, zh.edited, zh.response) == ("pending", True, "Edited in the loop. Fine-tuning adapts a model.")
    assert [e.action for e in events(wired, drafts["zh-1"])] == ["edit"]


@pytest.mark.slow
def test_an_empty_note_cancels_the_rejection_and_the_loop_ends_when_nothing_is_left(wired, drafts, db_url, tmp_path):
    child = _spawn(db_url, tmp_path, "--where", "lang=zh")
    child.expect("1 pending left")
    child.send("r")
    child.expect("Why is it rejected")
    child.sendline("")
    child.expect("Not rejected: a rejection needs a note")
    child.expect("1 pending left")
    child.send("a")
    child.expect("No pending drafts left")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    zh = draft(wired, drafts["zh-1"])
    assert zh.status == "approved" and zh.reviewer  # the login name, since no --reviewer was given
