"""fetch_url and read_path against a real HTTP server on 127.0.0.1 and real files.

The server is the standard library's ThreadingHTTPServer on a free port; every route
below plays one behaviour of a feed host (validators, gzip, errors, redirects, size,
slowness). Nothing leaves the machine.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from newsletter.errors import FetchError
from newsletter.papers.fetch import USER_AGENT, Fetched, fetch_url, read_path

FEED = Path(__file__).resolve().parents[1] / "data" / "feeds" / "arxiv-rss-cs.LG.xml"
BODY = FEED.read_bytes()
ETAG = '"cs.LG-2024-01-16"'
LAST_MODIFIED = "Tue, 16 Jan 2024 05:00:00 GMT"


@dataclass
class Server:
    base: str
    requests: list[dict[str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return self.base + path


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

        def _send(self, status: int, body: bytes, **headers: str) -> None:
            self.send_response(status)
            headers.setdefault("Content-Type", "application/rss+xml; charset=utf-8")
            headers.setdefault("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def _slowly(self, pause: float, limit: float) -> None:
            """Headers now, then one byte per ``pause`` until the client leaves."""
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.end_headers()
            self.wfile.flush()
            end = time.monotonic() + limit
            try:
                while not server.stop.is_set() and time.monotonic() < end:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    server.stop.wait(pause)
            except OSError:  # the client gave up, as it should
                pass

        def do_GET(self) -> None:
            server.requests.append({"path": self.path, **dict(self.headers.items())})
            route = ROUTES.get(self.path.split("?")[0])
            if route is None:
                self.send_error(404, "Not Found")
            else:
                route(self)

        def feed(self) -> None:
            if self.headers.get("If-None-Match") == ETAG or (
                self.headers.get("If-Modified-Since") == LAST_MODIFIED
            ):
                self.send_response(304)
                self.send_header("ETag", ETAG)
                self.end_headers()
                return
            self._send(200, BODY, ETag=ETAG, Last_Modified=LAST_MODIFIED)

        def gzipped(self) -> None:
            self._send(200, gzip.compress(BODY), Content_Encoding="gzip")

        def gzip_bomb(self) -> None:
            self._send(200, gzip.compress(b"\0" * 5_000_000), Content_Encoding="gzip")

        def broken_gzip(self) -> None:
            self._send(200, b"\x1f\x8b\x08\x00 this is not deflate data", Content_Encoding="gzip")

        def brotli(self) -> None:
            self._send(200, b"\x0b\x02\x80", Content_Encoding="br")

        def server_error(self) -> None:
            self.send_error(500, "Internal Server Error")

        def redirect(self) -> None:
            self._send(302, b"", Location="/feed")

        def redirect_absolute(self) -> None:
            self._send(301, b"", Location=server.url("/feed"))

        def redirect_loop(self) -> None:
            self._send(302, b"", Location="/redirect-loop")

        def redirect_to_file(self) -> None:
            self._send(302, b"", Location="file:///etc/passwd")

        def redirect_to_ftp(self) -> None:
            self._send(302, b"", Location="ftp://127.0.0.1/feed.xml")

        def big(self) -> None:
            self._send(200, b"x" * 5000)

        def big_unannounced(self) -> None:
            # No Content-Length: the cap must be enforced while reading.
            self.send_response(200)
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"x" * 1000)

        def short(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"<rss>")

        def stall(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.flush()
            server.stop.wait(5)

        def silent(self) -> None:
            server.stop.wait(5)  # never even sends a status line

        def trickle(self) -> None:
            self._slowly(pause=0.05, limit=5)

    ROUTES: dict[str, Callable[[Handler], None]] = {
        "/feed": Handler.feed,
        "/gzip": Handler.gzipped,
        "/gzip-bomb": Handler.gzip_bomb,
        "/broken-gzip": Handler.broken_gzip,
        "/brotli": Handler.brotli,
        "/error": Handler.server_error,
        "/redirect": Handler.redirect,
        "/redirect-absolute": Handler.redirect_absolute,
        "/redirect-loop": Handler.redirect_loop,
        "/redirect-to-file": Handler.redirect_to_file,
        "/redirect-to-ftp": Handler.redirect_to_ftp,
        "/big": Handler.big,
        "/big-unannounced": Handler.big_unannounced,
        "/short": Handler.short,
        "/stall": Handler.stall,
        "/silent": Handler.silent,
        "/trickle": Handler.trickle,
    }
    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(base="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(srv))
    srv.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval: shutdown() waits up to one interval, once per test.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.stop.set()  # release the slow handlers
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- conditional GET -------------------------------------------------------------------


def test_fetch_returns_body_and_validators(server: Server) -> None:
    got = fetch_url(server.url("/feed"))
    assert got == Fetched(
        data=BODY,
        source=server.url("/feed"),
        etag=ETAG,
        last_modified=LAST_MODIFIED,
        status=200,
        content_type="application/rss+xml; charset=utf-8",
    )
    sent = server.requests[-1]
    assert sent["User-Agent"] == USER_AGENT
    assert sent["Accept-Encoding"] == "gzip"
    assert "application/rss+xml" in sent["Accept"]
    assert "If-None-Match" not in sent and "If-Modified-Since" not in sent


def test_second_fetch_with_validators_is_not_modified(server: Server) -> None:
    first = fetch_url(server.url("/feed"))
    again = fetch_url(server.url("/feed"), etag=first.etag, last_modified=first.last_modified)
    assert again.data is None and again.status == 304
    assert (again.etag, again.last_modified) == (ETAG, LAST_MODIFIED)  # kept for next time
    sent = server.requests[-1]
    assert sent["If-None-Match"] == ETAG
    assert sent["If-Modified-Since"] == LAST_MODIFIED


def test_last_modified_alone_is_enough_for_304(server: Server) -> None:
    again = fetch_url(server.url("/feed"), last_modified=LAST_MODIFIED)
    assert again.data is None
    assert again.etag == ETAG  # the 304 carried one; the caller should store it


def test_stale_validators_get_the_new_body(server: Server) -> None:
    got = fetch_url(
        server.url("/feed"), etag='"old"', last_modified="Mon, 01 Jan 2024 00:00:00 GMT"
    )
    assert got.data == BODY and got.etag == ETAG


# -- encodings and redirects ---------------------------------------------------------------


def test_gzip_body_is_decoded(server: Server) -> None:
    got = fetch_url(server.url("/gzip"))
    assert got.data == BODY


def test_gzip_bomb_is_stopped_at_the_cap(server: Server) -> None:
    with pytest.raises(FetchError, match=r"/gzip-bomb: response is larger than 1000000 bytes"):
        fetch_url(server.url("/gzip-bomb"), max_bytes=1_000_000)


def test_broken_gzip_is_an_error(server: Server) -> None:
    with pytest.raises(FetchError, match="broken gzip body"):
        fetch_url(server.url("/broken-gzip"))


def test_unknown_content_encoding_is_an_error(server: Server) -> None:
    with pytest.raises(FetchError, match="unsupported Content-Encoding 'br'"):
        fetch_url(server.url("/brotli"))


@pytest.mark.parametrize("path", ["/redirect", "/redirect-absolute"])
def test_redirects_are_followed_and_source_is_the_final_url(server: Server, path: str) -> None:
    got = fetch_url(server.url(path), etag=ETAG)
    # The validators travel with the redirect: the final URL answers 304.
    assert got.data is None and got.status == 304
    got = fetch_url(server.url(path))
    assert got.data == BODY and got.source == server.url("/feed")


def test_redirect_loop_is_an_error(server: Server) -> None:
    with pytest.raises(FetchError, match=r"/redirect-loop: HTTP 302 .*infinite loop") as info:
        fetch_url(server.url("/redirect-loop"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("path", "target"),
    [("/redirect-to-file", "file:///etc/passwd"), ("/redirect-to-ftp", "ftp://127.0.0.1/feed.xml")],
)
def test_redirect_away_from_the_web_is_refused(server: Server, path: str, target: str) -> None:
    # urllib itself refuses file:, our handler refuses ftp: (which urllib would follow).
    with pytest.raises(FetchError, match=rf"{path}: HTTP 302 .*{target}.* (refused|not allowed)"):
        fetch_url(server.url(path))


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [("/missing", "HTTP 404 Not Found"), ("/error", "HTTP 500 Internal Server Error")],
)
def test_http_errors_name_url_and_status(server: Server, path: str, message: str) -> None:
    with pytest.raises(FetchError) as info:
        fetch_url(server.url(path))
    assert str(info.value) == f"{server.url(path)}: {message}"


def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{_free_port()}/feed"
    with pytest.raises(FetchError, match=r"127\.0\.0\.1:\d+/feed: cannot connect: .*refused"):
        fetch_url(url, timeout=2)


def test_announced_oversized_body_is_refused_before_reading(server: Server) -> None:
    with pytest.raises(FetchError, match=r"/big: response is larger than 1000 bytes"):
        fetch_url(server.url("/big"), max_bytes=1000)
    assert fetch_url(server.url("/big"), max_bytes=5000).data == b"x" * 5000


def test_unannounced_oversized_body_is_cut_while_reading(server: Server) -> None:
    with pytest.raises(FetchError, match="larger than 10000 bytes"):
        fetch_url(server.url("/big-unannounced"), max_bytes=10_000)
    assert fetch_url(server.url("/big-unannounced")).data == b"x" * 50_000


def test_body_shorter_than_announced_is_an_error(server: Server) -> None:
    with pytest.raises(FetchError, match="connection closed after 5 of 1000 bytes"):
        fetch_url(server.url("/short"))


@pytest.mark.parametrize("path", ["/stall", "/silent"])
def test_a_server_that_goes_quiet_times_out(server: Server, path: str) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out after 0\.3 s"):
        fetch_url(server.url(path), timeout=0.3)
    assert time.monotonic() - started < 2


def test_a_server_that_trickles_is_cut_by_the_total_deadline(server: Server) -> None:
    # A byte every 50 ms never trips the 0.5 s per-read timeout; the deadline does.
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"/trickle: download took longer than 0\.5 s"):
        fetch_url(server.url("/trickle"), timeout=0.5)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/feed.xml", "mailto:someone@example.org", "javascript:alert(1)", "feed.xml"],
)
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(FetchError, match="unsupported URL scheme"):
        fetch_url(url)


def test_a_url_without_host_is_an_error() -> None:
    with pytest.raises(FetchError, match=r"^http:///feed: "):
        fetch_url("http:///feed")


# -- files -----------------------------------------------------------------------------


def test_read_path(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(BODY)
    got = read_path(path)
    assert got.data == BODY and got.source == str(path)
    assert got.status is None and got.etag is None
    assert got.last_modified is not None
    assert parsedate_to_datetime(got.last_modified).timestamp() == int(path.stat().st_mtime)


def test_read_path_refuses_missing_directory_and_oversized(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"missing\.xml: no such file"):
        read_path(tmp_path / "missing.xml")
    with pytest.raises(FetchError, match="is a directory"):
        read_path(tmp_path)
    path = tmp_path / "big.xml"
    path.write_bytes(b"x" * 101)
    with pytest.raises(FetchError, match=r"big\.xml: file is larger than 100 bytes"):
        read_path(path, max_bytes=100)
    assert read_path(path, max_bytes=101).data == b"x" * 101


def test_read_path_caps_a_device_with_no_size() -> None:
    with pytest.raises(FetchError, match="larger than 1000 bytes"):
        read_path(Path("/dev/zero"), max_bytes=1000)


def test_file_urls_are_read_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_bytes(BODY)
    got = fetch_url(path.as_uri())
    assert got.data == BODY and got.source == path.as_uri() and got.status is None
    with pytest.raises(FetchError, match="no such file"):
        fetch_url((tmp_path / "nope.xml").as_uri())
    with pytest.raises(FetchError, match="must name a local file"):
        fetch_url("file://elsewhere.example/feed.xml")
