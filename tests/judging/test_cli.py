"""The gate from the command line: policy set/list/show, generate --judge --policy --then (held, then
released), status's "waiting for review", review apply-policy and agreement, judge; clear errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app
from tests.judging.conftest import followups, seed  # noqa: F401 - a fixture

runner = CliRunner()


def cli(db_url: str, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["--database-url", db_url, *args])


def text(result) -> str:  # type: ignore[no-untyped-def]
    return " ".join(result.output.split())  # Rich wraps at the terminal width


def test_policy_commands(wired, db_url):
    made = cli(db_url, "policy", "set", "strict", "--approve-min", "4", "--reject-max", "2", "--require-no-flags")
    assert made.exit_code == 0, made.output
    assert "policy:strict@" in made.output
    listed = json.loads(cli(db_url, "policy", "list", "--json").output)
    assert listed[0]["name"] == "strict" and listed[0]["require_no_flags"] is True
    changed = cli(db_url, "policy", "set", "strict", "--approve-min", "4.5", "--reject-max", "2")
    assert json.loads(cli(db_url, "policy", "show", "strict", "--json").output)["hash"] != listed[0]["hash"]
    assert changed.exit_code == 0
    bad = cli(db_url, "policy", "set", "odd", "--approve-min", "2", "--reject-max", "3")
    assert bad.exit_code != 0 and "reject-max < --approve-min" in text(bad)
    missing = cli(db_url, "policy", "show", "nope")
    assert missing.exit_code != 0 and "No policy named 'nope'" in text(missing)


def _held_batch(wired, db_url) -> None:  # type: ignore[no-untyped-def]
    seed(wired, scores=(5, 1, 3))
    assert cli(db_url, "policy", "set", "strict", "--approve-min", "4", "--reject-max", "2").exit_code == 0
    out = cli(db_url, "generate", "--dataset", "ds", "--backend", "fake", "--judge", "fake", "--policy", "strict",
              "--then", "build")
    assert out.exit_code == 0, out.output
    assert "waiting for review: 1 (decide them, or: reasongen release 1)" in text(out)


def test_held_followup_fires_when_a_person_decides_the_last_pending_draft(wired, db_url, followups):
    _held_batch(wired, db_url)
    assert followups == []
    status = json.loads(cli(db_url, "status", "1", "--json").output)
    assert status["waiting_for_review"] == 1 and status["followup_enqueued_at"] is None
    assert "waiting for review: 1" in text(cli(db_url, "status"))
    pending = json.loads(cli(db_url, "review", "list", "--status", "pending", "--json").output)
    assert len(pending) == 1
    decided = cli(db_url, "review", "approve", str(pending[0]["id"]), "--reviewer", "alice")
    assert decided.exit_code == 0, decided.output
    assert "batch 1: nothing pending any more; follow-up 'build' released" in text(decided)
    assert followups == [(1, "build")]
    cli(db_url, "review", "list")
    assert followups == [(1, "build")]  # once


def test_release_fires_a_held_followup_once(wired, db_url, followups):
    _held_batch(wired, db_url)
    released = cli(db_url, "release", "1")
    assert released.exit_code == 0, released.output
    assert "follow-up 'build' released (1 draft(s) still pending are not in it)" in text(released)
    again = cli(db_url, "release", "1")
    assert again.exit_code == 0 and "already handed out" in text(again)
    assert followups == [(1, "build")]
    none = cli(db_url, "release", "99")
    assert none.exit_code != 0


def test_generate_policy_without_judge_is_refused(wired, db_url):
    seed(wired, scores=(5,))
    cli(db_url, "policy", "set", "strict", "--approve-min", "4", "--reject-max", "2")
    out = cli(db_url, "generate", "--dataset", "ds", "--backend", "fake", "--policy", "strict")
    assert out.exit_code != 0 and "add --judge" in text(out)


def test_judge_then_apply_policy_and_agreement(wired, db_url):
    seed(wired, scores=(5, 1, 3))
    assert cli(db_url, "generate", "--dataset", "ds", "--backend", "fake").exit_code == 0
    judged = cli(db_url, "judge", "--dataset", "ds", "--backend", "fake", "--json")
    assert judged.exit_code == 0, judged.output
    assert json.loads(judged.output)["kind"] == "judge"
    cli(db_url, "policy", "set", "strict", "--approve-min", "4", "--reject-max", "2")
    dry = json.loads(cli(db_url, "review", "apply-policy", "strict", "--dry-run", "--json").output)
    assert (dry["approved"], dry["rejected"], dry["left"]) == (1, 1, 1)
    assert json.loads(cli(db_url, "review", "list", "--status", "pending", "--json").output).__len__() == 3
    done = cli(db_url, "review", "apply-policy", "strict", "--where", "dataset=ds")
    assert done.exit_code == 0 and "1 approved, 1 rejected; 1 left for people" in text(done)
    report = json.loads(cli(db_url, "review", "agreement", "--policy", "strict", "--json").output)
    assert report["n"] == 0 and report["policy_decided"] == 2
    assert "Spot-check some" in text(cli(db_url, "review", "agreement"))


def test_rebuild_runs_unattended_judged_decided_then_built(wired, db_url, followups):
    """A gradual rebuild from cron: stale records are drafted, judged, decided by the policy, and the follow-up fires
    once per batch because nothing is left for people. A record the policy rejects is regenerated with the judge's
    reasons; when the judge gives the same reasons again, regenerating would repeat the same request (the cache would
    hand back the same rejected draft in a new batch, run after run, each firing --then), so it is left for people."""
    seed(wired, scores=(5, 1, 5))
    assert cli(db_url, "policy", "set", "strict", "--approve-min", "4", "--reject-max", "2").exit_code == 0
    args = ("rebuild", "--dataset", "ds", "--backend", "fake", "--judge", "fake", "--policy", "strict", "--then",
            "build")
    refused = cli(db_url, *args, "--mode", "batch")  # judged in the same chunk: not through the batch API
    assert refused.exit_code != 0 and "--mode batch drafts without judging in the same run" in text(refused)
    out = cli(db_url, *args)
    assert out.exit_code == 0, out.output
    decided = json.loads(cli(db_url, "review", "list", "--json").output)
    assert sorted(d["status"] for d in decided) == ["approved", "approved", "rejected"]
    assert followups == [(1, "build")]
    again = json.loads(cli(db_url, *args, "--json").output)  # the rejected record, the judge's reasons in its prompt
    assert (again["batch"], again["total"], again["sent"]) == (2, 1, 1)
    assert followups == [(1, "build"), (2, "build")]
    last = cli(db_url, *args)  # rejected again for the same reasons: asking again would repeat the same request
    assert last.exit_code == 0 and "Nothing is stale." in last.output
    assert "1 rejected record(s) left for people" in text(last)
    assert json.loads(cli(db_url, *args, "--json").output) == {"batch": None, "stale": 0, "held_back": 1}
    assert json.loads(cli(db_url, *args, "--dry-run", "--json").output)["estimate"]["held_back"] == 1
    assert len(followups) == 2
