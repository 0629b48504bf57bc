import subprocess
import sys

from reasongen.settings import Settings, load_settings


def test_environment_is_read(monkeypatch):
    monkeypatch.setenv("REASONGEN_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("REASONGEN_TEACHER_RPM", "120")
    monkeypatch.setenv("REASONGEN_TEACHER_TPM", "")  # empty means unset (docker compose passes "")
    s = Settings()
    assert (s.database_url, s.teacher_rpm, s.teacher_tpm) == ("postgresql://u@h/db", 120, None)


def test_default_database_is_a_sqlite_file_in_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("REASONGEN_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Settings().database_url == f"sqlite:///{tmp_path / 'reasongen.db'}"


def test_cli_overrides_win_and_none_is_ignored(monkeypatch):
    monkeypatch.setenv("REASONGEN_TEACHER_MODEL", "env-model")
    s = load_settings(teacher_model="cli-model", broker_url=None)
    assert s.teacher_model == "cli-model" and s.broker_url is None


def test_api_key_is_hidden_in_repr_and_dump(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    s = Settings()
    assert s.api_key() == "sk-secret-123"
    assert "sk-secret-123" not in repr(s) and "sk-secret-123" not in s.model_dump_json()


def test_redis_for_the_limiter_defaults_to_a_redis_broker():
    assert Settings(broker_url="redis://h:6379/1").effective_redis_url() == "redis://h:6379/1"
    assert Settings(broker_url="amqp://h//").effective_redis_url() is None


def test_importing_every_package_connects_to_nothing():
    # A database URL that cannot be reached: importing must still succeed instantly.
    code = "import cli.main, storage.models, storage.uow, generation.run, reasongen.bootstrap"
    env = {"REASONGEN_DATABASE_URL": "postgresql://nobody@192.0.2.1:1/x", "PATH": ""}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)


def test_root_options_override_the_environment(monkeypatch):
    import typer
    from typer.testing import CliRunner

    from cli.main import app

    seen = {}

    @app.command("_probe", hidden=True)
    def probe(ctx: typer.Context) -> None:
        seen["settings"] = ctx.find_root().obj

    monkeypatch.setenv("REASONGEN_TEACHER_RPM", "100")
    try:
        result = CliRunner().invoke(app, ["--teacher-rpm", "600", "--teacher-concurrency", "256",
                                          "--openai-base-url", "http://127.0.0.1:8000/v1", "_probe"])
    finally:
        app.registered_commands.pop()  # leave the shared app as it was
    assert result.exit_code == 0, result.output
    s = seen["settings"]
    assert (s.teacher_rpm, s.teacher_concurrency, s.openai_base_url) == (600, 256, "http://127.0.0.1:8000/v1")
