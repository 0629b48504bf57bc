"""`reasongen review next --sample N --stratify lang` driven key by key through a pseudo-terminal."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest

from review.agreement import agreement
from tests.judging.test_agreement import _seed_ten

ROOT = Path(__file__).resolve().parents[2]
REASONGEN = str(Path(sys.executable).with_name("reasongen"))


@pytest.mark.slow
def test_spot_check_session_records_the_persons_verdicts(wired, db_url):
    _seed_ten(wired)
    env = {**os.environ, "REASONGEN_DATABASE_URL": db_url, "TERM": "xterm", "COLUMNS": "140", "LINES": "50",
           "PYTHONPATH": str(ROOT)}
    child = pexpect.spawn(REASONGEN, ["review", "next", "--sample", "2", "--stratify", "lang", "--reviewer", "pat"],
                          env=env, encoding="utf-8", timeout=60, dimensions=(50, 140))
    child.expect("spot check 1/2: the policy said")
    child.send("a")
    child.expect("spot check 2/2: the policy said")
    child.send("r")
    child.expect("Why is it rejected")
    child.sendline("The answer misses the point.")
    child.expect("spot check: approve 1, reject 1")
    child.expect(pexpect.EOF)
    with wired.uow() as uow:
        report = agreement(uow, "strict")
    assert report["n"] == 2 and set(report["by_lang"]) == {"en", "ja"}  # one per language: stratified
