"""http_get against a tiny local HTTP server: allow-listed prefixes only (bypass attempts never reach the
server), redirects followed only to allowed URLs, text/JSON only, the size cap applied while streaming."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from isthmus_agent_orchestrator.agents.tools.builtins import HttpGetArgs, HttpGetTool
from isthmus_agent_orchestrator.agents.types import ToolContext

CTX = ToolContext(tenant_id="acme", run_id="a" * 32, graph="react", principals=("alice",), top_k=3)
ENDLESS = "/docs/endless"


@dataclass
class Server:
    """One response per path (status, headers, body); ``ENDLESS`` streams chunks until the client leaves."""

    port: int = 0
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    requested: list[str] = field(default_factory=list)
    endless_sent: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
            self.requested.append(target)
            if target == ENDLESS:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n")
                for _ in range(10_000):  # 10 MB at most: the client hangs up long before
                    writer.write(b"x" * 1024)
                    await writer.drain()
                    self.endless_sent += 1024
                return
            status, headers, body = self.routes.get(target, (404, {"content-type": "text/plain"}, b"no"))
            lines = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}", "connection: close"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    s = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    srv.port = s.sockets[0].getsockname()[1]
    srv.routes = {
        "/docs/page": (200, {"content-type": "text/html; charset=utf-8"}, "<p>héllo</p>".encode()),
        "/docs/data": (200, {"content-type": "application/json"}, b'{"a": 1}'),
        "/docs/image": (200, {"content-type": "image/png"}, b"\x89PNG"),
        "/docs/missing": (404, {"content-type": "text/plain"}, b"gone"),
        "/docs/to-page": (302, {"location": "/docs/page"}, b""),
        "/docs/to-secret": (302, {"location": "/secret"}, b""),
        "/docs/to-elsewhere": (302, {"location": "http://localhost:1/docs/page"}, b""),
        "/docs/loop": (302, {"location": "/docs/loop"}, b""),
        "/secret": (200, {"content-type": "text/plain"}, b"secret"),
        "/docs/gzip": (
            200,
            {"content-type": "text/plain", "content-encoding": "gzip"},
            gzip.compress(b"zipped"),
        ),
        # 5 MB of zeros in a few KB: decompressed no further than the cap
        "/docs/bomb": (
            200,
            {"content-type": "text/plain", "content-encoding": "gzip"},
            gzip.compress(b"0" * 5_000_000, compresslevel=1),
        ),
        "/docs/brotli": (200, {"content-type": "text/plain", "content-encoding": "br"}, b"??"),
        "/docs/latin": (200, {"content-type": "text/plain; charset=no-such-charset"}, b"plain"),
    }
    async with s:
        yield srv


def tool(server: Server, max_bytes: int = 10_000) -> HttpGetTool:
    return HttpGetTool([f"{server.base}/docs/"], max_bytes=max_bytes, timeout_s=5.0)


async def test_fetches_allowed_text_and_json(server: Server) -> None:
    page = await tool(server).call(HttpGetArgs(url=f"{server.base}/docs/page"), CTX)
    assert page.ok and page.text == "<p>héllo</p>" and page.data["truncated"] is False
    data = await tool(server).call(HttpGetArgs(url=f"{server.base}/docs/data"), CTX)
    assert data.ok and data.text == '{"a": 1}'


async def test_refuses_other_content_types_and_errors(server: Server) -> None:
    image = await tool(server).call(HttpGetArgs(url=f"{server.base}/docs/image"), CTX)
    assert not image.ok and "image/png" in image.text
    missing = await tool(server).call(HttpGetArgs(url=f"{server.base}/docs/missing"), CTX)
    assert not missing.ok and "404" in missing.text


@pytest.mark.parametrize(
    "path",
    [
        "/docs/..%2fsecret",
        "/docs/%2e%2e/secret",
        "/docs/../secret",
        "/docs/..;/secret",
        "/secret",
        "/docsecret",
    ],
)
async def test_bypass_attempts_never_reach_the_server(server: Server, path: str) -> None:
    result = await tool(server).call(HttpGetArgs(url=server.base + path), CTX)
    assert not result.ok and "refused" in result.text
    assert server.requested == []


async def test_user_info_trick_is_refused(server: Server) -> None:
    url = f"http://127.0.0.1:{server.port}@127.0.0.1:{server.port}/secret"
    result = await tool(server).call(HttpGetArgs(url=url), CTX)
    assert not result.ok and server.requested == []


async def test_redirects_are_followed_only_to_allowed_urls(server: Server) -> None:
    followed = await tool(server).call(HttpGetArgs(url=f"{server.base}/docs/to-page"), CTX)
    assert followed.ok and followed.text == "<p>héllo</p>"
    assert followed.data["url"] == f"{server.base}/docs/page"
    for path in ("/docs/to-secret", "/docs/to-elsewhere"):
        refused = await tool(server).call(HttpGetArgs(url=server.base + path), CTX)
        assert not refused.ok and "redirect" in refused.text
    assert "/secret" not in server.requested
    looping = await tool(server).call(HttpGetArgs(url=f"{server.base}/docs/loop"), CTX)
    assert not looping.ok and "redirects" in looping.text


async def test_size_cap_stops_reading_an_endless_body(server: Server) -> None:
    result = await tool(server, max_bytes=5000).call(HttpGetArgs(url=server.base + ENDLESS), CTX)
    assert result.ok and result.data["truncated"] is True and result.data["bytes"] == 5000
    assert result.text.startswith("x" * 5000) and result.text.endswith("[cut at 5000 bytes]")
    assert server.endless_sent < 10_000 * 1024  # the client hung up: it did not read the whole stream


async def test_gzip_bodies_are_decompressed_within_the_cap(server: Server) -> None:
    zipped = await tool(server).call(HttpGetArgs(url=f"{server.base}/docs/gzip"), CTX)
    assert zipped.ok and zipped.text == "zipped"
    bomb = await tool(server, max_bytes=5000).call(HttpGetArgs(url=f"{server.base}/docs/bomb"), CTX)
    assert bomb.ok and bomb.data["bytes"] == 5000 and bomb.text.startswith("0" * 5000)
    brotli = await tool(server).call(HttpGetArgs(url=f"{server.base}/docs/brotli"), CTX)
    assert not brotli.ok and "br-encoded" in brotli.text
    unknown_charset = await tool(server).call(HttpGetArgs(url=f"{server.base}/docs/latin"), CTX)
    assert unknown_charset.ok and unknown_charset.text == "plain"
