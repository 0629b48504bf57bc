from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_db_upgrade_creates_schema_and_reports_head(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    first = runner.invoke(app, ["--database-url", url, "db", "upgrade"])
    again = runner.invoke(app, ["--database-url", url, "db", "upgrade"])
    current = runner.invoke(app, ["--database-url", url, "db", "current"])
    assert first.exit_code == 0 and again.exit_code == 0, first.output
    from storage.migrate import head_revision

    assert f"current: {head_revision()}  head: {head_revision()}" in current.output


def test_db_upgrade_names_the_database_it_could_not_reach():
    url = "postgresql://postgres:hunter2@127.0.0.1:1/nowhere"
    result = runner.invoke(app, ["--database-url", url, "db", "upgrade"])
    assert result.exit_code == 5  # database unavailable (README "Exit codes")
    assert "127.0.0.1:1/nowhere" in result.output and "hunter2" not in result.output


def test_version_flag():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("reasongen ")
