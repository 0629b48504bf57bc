"""The batch API of the loopback server (``/v1/files``, ``/v1/batches``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web


class BatchAPI:
    def __init__(self, server: Any):
        self.server = server

    def routes(self) -> list[web.RouteDef]:
        return []
