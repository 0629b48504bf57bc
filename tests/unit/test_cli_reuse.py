"""A second `generate` over drafted records says what it reused and what it sent."""

import json

from typer.testing import CliRunner

from cli.demo import SAMPLE
from cli.main import app


def test_a_second_generate_says_already_drafted_and_sent(tmp_path, monkeypatch):
    monkeypatch.delenv("REASONGEN_BROKER_URL", raising=False)
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'rg.db'}"

    def cli(*args: str):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, ["--database-url", url, *args])
        assert result.exit_code == 0, result.output
        return result

    cli("db", "upgrade")
    cli("ingest", str(SAMPLE), "--dataset", "demo")
    first = cli("generate", "--dataset", "demo", "--backend", "fake", "--limit", "10")
    assert "already drafted" not in first.stdout
    second = cli("generate", "--dataset", "demo", "--backend", "fake")
    assert "10 already drafted, 14 sent" in second.stdout
    third = json.loads(cli("generate", "--dataset", "demo", "--backend", "fake", "--json").stdout)
    assert (third["already_drafted"], third["sent"], third["done"]) == (24, 0, 24)
