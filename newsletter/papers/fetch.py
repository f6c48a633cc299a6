"""All network and file reads of ingest (the only module of ``papers`` that does IO).

:func:`fetch_url` does a conditional GET with :mod:`urllib.request` (no extra
dependency): the caller keeps each feed's ``ETag`` / ``Last-Modified`` and hands them
back, a ``304 Not Modified`` comes back as ``data=None``. :func:`read_path` reads a
local file. Both cap the size, and every failure is a :class:`FetchError` whose message
names the URL or path and, for HTTP, the status.

Limits, and why:

* ``timeout`` bounds each network operation (connect, each read) *and* the whole
  download: a server that trickles a byte a second never trips a per-read timeout,
  so the body is read in small pieces against a deadline. A read in flight when the
  deadline passes may take up to ``timeout`` more, so a fetch takes at most about
  twice ``timeout``. Name resolution (DNS) is not covered: the standard library
  cannot time it out.
* ``max_bytes`` caps the *decoded* body: a gzip bomb is stopped after ``max_bytes``
  of output, not after it has filled memory.
* Redirects are followed (at most :data:`MAX_REDIRECTS`) to http and https only, so a
  feed cannot redirect us to ``file:///etc/passwd`` or ``ftp:``.
"""

from __future__ import annotations

import email.utils
import http.client
import os
import stat
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from newsletter.errors import FetchError

#: Sent with every request. arXiv asks API clients to identify themselves.
USER_AGENT = "newsletter-paper-digest/0.1 (self-hosted research-paper digest; urllib)"
#: Feeds first, then any XML, then anything (a misconfigured server may say text/plain).
ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
)
#: Size of each read of a response body: small enough that the deadline is checked
#: often, large enough that a 20 MB feed takes a few hundred reads.
CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 10
DEFAULT_MAX_BYTES = 20_000_000
_WEB_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class Fetched:
    """What a fetch or a file read produced.

    ``data`` is None only for an HTTP 304 (not modified since the ETag/Last-Modified
    the caller sent). ``source`` is where the bytes came from: the final URL after
    redirects, or the path as given for a file. ``etag`` and ``last_modified`` are the
    validators to send next time (a 304 without them repeats the ones sent; a file's
    ``last_modified`` is its modification time as an HTTP date). ``status`` is the HTTP
    status (None for files), ``content_type`` the response's Content-Type header.
    """

    data: bytes | None
    source: str
    etag: str | None = None
    last_modified: str | None = None
    status: int | None = None
    content_type: str | None = None


