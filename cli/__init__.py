"""The `reasongen` command line (Typer). One module per command group."""
