"""A second `generate` over drafted records says what it reused and what it sent."""

import json

from typer.testing import CliRunner

from cli.demo import SAMPLE
from cli.main import app


def cli_on(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """`reasongen` in-process on a fresh SQLite database holding the bundled sample as dataset 'demo'."""
    monkeypatch.delenv("REASONGEN_BROKER_URL", raising=False)
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'rg.db'}"

    def cli(*args: str):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, ["--database-url", url, *args])
        assert result.exit_code == 0, result.output
        return result

    cli("db", "upgrade")
    cli("ingest", str(SAMPLE), "--dataset", "demo")
    return cli


def test_a_second_generate_says_already_drafted_and_sent(tmp_path, monkeypatch):
    cli = cli_on(tmp_path, monkeypatch)
    first = cli("generate", "--dataset", "demo", "--backend", "fake", "--limit", "10")
    assert "already drafted" not in first.stdout
    second = cli("generate", "--dataset", "demo", "--backend", "fake")
    assert "10 already drafted, 14 sent" in second.stdout
    third = json.loads(cli("generate", "--dataset", "demo", "--backend", "fake", "--json").stdout)
    assert (third["already_drafted"], third["sent"], third["done"]) == (24, 0, 24)


def test_a_judge_batch_counts_its_judgements_as_sent(tmp_path, monkeypatch):
    """A judge batch writes judgements, not drafts: it must not say "24 already drafted, 0 sent" after judging 24."""
    cli = cli_on(tmp_path, monkeypatch)
    cli("generate", "--dataset", "demo", "--backend", "fake")
    first = json.loads(cli("judge", "--dataset", "demo", "--backend", "fake", "--limit", "10", "--json").stdout)
    assert (first["sent"], first["already_judged"]) == (10, 0) and "already_drafted" not in first
    second = cli("judge", "--dataset", "demo", "--backend", "fake")
    assert "already drafted" not in second.stdout and "10 already judged, 14 sent" in " ".join(second.stdout.split())
