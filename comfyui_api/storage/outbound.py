"""The outbound URL guard: every URL that comes from a request (media inputs, model URLs, `POST /download`, upload
targets, webhooks, per-request storage endpoints) reaches only public addresses.

A host name is resolved here, each address it resolves to is checked, and the connection is then made to the checked
address itself (httpcore's network backend is the guard's; TLS still verifies the name), so a name cannot resolve
to a public address for the check and a private one for the connection. Every redirect hop passes through the same
transport and is checked again; a redirect from https to http is refused, and httpx drops credentials when the
origin changes.

Refused: loopback, private (RFC 1918, ULA), link-local (cloud metadata at 169.254.169.254), shared/CGNAT
(100.64.0.0/10), multicast, reserved, documentation and unspecified addresses, in every spelling the resolver accepts
(`127.1`, `2130706433`, `0x7f.1`, `::ffff:127.0.0.1`, NAT64 `64:ff9b::7f00:1`), since the check runs on what the
name resolves to. Exceptions: `HTTP_TRUSTED_ORIGINS` (exact origins) and `ALLOW_PRIVATE_URLS=true`. Whatever the
settings, ComfyUI's own address and this server's own address are never reachable (a webhook aimed at ComfyUI's
`/prompt` would otherwise run a graph outside the job service).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from comfyui_api.errors import URLRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS = 10
_RESOLVE_TIMEOUT_S = 10.0  # one DNS lookup; the connect timeout of the client applies after it
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)  # httpx's own


def address_refusal(address: IPAddress) -> str | None:
    """Why a connection to `address` is refused by default, or None when it is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address_refusal(address.ipv4_mapped)
        if address in _NAT64:
            return address_refusal(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "a shared (CGNAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def origin_of(url: str | httpx.URL) -> str | None:
    """`scheme://host:port`, lower-cased with the default port filled in; None when `url` has no http(s) host."""
    parts = urlsplit(str(url))
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def is_local_address(address: IPAddress) -> bool:
    """True when this machine owns `address` (binding to it succeeds), or it is unspecified (which reaches us)."""
    if address.is_unspecified or address.is_loopback:
        return True
    family = socket.AF_INET6 if isinstance(address, ipaddress.IPv6Address) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Endpoint:
    """A host and port that no request-supplied URL may reach (ComfyUI, this server)."""

    host: str
    port: int

    @property
    def is_local(self) -> bool:
        host = self.host.strip("[]")
        if host == "localhost":
            return True
        try:
            return is_local_address(ipaddress.ip_address(host))
        except ValueError:
            return False


class OutboundGuard:
    """Checks and pins request-supplied URLs. One per runtime, built from settings; `client()` makes httpx clients
    whose every hop is checked, `check_url()` refuses a URL up front (a 400 naming the field before any fetch)."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        trusted_origins: Iterable[str] = (),
        protected: Sequence[Endpoint] = (),
        resolve_timeout_s: float = _RESOLVE_TIMEOUT_S,
    ):
        self.allow_private = allow_private
        self.trusted_origins = frozenset(o for o in (origin_of(u) for u in trusted_origins) if o)
        self._protected = tuple(protected)
        self._resolve_timeout_s = resolve_timeout_s

    def trust(self, urls: Iterable[str | None]) -> None:
        """Add the origins of URLs the operator configured (manifest, warmup, storage endpoints)."""
        self.trusted_origins = self.trusted_origins | {o for o in (origin_of(u) for u in urls if u) if o}

    async def check_url(self, url: str, *, field: str | None, schemes: Sequence[str] = ("http", "https")) -> None:
        """Raise URLRefused naming `field` unless `url` may be fetched (its scheme is allowed and it resolves only to
        addresses the guard lets through)."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in schemes:
            raise URLRefused(f"only {' or '.join(schemes)} URLs are allowed here", field=field)
        try:
            target = httpx.URL(url)
            if not target.host:
                raise URLRefused("the URL has no host")
            await self.connect_address(target.host, target.port or _DEFAULT_PORTS[target.scheme], target.scheme)
        except URLRefused as exc:
            raise URLRefused(exc.message, field=field) from None
        except httpx.ConnectError as exc:  # the name does not resolve (now): nothing could be sent there
            raise URLRefused(str(exc), field=field) from None
        except httpx.InvalidURL as exc:
            raise URLRefused(f"not a valid URL: {exc}", field=field) from None

    async def connect_address(self, host: str, port: int, scheme: str | None = None) -> str:
        """The checked address to connect to for `host:port` (`scheme` None: a trusted origin of either scheme).
        Raises URLRefused, or httpx.ConnectError when the name does not resolve (a failure a caller may retry)."""
        addresses = await self._resolve(host, port)
        shown = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        for address in addresses:
            if self._is_protected(address, port, host):
                raise URLRefused(f"{shown} is ComfyUI's or this server's own address")
        origins = {origin_of(f"{s}://{shown}") for s in ((scheme,) if scheme else tuple(_DEFAULT_PORTS))}
        if not self.allow_private and not origins & self.trusted_origins:
            for address in addresses:
                reason = address_refusal(address)
                if reason is not None:
                    raise URLRefused(
                        f"{host} resolves to {reason}; set HTTP_TRUSTED_ORIGINS or ALLOW_PRIVATE_URLS to allow it"
                    )
        return str(addresses[0])

    def _is_protected(self, address: IPAddress, port: int, host: str) -> bool:
        for endpoint in self._protected:
            if endpoint.port != port:
                continue
            if endpoint.host.strip("[]").lower() == host.strip("[]").lower():
                return True
            if endpoint.is_local and is_local_address(_unmapped(address)):
                return True
            try:
                if ipaddress.ip_address(endpoint.host.strip("[]")) == _unmapped(address):
                    return True
            except ValueError:
                continue
        return False

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._resolve_timeout_s):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpx.ConnectError(f"resolving {host} took longer than {self._resolve_timeout_s:g}s") from None
        except OSError as exc:
            raise httpx.ConnectError(f"{host} does not resolve: {exc.strerror or exc}") from None
        addresses: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpx.ConnectError(f"{host} does not resolve")
        return addresses

    def transport(self, **options: Any) -> GuardedTransport:
        """An httpx transport whose every connection goes to a checked address (options: verify, limits, retries)."""
        return GuardedTransport(self, **options)

    def client(self, *, transport_options: dict[str, Any] | None = None, **options: Any) -> httpx.AsyncClient:
        """An httpx client for request-supplied URLs: no proxies from the environment (the proxy would connect for
        us, unchecked), at most MAX_REDIRECTS redirects, none from https to http."""
        hooks = options.pop("event_hooks", {})
        response_hooks = [*hooks.get("response", ()), refuse_downgrade]
        return httpx.AsyncClient(
            transport=self.transport(**(transport_options or {})),
            trust_env=False,
            max_redirects=MAX_REDIRECTS,
            event_hooks={**hooks, "response": response_hooks},
            **options,
        )


async def refuse_downgrade(response: httpx.Response) -> None:
    """Response hook: a redirect from https to http is refused (it would send the next request in clear text)."""
    if not response.has_redirect_location or response.request.url.scheme != "https":
        return
    target = response.request.url.join(response.headers["location"])
    if target.scheme == "http":
        raise URLRefused(f"a redirect from {response.request.url.host} to plain http was refused")


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class _PinningBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the guard in front: resolves, checks, then connects to that address. TLS
    still verifies the certificate against the URL's name, and the pool keeps connections per name."""

    def __init__(self, guard: OutboundGuard):
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await self._guard.connect_address(host, port)
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise URLRefused("unix sockets are not reachable from request URLs")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, every connection of which goes through the guard. No proxy: a proxy would connect on our
    behalf to an address we never checked."""

    def __init__(
        self,
        guard: OutboundGuard,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = _LIMITS,
        retries: int = 0,
    ):
        super().__init__(verify=verify, trust_env=False, limits=limits, retries=retries)
        # httpx takes no network backend; its pool is made again with the same settings and the guarded backend.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            retries=retries,
            network_backend=_PinningBackend(guard),
        )
