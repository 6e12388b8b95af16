"""The outbound guard against real servers on loopback: every hop checked, the checked address is the one connected
to (TLS still verified against the name), redirects bounded and never from https to http."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trustme
from aiohttp import web

from comfyui_api.errors import URLRefused
from comfyui_api.storage.outbound import MAX_REDIRECTS, Endpoint, IPAddress, OutboundGuard


@dataclass
class Site:
    """One aiohttp server on 127.0.0.1: `/ok`, `/redirect?to=URL`, `/loop/<n>` (n more redirects)."""

    scheme: str
    port: int = 0
    seen: list[dict[str, str]] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


async def _serve(site: Site, ssl_context: ssl.SSLContext | None) -> web.AppRunner:
    async def ok(request: web.Request) -> web.Response:
        site.seen.append({"path": request.path, "host": request.headers.get("Host", "")})
        return web.Response(text="ok")

    async def redirect(request: web.Request) -> web.Response:
        site.seen.append({"path": request.path, "host": request.headers.get("Host", "")})
        raise web.HTTPFound(request.query["to"])

    async def loop(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        raise web.HTTPFound(f"/loop/{left - 1}" if left > 0 else "/ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop/{n}", loop)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await tcp.start()
    site.port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def plain() -> AsyncIterator[Site]:
    site = Site("http")
    runner = await _serve(site, None)
    yield site
    await runner.cleanup()


@pytest.fixture
async def tls(authority: trustme.CA) -> AsyncIterator[Site]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    site = Site("https")
    runner = await _serve(site, context)
    yield site
    await runner.cleanup()


def _client(guard: OutboundGuard, authority: trustme.CA | None = None, **options: Any) -> httpx.AsyncClient:
    transport_options: dict[str, Any] = {}
    if authority is not None:
        verify = ssl.create_default_context()
        authority.configure_trust(verify)
        transport_options["verify"] = verify
    return guard.client(transport_options=transport_options, follow_redirects=True, timeout=10.0, **options)


class _FixedResolver(OutboundGuard):
    """A guard whose DNS answers `names` from a table (a name the system resolver has never heard of)."""

    def __init__(self, names: dict[str, str], **options: Any):
        super().__init__(**options)
        self._names = names

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        if host in self._names:
            return [ipaddress.ip_address(self._names[host])]
        return await super()._resolve(host, port)


async def test_loopback_is_refused_before_any_request_is_sent(plain: Site) -> None:
    async with _client(OutboundGuard()) as client:
        with pytest.raises(URLRefused, match="loopback"):
            await client.get(plain.url("/ok", host="localhost"))
    assert plain.seen == []


async def test_a_trusted_origin_is_reached_and_nothing_else_on_that_host(plain: Site) -> None:
    guard = OutboundGuard(trusted_origins=[plain.url("")])
    async with _client(guard) as client:
        assert (await client.get(plain.url("/ok"))).text == "ok"
        with pytest.raises(URLRefused):  # same address, another origin (the name differs)
            await client.get(plain.url("/ok", host="localhost"))
    assert [s["path"] for s in plain.seen] == ["/ok"]


async def test_every_redirect_hop_is_checked_again(plain: Site) -> None:
    target = Site("http")
    runner = await _serve(target, None)
    try:
        guard = OutboundGuard(trusted_origins=[plain.url("")])
        async with _client(guard) as client:
            with pytest.raises(URLRefused, match="loopback"):
                await client.get(plain.url("/redirect"), params={"to": target.url("/ok")})
        assert [s["path"] for s in plain.seen] == ["/redirect"]
        assert target.seen == []
    finally:
        await runner.cleanup()


async def test_the_checked_address_is_the_one_connected_to_and_tls_is_verified_for_the_name(
    tls: Site, authority: trustme.CA
) -> None:
    # "pinned.example" does not resolve anywhere but in the guard: the connection can only have used its answer.
    guard = _FixedResolver({"pinned.example": "127.0.0.1", "localhost": "127.0.0.1"}, allow_private=True)
    async with _client(guard, authority) as client:
        answer = await client.get(tls.url("/ok", host="localhost"))
        assert answer.text == "ok"
        assert str(answer.url) == tls.url("/ok", host="localhost")
        with pytest.raises(httpx.ConnectError, match=r"(?i)certificate|hostname"):
            await client.get(tls.url("/ok", host="pinned.example"))  # the cert names localhost only
    assert tls.seen == [{"path": "/ok", "host": f"localhost:{tls.port}"}]


async def test_a_redirect_from_https_to_http_is_refused(tls: Site, plain: Site, authority: trustme.CA) -> None:
    async with _client(OutboundGuard(allow_private=True), authority) as client:
        with pytest.raises(URLRefused, match="plain http"):
            await client.get(tls.url("/redirect", host="localhost"), params={"to": plain.url("/ok")})
    assert plain.seen == []


async def test_redirects_are_bounded(plain: Site) -> None:
    async with _client(OutboundGuard(allow_private=True)) as client:
        assert (await client.get(plain.url(f"/loop/{MAX_REDIRECTS - 1}"))).text == "ok"
        with pytest.raises(httpx.TooManyRedirects):
            await client.get(plain.url(f"/loop/{MAX_REDIRECTS}"))


async def test_protected_endpoints_stay_refused_whatever_the_settings(plain: Site) -> None:
    guard = OutboundGuard(
        allow_private=True, trusted_origins=[plain.url("")], protected=[Endpoint("127.0.0.1", plain.port)]
    )
    async with _client(guard) as client:
        for host in ("127.0.0.1", "localhost", "127.0.0.2", "[::ffff:127.0.0.1]"):
            with pytest.raises(URLRefused, match="own address"):
                await client.get(plain.url("/ok", host=host))
    assert plain.seen == []


async def test_check_url_names_the_field_and_treats_unresolvable_names_as_refused() -> None:
    guard = OutboundGuard()
    with pytest.raises(URLRefused) as refused:
        await guard.check_url("http://169.254.169.254/latest/meta-data", field="webhook_v2")
    assert refused.value.field == "webhook_v2"
    assert "link-local" in refused.value.message
    with pytest.raises(URLRefused, match="does not resolve") as unresolvable:
        await guard.check_url("http://no-such-host.invalid/", field="webhook")
    assert unresolvable.value.field == "webhook"
    with pytest.raises(URLRefused, match="http or https"):
        await guard.check_url("file:///etc/passwd", field="url")
