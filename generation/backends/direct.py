"""The teacher's hot path: one chat-completions POST on aiohttp, with the SDK's headers and the SDK's errors.

The SDK's request pipeline (options models, URL and header objects, its httpx-shaped transport) costs about
0.8 ms of interpreter time per request on this machine, against 0.16 ms for the same POST made with aiohttp
directly (docs/benchmarks.md). At hundreds of requests in flight that difference is what keeps a server's
slots full. So the teacher still builds an ``openai.AsyncOpenAI`` client (base URL, key, organisation and
project headers, everything a user configures) and asks it for its headers once; only the POST itself is
made here. Failures come back as the SDK's own exceptions (``APIStatusError`` subclasses built by the client
from the response, ``APITimeoutError``, ``APIConnectionError`` with the cause chained), so retries, the
breaker and error messages read them exactly as they read the SDK's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import orjson

try:
    import aiohttp
except ImportError:  # the SDK's own transport then (chat_format.http_client_class)
    aiohttp = None  # type: ignore[assignment]

from generation.backends.chat_format import _httpx


def direct_available() -> bool:
    return aiohttp is not None


class DirectPost:
    """POST ``{base_url}/chat/completions`` for one SDK client, on the event loop that made it."""

    def __init__(self, client: openai.AsyncOpenAI, connections: int, timeout_s: float):
        self.url = str(client.base_url).rstrip("/") + "/chat/completions"
        headers = {**client.default_headers, **client.auth_headers}  # auth is added per request by the SDK
        self.headers = {k: v for k, v in headers.items() if isinstance(v, str)}  # an unset header is Omit
        self._client, self._timeout_s = client, timeout_s
        # Each read and the connect are bounded, as the SDK's timeout bounds them; the caller bounds the whole.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=timeout_s)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections, limit_per_host=0))

    async def post(self, body: dict[str, Any]) -> bytes:
        """The reply's body on a 2xx; the SDK's exception otherwise."""
        try:
            async with self._session.post(self.url, data=orjson.dumps(body), headers=self.headers,
                                          timeout=self._timeout) as response:
                content = await response.read()
                if response.status < 300:
                    return content
                raise self._status_error(response.status, response.headers, content)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise openai.APITimeoutError(request=self._request()) from exc
        except aiohttp.ClientError as exc:
            raise openai.APIConnectionError(message=f"Connection error: {exc}", request=self._request()) from exc

    async def aclose(self) -> None:
        await self._session.close()

    def _request(self) -> Any:
        return _httpx().Request("POST", self.url)

    def _status_error(self, status: int, headers: Any, content: bytes) -> openai.APIStatusError:
        httpx = _httpx()
        response = httpx.Response(status, headers=list(headers.items()), content=content, request=self._request())
        return self._client._make_status_error_from_response(response)  # noqa: SLF001 - the SDK's own mapping
