"""The `reasongen review` commands, run through the real Typer app on the test database."""

import json
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

REASONGEN = str(Path(sys.executable).with_name("reasongen"))  # the installed console script
from tests.review.conftest import draft, events


@pytest.fixture
def cli(db_url):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict | None = None):  # type: ignore[no-untyped-def]
        env = {"REASONGEN_DATABASE_URL": db_url, "REASONGEN_REVIEWER": "tester", "COLUMNS": "160", **(env or {})}
        return runner.invoke(app, ["review", *args], input=input, env=env)

    return invoke


def test_list_json_applies_the_filters(cli, drafts):
    result = cli("list", "--lang", "en", "--flag", "none", "--json")
    assert result.exit_code == 0, result.output
    assert [(d["id"], d["status"]) for d in json.loads(result.stdout)] == [
        (drafts["en-1"], "pending"), (drafts["en-bad"], "failed")]
    table = cli("list", "--where", "flag=lang_mismatch")
    assert "d/en-2" in table.stdout and "d/en-1" not in table.stdout and "1 of 1 drafts" in table.stdout


def test_show_puts_source_and_draft_side_by_side(cli, drafts):
    result = cli("show", str(drafts["ja-1"]))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # The Japanese source and the English restructured instruction share a line (side by side).
    assert any("Source record (Japanese)" in line and "Restructured" in line for line in lines)
    assert any("二たす二は？" in line and "Read the following Japanese" in line for line in lines)
    assert "[stand-in translation]" in result.stdout  # brackets in text are not markup
    shown = json.loads(cli("show", str(drafts["zh-1"]), "--json").stdout)
    assert shown["restructured"]["input"] == "什么是微调？\n\n请简要回答。"
    assert (shown["version"], shown["record"]["key"]) == (1, "zh-1")


def test_approve_reject_and_their_exit_codes(cli, wired, drafts):
    ok = cli("approve", str(drafts["en-1"]), f"{drafts['ja-1']}@1")
    assert ok.exit_code == 0 and f"draft {drafts['en-1']}: approve done (version 2)" in ok.stdout
    stale = cli("reject", f"{drafts['en-1']}@1", "--note", "late")
    assert stale.exit_code == 3
    assert f"draft {drafts['en-1']} changed since you loaded it (version 1 -> 2 by tester" in stale.stderr
    illegal = cli("approve", str(drafts["en-bad"]))  # its status does not allow it: a conflict, like a stale version
    assert illegal.exit_code == 3 and "its generation failed" in illegal.stderr
    assert cli("reject", str(drafts["zh-1"])).exit_code == 2  # --note is required
    rejected = cli("reject", str(drafts["zh-1"]), "--note", "Translate first.", "--reviewer", "dana")
    assert rejected.exit_code == 0
    zh = draft(wired, drafts["zh-1"])
    assert (zh.status, zh.review_note, zh.reviewer) == ("rejected", "Translate first.", "dana")
    assert cli("approve", "12x").exit_code == 2
    assert cli("approve").exit_code == 2  # neither ids nor --where


def test_bulk_approve_and_auto_need_to_be_asked(cli, wired, drafts):
    dry = cli("approve", "--where", "lang=en,flags=none", "--dry-run")
    assert dry.exit_code == 0 and f"would approve 1 drafts: {drafts['en-1']}" in dry.stdout
    assert draft(wired, drafts["en-1"]).status == "pending"
    refused = cli("auto")
    assert refused.exit_code == 1 and "3 unflagged pending drafts would be approved" in refused.stderr
    assert draft(wired, drafts["en-1"]).status == "pending"
    assert "would auto-approve 3 drafts" in cli("auto", "--dry-run").stdout
    done = cli("auto", "--yes", "--where", "lang=en")
    assert done.exit_code == 0 and "auto-approve: 1 of 1 drafts" in done.stdout
    assert [d.status for d in (draft(wired, drafts["en-1"]), draft(wired, drafts["en-2"]))] == ["approved", "pending"]