def fetch_url(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    timeout: float = 30.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    user_agent: str = USER_AGENT,
) -> Fetched:
    """GET ``url`` (http, https or file), conditionally when validators are given.

    Sends ``If-None-Match: etag`` and ``If-Modified-Since: last_modified`` when given;
    a 304 returns ``Fetched(data=None, ...)``. Follows redirects; decodes a gzip body.
    Raises :class:`FetchError` for another scheme, a connection or DNS failure, an HTTP
    error status, a timeout, or a body larger than ``max_bytes``.
    """
    scheme = _scheme(url)
    if scheme == "file":
        return replace(read_path(_file_url_path(url), max_bytes=max_bytes), source=url)
    if scheme not in _WEB_SCHEMES:
        shown = f"{scheme}:" if scheme else "no scheme"
        raise FetchError(f"{url}: unsupported URL scheme ({shown}); use http, https or file")

    headers = {"User-Agent": user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(_RedirectHandler())
    try:
        request = urllib.request.Request(url, headers=headers)
        with opener.open(request, timeout=timeout) as response:
            data = _read_body(response, url, deadline, timeout, max_bytes)
            return Fetched(
                data=data,
                source=response.geturl(),
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                status=response.status,
                content_type=response.headers.get("Content-Type"),
            )
    except urllib.error.HTTPError as exc:
        exc.close()  # an HTTPError holds the connection open until closed
        if exc.code == 304:
            return Fetched(
                data=None,
                source=exc.geturl() or url,
                etag=exc.headers.get("ETag") or etag,
                last_modified=exc.headers.get("Last-Modified") or last_modified,
                status=304,
                content_type=exc.headers.get("Content-Type"),
            )
        # One line: urllib's redirect-loop reason spans several.
        reason = " ".join(str(exc.reason).split())
        raise FetchError(f"{url}: HTTP {exc.code} {reason}".rstrip()) from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise FetchError(f"{url}: timed out after {timeout:g} s") from exc
        raise FetchError(f"{url}: cannot connect: {exc.reason}") from exc
    except TimeoutError as exc:
        raise FetchError(f"{url}: timed out after {timeout:g} s") from exc
    except (http.client.HTTPException, OSError, ValueError) as exc:
        # A dropped connection, a malformed response, a URL urllib cannot use.
        raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from exc


def read_path(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Fetched:
    """The bytes of a local file, at most ``max_bytes``.

    Raises :class:`FetchError` for a missing or unreadable file, a directory, or a
    file larger than ``max_bytes`` (checked while reading too, so a growing file or a
    device such as ``/dev/zero`` cannot exhaust memory).
    """
    try:
        with path.open("rb") as f:
            info = os.fstat(f.fileno())
            # Only a regular file's size means anything (a pipe or device says 0).
            if stat.S_ISREG(info.st_mode) and info.st_size > max_bytes:
                raise FetchError(f"{path}: file is larger than {max_bytes} bytes")
            data = f.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise FetchError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise FetchError(f"{path}: is a directory, not a file") from exc
    except PermissionError as exc:
        raise FetchError(f"{path}: permission denied") from exc
    except OSError as exc:
        raise FetchError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise FetchError(f"{path}: file is larger than {max_bytes} bytes")
    return Fetched(
        data=data,
        source=str(path),
        last_modified=email.utils.formatdate(info.st_mtime, usegmt=True),
    )


# -- helpers -------------------------------------------------------------------------------


def _scheme(url: str) -> str:
    try:
        return urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return ""


def _file_url_path(url: str) -> Path:
    """The local path of a ``file:`` URL; another host's file is refused."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise FetchError(f"{url}: file URLs must name a local file (file:///path)")
    return Path(urllib.request.url2pathname(parts.path))


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http and https only (the default also allows ftp)."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if _scheme(newurl) not in _WEB_SCHEMES:
            fp.close()
            raise FetchError(f"{req.full_url}: HTTP {code} redirect to {newurl} refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _read_body(
    response: http.client.HTTPResponse, url: str, deadline: float, timeout: float, max_bytes: int
) -> bytes:
    """The body, gunzipped if need be, read in pieces against the deadline and cap."""
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise FetchError(f"{url}: response is larger than {max_bytes} bytes")
    encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        # wbits 16+MAX_WBITS: a gzip header and trailer around deflate data.
        decoder: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "identity":
        decoder = None
    else:
        raise FetchError(f"{url}: unsupported Content-Encoding {encoding!r}")

    parts: list[bytes] = []
    size = 0  # decoded bytes kept
    received = 0  # bytes on the wire, to compare with Content-Length
    while True:
        if time.monotonic() > deadline:
            raise FetchError(f"{url}: download took longer than {timeout:g} s")
        # read1 returns as soon as some bytes arrive; read(n) would wait for all n.
        chunk = response.read1(CHUNK_BYTES)
        if not chunk:
            break
        received += len(chunk)
        pending = chunk
        while pending:
            if decoder is None:
                piece, pending = pending, b""
            else:
                # Never inflate more than the cap allows (+1 to notice the overflow).
                try:
                    piece = decoder.decompress(pending, max_bytes - size + 1)
                except zlib.error as exc:
                    raise FetchError(f"{url}: broken gzip body: {exc}") from exc
                pending = decoder.unconsumed_tail
            size += len(piece)
            if size > max_bytes:
                raise FetchError(f"{url}: response is larger than {max_bytes} bytes")
            parts.append(piece)
    # http.client's read1 reports a connection closed early as a plain end of body.
    if length and length.isdigit() and received < int(length):
        raise FetchError(f"{url}: connection closed after {received} of {length} bytes")
    if decoder is not None:
        try:
            tail = decoder.flush()
        except zlib.error as exc:
            raise FetchError(f"{url}: broken gzip body: {exc}") from exc
        if not decoder.eof:
            raise FetchError(f"{url}: gzip body is truncated")
        size += len(tail)
        if size > max_bytes:
            raise FetchError(f"{url}: response is larger than {max_bytes} bytes")
        parts.append(tail)
    return b"".join(parts)
