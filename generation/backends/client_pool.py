"""Concurrency slots spread over several SDK clients, each with a small connection pool.

httpx's pool looks at every connection it holds for each request, so one pool of hundreds of
connections costs time proportional to its size per request and caps throughput on the client's own
CPU. Several pools of at most ``per_client`` connections keep that cost flat; a slot is a client and a
place in its pool, so no pool is ever asked for more connections than it has. (The aiohttp transport
does not need the split: its caller passes the whole concurrency as ``per_client``.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

PER_CLIENT = 8


class ClientSlots:
    def __init__(self, make_client: Callable[[int], Any], concurrency: int, per_client: int | None = None):
        per_client = per_client or PER_CLIENT
        count = -(-concurrency // per_client)
        self.clients = [make_client(per_client) for _ in range(count)]
        self._free: asyncio.Queue[Any] = asyncio.Queue()
        for i in range(concurrency):  # interleaved, so light load still spreads over the pools
            self._free.put_nowait(self.clients[i % count])

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Any]:
        client = await self._free.get()
        try:
            yield client
        finally:
            self._free.put_nowait(client)

    async def aclose(self) -> None:
        for client in self.clients:
            try:
                await client.close()
            except RuntimeError:  # made on another, already closed loop
                pass