def test_export_edit_in_a_spreadsheet_import(cli, wired, drafts, tmp_path):
    out = tmp_path / "pending.csv"
    exported = cli("export", "--status", "pending", "--format", "csv", "--out", str(out))
    assert exported.exit_code == 0 and "exported 4 drafts" in exported.stderr
    text = out.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    header = lines[0].split(",")
    assert header[-2:] == ["decision", "note"]
    # Decide en-1 (approve) and break the id of another row, as a spreadsheet user might.
    lines[1] = lines[1][: -len(",,")] + ",approve,"
    lines[2] = "x" + lines[2]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("import", str(out))
    assert result.exit_code == 1
    assert f"{out}:3: id must be a whole number" in result.stderr
    assert "applied 1, left alone 2, could not apply 1" in result.stdout
    assert draft(wired, drafts["en-1"]).status == "approved"
    assert cli("import", str(tmp_path / "missing.csv")).exit_code == 2


def test_history_json(cli, drafts):
    cli("reject", str(drafts["ja-1"]), "--note", "wrong")
    cli("reset", str(drafts["ja-1"]), "--reviewer", "erin")
    history = json.loads(cli("history", str(drafts["ja-1"]), "--json").stdout)
    assert [(e["reviewer"], e["action"], e["from_status"], e["to_status"], e["note"]) for e in history] == [
        ("tester", "reject", "pending", "rejected", "wrong"), ("erin", "reset", "rejected", "pending", None)]
    assert history[1]["before"] == {"status": "rejected", "review_note": "wrong"}
    shown = cli("history", str(drafts["ja-1"]))
    assert "erin" in shown.stdout and "reset" in shown.stdout and "rejected -> pending" in shown.stdout
    assert cli("history", "999").exit_code == 4


@pytest.mark.parametrize("args", [("show", "999"), ("history", "999"), ("approve", "999"), ("reset", "999"),
                                  ("reject", "999", "--note", "x"), ("edit", "999"), ("approve", "998", "999")])
def test_a_missing_draft_is_exit_4_for_every_command(cli, drafts, args):
    result = cli(*args)
    assert result.exit_code == 4, result.output
    assert result.stderr.startswith("error: no draft 99") and "Traceback" not in result.output


def test_approving_an_approved_draft_is_a_no_op_with_a_note(cli, wired, drafts):
    assert cli("approve", str(drafts["en-1"])).exit_code == 0
    again = cli("approve", str(drafts["en-1"]))
    assert again.exit_code == 0, again.output
    assert f"draft {drafts['en-1']} is already approved; nothing to do" in again.stdout
    assert draft(wired, drafts["en-1"]).version == 2  # no second decision recorded
    assert [e.action for e in events(wired, drafts["en-1"])] == ["approve"]


# -- edit with a scripted $EDITOR ------------------------------------------------------------------

def _editor(tmp_path, body: str) -> str:
    """A small Python program used as $EDITOR; it gets the file path as its argument."""
    script = tmp_path / "editor.py"
    script.write_text("import os, re, subprocess, sys\npath = sys.argv[1]\ntext = open(path, encoding='utf-8').read()\n"
                      + textwrap.dedent(body) + "\nopen(path, 'w', encoding='utf-8').write(text)\n", encoding="utf-8")
    return f"{sys.executable} {script}"


REPLACE_REASONING = """
text = re.sub(r"(=== reasoning ===\\n).*?(\\n=== )", lambda m: m.group(1) + "Edited: 日本語の推論。" + m.group(2), text, flags=re.S)
"""


def test_edit_applies_what_was_saved(cli, wired, drafts, tmp_path):
    result = cli("edit", str(drafts["ja-1"]), env={"EDITOR": _editor(tmp_path, REPLACE_REASONING)})
    assert result.exit_code == 0, result.output
    ja = draft(wired, drafts["ja-1"])
    assert (ja.reasoning, ja.edited, ja.version, ja.status) == ("Edited: 日本語の推論。", True, 2, "pending")
    assert [e.action for e in events(wired, drafts["ja-1"])] == ["edit"]


def test_invalid_content_reopens_the_editor_until_it_is_valid(cli, wired, drafts, tmp_path):
    # First save empties the response (invalid); the reviewer says yes, the second save fixes it.
    body = """
    if "# NOT APPLIED" not in text:
        text = re.sub(r"(=== response ===\\n).*", lambda m: m.group(1), text, flags=re.S)
    else:
        assert "response of draft" in text  # the reason is shown in the reopened file
        text = text.rstrip() + "\\nFour, fixed.\\n"
    """
    result = cli("edit", str(drafts["ja-1"]), input="y\n", env={"EDITOR": _editor(tmp_path, body)})
    assert result.exit_code == 0, result.output
    assert "must not be empty" in result.stderr
    assert draft(wired, drafts["ja-1"]).response == "Four, fixed."


