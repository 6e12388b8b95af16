"""Bounded requests at the connection: a head past MAX_HEADER_BYTES is a 431, a head that trickles in is dropped
after HEADER_TIMEOUT_S (200 of them at once, while others are served), a body that stalls is dropped after
BODY_READ_TIMEOUT_S, and refused 48 MB bodies do not pile up in memory."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.integration.server import ServerProcess, running_server

pytestmark = [pytest.mark.simulator_only, pytest.mark.slow]

BODY_READ_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # HEADER_TIMEOUT_S keeps its default (15 s): the slow-header test checks the default closes them within 30 s.
    yield from running_server(tmp_path_factory.mktemp("limits"), env={"BODY_READ_TIMEOUT_S": str(BODY_READ_TIMEOUT_S)})


def test_a_huge_header_is_a_431_and_the_server_serves_on(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:
            pass  # the server closed the connection after answering
        answer = sock.recv(200)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert sent < 16 * 1024 * 1024  # refused long before the 64 MB arrived
    assert httpx.get(server.url("/health"), timeout=5).status_code == 200


async def test_two_hundred_slow_heads_are_closed_while_others_are_served(server: ServerProcess) -> None:
    opened = []
    for _ in range(200):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        opened.append((reader, writer))
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(5):
            answered = time.monotonic()
            assert (await client.get(server.url("/health"))).status_code == 200
            assert time.monotonic() - answered < 1.0
            await asyncio.sleep(0.2)

    async def closed(reader: asyncio.StreamReader) -> bytes:
        return await reader.read()  # to EOF

    answers = await asyncio.wait_for(asyncio.gather(*(closed(reader) for reader, _ in opened)), timeout=30)
    assert time.monotonic() - started < 30
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)
    for _, writer in opened:
        writer.close()


def test_a_stalled_body_is_dropped(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=BODY_READ_TIMEOUT_S * 5) as sock:
        sock.sendall(
            b"POST /prompt HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        sock.sendall(b'{"prompt": {')
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed without an answer: the request never completed
        waited = time.monotonic() - started
    assert BODY_READ_TIMEOUT_S * 0.8 < waited < BODY_READ_TIMEOUT_S * 4
    assert httpx.get(server.url("/health"), timeout=5).status_code == 200


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS as the kernel reports it")
def test_refused_large_bodies_do_not_pile_up(server: ServerProcess) -> None:
    assert server.proc is not None
    process = psutil.Process(server.proc.pid)
    size = 48 * 1024 * 1024
    body = b'{"prompt": {"1": {"class_type": "X", "inputs": {"a": "' + b"x" * size + b'"}}}, "bogus": 1}'
    with httpx.Client(timeout=60) as client:
        client.post(server.url("/prompt"), content=b"{}", headers={"content-type": "application/json"})
        baseline = process.memory_info().rss
        for _ in range(8):
            answer = client.post(server.url("/prompt"), content=body, headers={"content-type": "application/json"})
            assert answer.status_code == 400
            assert answer.json()["error"]["field"] == "bogus"
    time.sleep(1.0)  # the last collection may wait out its interval
    assert process.memory_info().rss - baseline < 2 * size
