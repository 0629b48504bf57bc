"""`reasongen serve`: the web app (review desk, monitoring pages, JSON API, /metrics) under uvicorn."""

from __future__ import annotations

import typer

from cli.context import settings_from, wiring


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 in a container)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    proxy_headers: bool = typer.Option(False, "--proxy-headers",
                                       help="Trust X-Forwarded-Proto from a TLS proxy in front (cookies then get "
                                            "the Secure attribute)."),
) -> None:
    """Serve the web app. Sign in with an account from `reasongen users add`."""
    import uvicorn

    from web.app import create_app

    settings = settings_from(ctx)
    with wiring(ctx):
        pass  # one clear line when the database is unreachable or not migrated
    uvicorn.run(create_app(settings), host=host, port=port, proxy_headers=proxy_headers,
                forwarded_allow_ips="*" if proxy_headers else None, log_level="info")