def test_invalid_content_can_be_abandoned(cli, wired, drafts, tmp_path):
    body = 'text = text.replace("=== response ===", "=== answer ===")'
    result = cli("edit", str(drafts["ja-1"]), input="n\n", env={"EDITOR": _editor(tmp_path, body)})
    assert result.exit_code == 1
    assert "unknown section 'answer'" in result.stderr and "edit aborted" in result.stdout
    assert draft(wired, drafts["ja-1"]).version == 1


def test_a_change_made_while_editing_is_a_conflict_and_the_edit_is_kept(cli, wired, drafts, tmp_path, db_url):
    # While the file is open, another reviewer approves the draft through the real CLI.
    body = f"""
    env = dict(os.environ, REASONGEN_DATABASE_URL={db_url!r})
    subprocess.run([{REASONGEN!r}, "review", "approve", "{drafts['ja-1']}", "--reviewer", "bob"],
                   env=env, check=True, capture_output=True)
    {REPLACE_REASONING.strip()}
    """
    result = cli("edit", str(drafts["ja-1"]), env={"EDITOR": _editor(tmp_path, body)})
    assert result.exit_code == 3
    assert f"draft {drafts['ja-1']} changed since you loaded it (version 1 -> 2 by bob" in result.stderr
    kept = result.stderr.split("your edit is kept in ")[1].split()[0]
    assert "Edited: 日本語の推論。" in open(kept, encoding="utf-8").read()
    ja = draft(wired, drafts["ja-1"])
    assert (ja.status, ja.edited, ja.version) == ("approved", False, 2)  # bob's approval is not overwritten


@pytest.mark.parametrize("args", [("list", "--where", "colour=red"), ("export", "--where", "colour=red"),
                                  ("approve", "--where", "colour=red"), ("export", "--out", "x.xlsx")])
def test_bad_filters_and_formats_are_one_clear_line(cli, drafts, args):
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output


def test_next_reads_lines_when_stdin_is_not_a_terminal(cli, wired, drafts):
    result = cli("next", "--where", "lang=en", input="approve\nz\nr\nToo vague.\n")  # then end of input: quit
    assert result.exit_code == 0, result.output
    assert "2 pending left" in result.stdout and "unknown key" in result.stdout
    assert "session: approve 1, reject 1" in result.stdout
    en1, en2 = draft(wired, drafts["en-1"]), draft(wired, drafts["en-2"])
    assert (en1.status, en1.reviewer, en2.status, en2.review_note) == ("approved", "tester", "rejected", "Too vague.")


def test_visual_wins_over_editor(cli, wired, drafts, tmp_path):
    failing = tmp_path / "failing.py"
    failing.write_text("import sys\nsys.exit(5)\n", encoding="utf-8")
    env = {"VISUAL": _editor(tmp_path, REPLACE_REASONING), "EDITOR": f"{sys.executable} {failing}"}
    result = cli("edit", str(drafts["ja-1"]), env=env)
    assert result.exit_code == 0, result.output
    assert draft(wired, drafts["ja-1"]).reasoning == "Edited: 日本語の推論。"
    only_editor = cli("edit", str(drafts["zh-1"]), input="n\n", env={"VISUAL": "", "EDITOR": env["EDITOR"]})
    assert only_editor.exit_code == 2 and "Editing failed" in only_editor.stderr  # $EDITOR is used without $VISUAL


@pytest.mark.slow
def test_ctrl_c_in_review_next_is_one_line_and_exit_130(wired, drafts, db_url):
    import os

    import pexpect

    env = {**os.environ, "REASONGEN_DATABASE_URL": db_url, "TERM": "xterm", "COLUMNS": "120"}
    env.pop("REASONGEN_DEBUG", None)
    child = pexpect.spawn(REASONGEN, ["review", "next"], env=env, encoding="utf-8", timeout=60, dimensions=(50, 120))
    child.expect("4 pending left")
    child.send("\x03")  # Ctrl-C while Click's getchar waits for a key
    child.expect("interrupted")
    assert "error:" in child.before  # (coloured)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130 and "Traceback" not in child.before
