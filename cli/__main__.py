"""`python -m cli` is the `reasongen` command (useful where the console script is not on PATH)."""

from cli.main import app

app(prog_name="reasongen")
