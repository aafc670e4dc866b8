"""Backends that talk JSON to an HTTP service: the plumbing pinningservice, ipfscluster and
storacha share.

The three had each written it, and the copies drifted. What is the same in the three is here:
one httpx client, built on first use (a backend built only to validate its spec opens no
connection) and closed by ``aclose``; the library's errors translated (a transport failure is
``Unreachable``, anything else the service's own error class); an answer's JSON decoded; and a
server's text shown in a message as one printable line, cut short.

What differs stays in each backend: how its client authenticates, and its status→error table --
the same code means different things to each (a 404 is a request gone to a pinning service and a
missing API to the cluster; a 409 is "insufficient funds" to one of them only).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import httpx

from pinsync.backends import base, errors

SHOWN = 200
"""Characters of a server's text (an error's details, a status's info) put into a message."""


def shown(text: str) -> str:
    """A server's text as a message shows it: one line of printable characters, cut short."""
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


class HttpService(base.Backend):
    """A backend whose server is one HTTP service, reached through one lazily built client."""

    error: ClassVar[type[errors.BackendError]] = errors.BackendError
    """The service's own error class: what the server said that no other error names."""

    _client: httpx.AsyncClient | None = None

    @abc.abstractmethod
    def make_client(self) -> httpx.AsyncClient:
        """A new client for the service (its base URL, authentication and timeouts)."""

    def client(self) -> httpx.AsyncClient:
        """The HTTP client, built on first use."""
        if self._client is None:
            self._client = self.make_client()
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def translate(self, exc: Exception, what: str, *, writing: bool = False) -> errors.BackendError:
        if isinstance(exc, httpx.TransportError):
            return errors.Unreachable(f"{what}: {type(exc).__name__}")
        return self.error(f"{what}: {type(exc).__name__}")

    def decoded(self, response: httpx.Response, what: str) -> Any:
        """An answer's JSON (None when the answer is empty), or the service's error."""
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise self.error(f"{what}: the answer is not JSON") from None
