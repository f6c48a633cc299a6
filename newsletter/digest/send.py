"""Mail transports: hand a finished :class:`~email.message.EmailMessage` to something.

Every transport implements the small :class:`Transport` protocol and is chosen by
configuration through :func:`transport_from_url` (``NEWSLETTER_MAIL_URL``):

==============================================  =======================================
URL                                             transport
==============================================  =======================================
``smtp://localhost:1025``                       :class:`SMTPTransport`, no TLS, no auth
``smtp://user:pass@host:587?starttls=1``        :class:`SMTPTransport` with STARTTLS
``smtps://user:pass@host:465``                  :class:`SMTPTransport` with implicit TLS
``maildir://var/maildir``, ``maildir:///abs``   :class:`MaildirTransport` (dev default)
``console://``                                  :class:`ConsoleTransport` (stdout)
``memory://``                                   :class:`MemoryTransport` (tests)
==============================================  =======================================

Options: ``timeout=SECONDS`` (smtp, smtps), ``starttls=1`` (smtp), ``rate=N`` (any
scheme: at most N messages per second, see :class:`RateLimiter`).

Contract of ``send``: it returns normally only when the message has been handed over
(SMTP: the server answered 250 to the end of DATA). Otherwise it raises

* :class:`TransientSendError` -- try again later. SMTP 4xx, 552, timeouts, refused or
  dropped connections, and :class:`SessionRefusedError` (a subclass: the server refused
  *us* -- authentication, TLS, sender address -- rather than the recipient);
* :class:`PermanentSendError` -- the recipient or the message was refused for good
  (SMTP 5xx other than 552, in reply to RCPT or DATA): suppress the address.

A message whose data may have reached the server is never sent a second time by the
transport: if the connection is lost after the final "." the send raises a transient
error and the caller decides (the outbox retries it, accepting a rare duplicate).
A message without a sender or recipients is a bug and raises :class:`ValueError`.

Transports are not thread-safe: give each worker thread its own.
"""

from __future__ import annotations

import copy
import email
import email.policy
import ipaddress
import logging
import mailbox
import math
import os
import re
import smtplib
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self, TextIO
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

import dkim

from newsletter.config import Settings
from newsletter.errors import ConfigError, NewsletterError

__all__ = [
    "DEFAULT_MAILDIR",
    "DEFAULT_TIMEOUT",
    "ConsoleTransport",
    "DkimSigner",
    "DkimTransport",
    "MaildirTransport",
    "MemoryTransport",
    "PermanentSendError",
    "RateLimitedTransport",
    "RateLimiter",
    "SMTPTransport",
    "SendError",
    "SessionRefusedError",
    "TransientSendError",
    "Transport",
    "classify_reply",
    "transport_for",
    "transport_from_url",
    "wire_bytes",
]

log = logging.getLogger(__name__)

#: Seconds any single SMTP socket operation may take. A hung relay must not hold a
#: worker (and the lease on its outbox row) for long; healthy servers answer in well
#: under a second, slow greylisting ones in a few.
DEFAULT_TIMEOUT: Final = 30.0

#: The embedded default: a Maildir any mail client can open (DESIGN.md "Delivery").
DEFAULT_MAILDIR: Final = Path("var/maildir")

#: Server text is kept for logs and the outbox's last_error; a few hundred characters
#: say everything a server has to say and keep one reply from filling a column.
_REASON_LIMIT: Final = 200


# --------------------------------------------------------------------------- errors


class SendError(NewsletterError):
    """A message was not handed over.

    ``code`` is the SMTP reply code, or None when there was no reply (network error,
    timeout, a non-SMTP transport). ``reason`` is a short, single-line explanation.

    ``refused`` maps each refused recipient to its (code, reason) when the server
    refused recipients one by one; it is empty when the error concerns the whole
    message. ``delivered_to`` lists recipients the message *was* delivered to despite
    the error (a partial refusal of a multi-recipient message): never resend to them.
    """

    def __init__(
        self,
        code: int | None,
        reason: str,
        *,
        refused: Mapping[str, tuple[int, str]] | None = None,
        delivered_to: Sequence[str] = (),
    ) -> None:
        self.code = code
        self.reason = _short(reason)
        self.refused: dict[str, tuple[int, str]] = dict(refused or {})
        self.delivered_to: tuple[str, ...] = tuple(delivered_to)
        super().__init__(self.reason if code is None else f"{code} {self.reason}")


class TransientSendError(SendError):
    """Try again later: nothing says the address is bad."""


class SessionRefusedError(TransientSendError):
    """The server refused our session, not the recipient.

    Authentication failed, STARTTLS is missing, the certificate is not trusted, the
    greeting or EHLO was refused, or the envelope sender was rejected. Every message
    will fail the same way until a setting or the server changes, so an operator must
    look; it is transient because suppressing the recipient would punish the wrong
    party (a bad password would otherwise unsubscribe the whole list).
    """


class PermanentSendError(SendError):
    """The recipient or the message was refused for good: suppress the address."""


def classify_reply(
    code: int,
    reason: str | bytes,
    *,
    refused: Mapping[str, tuple[int, str]] | None = None,
    delivered_to: Sequence[str] = (),
) -> SendError:
    """The error for an SMTP reply about a recipient or a message (RCPT, DATA).

    4xx is transient. 552 is transient too: RFC 5321 section 4.5.3.1.10 tells clients
    to treat it as temporary, because servers use it both for "too many recipients"
    and for a full mailbox, which the owner can empty. Other 5xx are permanent. Any
    other code (a success where an error was expected, garbage) is transient: a
    confused exchange says nothing about the address.
    """
    text = _decode(reason)
    if _is_permanent(code):
        return PermanentSendError(code, text, refused=refused, delivered_to=delivered_to)
    return TransientSendError(code, text, refused=refused, delivered_to=delivered_to)


def _session_reply_error(code: int, reason: str | bytes) -> TransientSendError:
    """The error for a reply refusing our session (greeting, EHLO, TLS, AUTH, MAIL)."""
    if _is_permanent(code):
        return SessionRefusedError(code, _decode(reason))
    return TransientSendError(code, _decode(reason))


def _is_permanent(code: int) -> bool:
    return 500 <= code <= 599 and code != 552


def _decode(text: str | bytes) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def _short(text: str) -> str:
    """One line, at most ``_REASON_LIMIT`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _REASON_LIMIT else flat[: _REASON_LIMIT - 1] + "…"


# ----------------------------------------------------------------------- wire format


class _WirePolicy(email.policy.EmailPolicy):
    """``email.policy.SMTP`` that never turns an ASCII header into RFC 2047 words.

    The stdlib folder encodes any word it cannot fit in 78 columns, so a
    ``List-Unsubscribe: <https://…/u/LONG-TOKEN>`` came out as ``=?utf-8?q?=3Chttps…``,
    which no mail client reads as a URL. ASCII values set by code are therefore folded
    only at their own whitespace and a long word is left long (RFC 5322 allows up to
    998 characters); non-ASCII values still get encoded-words from the stdlib.
    Headers parsed from bytes (``refold_source="none"``) are written back unchanged,
    which keeps a DKIM-signed message byte-identical.
    """

    _PLAIN: Final = re.compile(r"[\x20-\x7e\t]*")
    _FOLD_POINT: Final = re.compile(r"(?<=\S)(?=[ \t])")
    _HARD_LIMIT: Final = 998

    def fold(self, name: str, value: Any) -> str:
        plain = self._fold_plain(name, value)
        return plain if plain is not None else super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        plain = self._fold_plain(name, value)
        if plain is not None:
            return plain.encode("ascii")
        return super().fold_binary(name, value)

    def _fold_plain(self, name: str, value: Any) -> str | None:
        if not hasattr(value, "name"):
            return None  # raw source text: the stdlib writes it back as it was
        text = str(value)
        if "=?" in text or not self._PLAIN.fullmatch(text):
            return None
        limit = self.max_line_length or sys.maxsize
        lines: list[str] = []
        line = f"{name}:"
        pieces = self._FOLD_POINT.split(text)
        line += " " + pieces[0]
        for piece in pieces[1:]:  # each piece starts with the whitespace it folds at
            if len(line) + len(piece) > limit:
                lines.append(line)
                line = piece
            else:
                line += piece
        lines.append(line)
        if any(len(each) > self._HARD_LIMIT for each in lines):
            return None
        return self.linesep.join(lines) + self.linesep


#: How every transport turns a message into bytes: CRLF, 8-bit bodies as they are.
_WIRE_POLICY: Final = _WirePolicy(linesep="\r\n", refold_source="none")


def _flatten(msg: EmailMessage, policy: email.policy.EmailPolicy) -> bytes:
    return msg.as_bytes(policy=policy)


def wire_bytes(
    msg: EmailMessage, *, linesep: str = "\r\n", utf8: bool = False, seven_bit: bool = False
) -> bytes:
    """The bytes a transport writes for ``msg``: what recipients (and DKIM) see.

    Bcc is removed (its addresses are still envelope recipients). ``utf8`` writes
    non-ASCII headers raw (SMTPUTF8); ``seven_bit`` re-encodes 8-bit bodies for a
    server without 8BITMIME. Serialising the same message twice gives the same bytes.
    """
    fast = _prebuilt_bytes(msg, linesep)
    if fast is not None:
        return fast
    if msg.get_all("Bcc"):
        msg = copy.deepcopy(msg)
        del msg["Bcc"]
    policy = _WIRE_POLICY.clone(
        linesep=linesep, utf8=utf8, cte_type="7bit" if seven_bit else "8bit"
    )
    return _flatten(msg, policy)


def _prebuilt_bytes(msg: EmailMessage, linesep: str) -> bytes | None:
    """The fast path for messages from :func:`newsletter.digest.message.build_message`:
    their headers are already encoded ASCII and their bodies 7-bit (7bit text,
    quoted-printable, base64), so neither SMTPUTF8 nor a 7-bit server changes a byte,
    and the builder's own serialiser writes them several times faster than the stdlib.
    """
    from newsletter.digest.message import MessagePolicy, message_bytes

    if not isinstance(msg.policy, MessagePolicy) or msg.get_all("Bcc"):
        return None
    data = message_bytes(msg)
    if linesep == "\r\n":
        return data
    if linesep == "\n":
        # message_bytes writes no CR but in CRLF (bodies and headers are canonical and
        # a stored header cannot hold a CR), so dropping every CR is the same thing,
        # ten times faster: bytes.replace of a two-byte pattern took 130 µs a digest.
        return data.replace(b"\r", b"")
    return data.replace(b"\r\n", linesep.encode())


@dataclass(frozen=True)
class _Envelope:
    sender: str
    recipients: tuple[str, ...]

    @property
    def international(self) -> bool:
        return not all(address.isascii() for address in (self.sender, *self.recipients))


# A stored header value that is one plain address, or one with a simple display name
# ("Paper Digest <digest@example.org>"): what build_message writes for From and To.
_ADDR: Final = r"[^\s<>@\"(),:;\\\[\]]+@[^\s<>@\"(),:;\\\[\]]+"
_PLAIN_ADDRESS: Final = re.compile(_ADDR)
_NAMED_ADDRESS: Final = re.compile(rf"[A-Za-z0-9 .'-]*<({_ADDR})>")


def _addresses(msg: EmailMessage, *names: str) -> list[str]:
    """The addresses in the ``names`` headers, in that order. A stored value that is
    one plain (or simply named) address is read as it is; anything else is parsed."""
    found: list[str] = []
    raw = list(msg.raw_items())
    for name in names:
        lower = name.lower()
        for field, value in raw:
            if field.lower() != lower:
                continue
            if type(value) is str:
                if _PLAIN_ADDRESS.fullmatch(value):
                    found.append(value)
                    continue
                named = _NAMED_ADDRESS.fullmatch(value)
                if named:
                    found.append(named.group(1))
                    continue
            parsed = str(msg.policy.header_fetch_parse(field, value))
            found += [address for _display, address in getaddresses([parsed]) if address]
    return found


def _envelope_of(msg: EmailMessage, envelope_from: str | None = None) -> _Envelope:
    """Envelope sender (Sender, else From) and recipients (To, Cc, Bcc) of ``msg``."""
    senders = [envelope_from] if envelope_from else _addresses(msg, "Sender", "From")
    if not senders:
        raise ValueError("message has no From address")
    recipients = tuple(dict.fromkeys(_addresses(msg, "To", "Cc", "Bcc")))
    if not recipients:
        raise ValueError("message has no recipients (To, Cc or Bcc)")
    return _Envelope(senders[0], recipients)


# ------------------------------------------------------------------------- protocol


class Transport(Protocol):
    """Where messages go. Use as a context manager around a batch::

        with transport:
            for msg in messages:
                transport.send(msg)

    ``open``/``close`` bracket a batch so SMTP reuses one connection; ``send`` may also
    be called outside ``with`` (it opens what it needs; ``close`` releases it).
    ``send`` returns only when the message was handed over and raises
    :class:`TransientSendError` or :class:`PermanentSendError` otherwise.
    """

    def open(self) -> None: ...

    def close(self) -> None: ...

    def send(self, msg: EmailMessage) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _Lifecycle:
    """``with`` support for transports: ``__enter__`` opens, ``__exit__`` closes."""

    def open(self) -> None:
        """Prepare for a batch. Nothing to do unless a transport overrides it."""

    def close(self) -> None:
        """End a batch and release resources. Safe to call more than once."""

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------- simple transports


class MemoryTransport(_Lifecycle):
    """Keeps sent messages in ``sent`` (deep copies); for tests.

    ``failures`` (or :meth:`fail_next`) queues outcomes for the next sends: each send
    takes one; an error is raised and the message is not kept, None means "succeed".
    ``opened``/``closed`` count batches so tests can check a batch was one ``with``.
    """

    def __init__(self, failures: Iterable[SendError | None] = ()) -> None:
        self.sent: list[EmailMessage] = []
        self.failures: deque[SendError | None] = deque(failures)
        self.opened = 0
        self.closed = 0

    def fail_next(self, *outcomes: SendError | None) -> None:
        """Queue outcomes for the next sends, after any already queued."""
        self.failures.extend(outcomes)

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1

    def send(self, msg: EmailMessage) -> None:
        _envelope_of(msg)  # the same ValueError as the real transports
        outcome = self.failures.popleft() if self.failures else None
        if outcome is not None:
            raise outcome
        self.sent.append(copy.deepcopy(msg))


class ConsoleTransport(_Lifecycle):
    """Writes each message, readable (UTF-8 headers), to a text stream; for development.

    The stream defaults to ``sys.stdout`` as it is at send time, so redirection and
    test capture work. Each message is preceded by a rule line.
    """

    RULE: Final = "-" * 78

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def send(self, msg: EmailMessage) -> None:
        _envelope_of(msg)
        text = wire_bytes(msg, linesep="\n", utf8=True).decode("utf-8", "replace")
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(f"{self.RULE}\n{text}")
        if not text.endswith("\n"):
            stream.write("\n")
        stream.flush()


class MaildirTransport(_Lifecycle):
    """Delivers each message into ``PATH/new`` of a Maildir, via ``tmp`` as the format
    requires, so a mail client never sees half a message.

    ``cur``, ``new`` and ``tmp`` (and their parents) are created when missing. A file
    system error (disk full, permissions) is a :class:`TransientSendError`.
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_MAILDIR) -> None:
        self.path = Path(path)
        self._box: mailbox.Maildir | None = None
        self._count = 0
        # Maildir names carry the host; "/" and ":" would break the name (maildir(5)).
        self._host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")

    def open(self) -> None:
        self._mailbox()

    def close(self) -> None:
        self._box = None

    def send(self, msg: EmailMessage) -> None:
        _envelope_of(msg)
        try:
            # Files in a Maildir use the local line ending, as every client expects.
            self._deliver(wire_bytes(msg, linesep="\n"))
        except OSError as exc:
            raise TransientSendError(
                None, f"cannot write to Maildir {self.path}: {exc.strerror or exc}"
            ) from exc

    def _deliver(self, data: bytes) -> None:
        """Write ``data`` to ``tmp/`` under a unique name, then move it into ``new/``
        (as ``mailbox.Maildir.add`` does, without its per-message bookkeeping)."""
        self._mailbox()
        self._count += 1
        now = time.time()
        name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{self._count}.{self._host}"
        tmp = self.path / "tmp" / name
        with open(tmp, "xb") as out:
            out.write(data)
        os.rename(tmp, self.path / "new" / name)

    def _mailbox(self) -> mailbox.Maildir:
        if self._box is None:
            try:
                # mailbox.Maildir(create=True) makes only the leaf directory, and none
                # of cur/new/tmp when the folder already exists.
                for sub in ("cur", "new", "tmp"):
                    (self.path / sub).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TransientSendError(
                    None, f"cannot create Maildir {self.path}: {exc.strerror or exc}"
                ) from exc
            self._box = mailbox.Maildir(self.path, factory=None, create=False)
        return self._box


# --------------------------------------------------------------------------- SMTP


class _Lost(Exception):
    """The connection failed mid-exchange; ``error`` is what the caller should see."""

    def __init__(
        self, error: TransientSendError, *, timed_out: bool, at_mail: bool = False
    ) -> None:
        super().__init__(error.reason)
        self.error = error
        self.timed_out = timed_out
        #: Lost at MAIL FROM, before anything of the transaction was answered.
        self.at_mail = at_mail


class SMTPTransport(_Lifecycle):
    """Sends over SMTP, one connection per batch.

    ``starttls`` upgrades a plain connection (and fails rather than continue in clear
    text when the server does not offer it); ``use_ssl`` speaks TLS from the first
    byte (port 465). Certificates are verified against the system's CAs unless an
    ``ssl_context`` is given (tests pass one that trusts their own certificate).
    ``timeout`` bounds every socket operation. ``envelope_from`` overrides the bounce
    address (default: the message's Sender or From).

    The connection is opened on the first send and kept until :meth:`close` (QUIT).
    If a kept connection turns out to be closed when the next message starts -- the
    server dropped it while idle, or answered 421 to MAIL FROM -- the transport
    reconnects once and sends; nothing of that message had reached the server. A
    connection lost later than that is never retried here: after the data went out
    the server may have accepted the message, so the send raises a transient error.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        starttls: bool = False,
        use_ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        envelope_from: str | None = None,
    ) -> None:
        if starttls and use_ssl:
            raise ConfigError("choose STARTTLS or implicit TLS (smtps), not both")
        if (username is None) != (password is None):
            raise ConfigError("SMTP authentication needs both a username and a password")
        if not (username or "").isascii() or not (password or "").isascii():
            # smtplib encodes AUTH as ASCII and would fail at the first send instead.
            raise ConfigError("SMTP username and password must be ASCII")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError(f"SMTP timeout must be a positive number of seconds: {timeout}")
        if username is not None and not (starttls or use_ssl) and not _is_loopback(host):
            # A password sent in clear text over the Internet is a password published.
            raise ConfigError(
                f"refusing to send the SMTP password unencrypted to {host}: "
                "use starttls=1 or smtps://"
            )
        self.host = host
        self.port = port if port is not None else 465 if use_ssl else 587 if starttls else 25
        self.starttls = starttls
        self.use_ssl = use_ssl
        self.username = username
        self._password = password
        self.timeout = timeout
        self._ssl_context = ssl_context
        self.local_hostname = local_hostname
        self.envelope_from = envelope_from
        self._conn: smtplib.SMTP | None = None

    def __repr__(self) -> str:  # never shows the password
        mode = "ssl" if self.use_ssl else "starttls" if self.starttls else "plain"
        user = f"{self.username}@" if self.username else ""
        return f"SMTPTransport({user}{self.host}:{self.port}, {mode})"

    def close(self) -> None:
        """Say QUIT and close the connection, if one is open."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            pass  # the server is gone already; there is no one left to say goodbye to
        finally:
            conn.close()

    def send(self, msg: EmailMessage) -> None:
        envelope = _envelope_of(msg, self.envelope_from)
        kept = self._conn is not None
        try:
            self._transaction(self._connection(), msg, envelope)
        except _Lost as lost:
            # Found closed at MAIL FROM: nothing of this message reached the server, so
            # a fresh connection is safe -- but only for a connection we had kept (a
            # new one failing at once would fail again) and never for a hung server.
            if not (kept and lost.at_mail) or lost.timed_out:
                raise lost.error from lost.__cause__
            log.info("SMTP connection to %s was closed while idle; reconnecting", self.host)
            try:
                # Afresh: the new connection's extensions decide the way and the bytes.
                self._transaction(self._connection(), msg, envelope)
            except _Lost as again:
                raise again.error from again.__cause__

    def _transaction(self, conn: smtplib.SMTP, msg: EmailMessage, envelope: _Envelope) -> None:
        """One message over ``conn``: pipelined when the server offers it, else one
        command at a time. Returns only when the server accepted it; raises
        :class:`_Lost` (``at_mail`` when the transaction never started) or the
        :class:`SendError` of a refusal."""
        payload, options = _payload_for(conn, msg, envelope)
        if conn.has_extn("pipelining"):
            accepted, refused = self._envelope_pipelined(conn, envelope, options)
        else:
            self._mail_from(conn, envelope, options)
            accepted, refused = self._recipients(conn, envelope)
            self._data_command(conn)
        self._content(conn, payload)
        if refused:
            raise _refusal(refused, delivered_to=accepted)

    # -- connection

    def _connection(self) -> smtplib.SMTP:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _discard(self) -> None:
        """Forget the connection without QUIT: its state is unknown or it is closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        conn: smtplib.SMTP
        try:
            if self.use_ssl:
                conn = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=self._context(),
                )
            else:
                conn = smtplib.SMTP(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
        except (smtplib.SMTPException, OSError) as exc:
            raise self._setup_error(exc, "connecting") from exc
        try:
            conn.ehlo_or_helo_if_needed()
            if self.starttls:
                conn.starttls(context=self._context())
                conn.ehlo_or_helo_if_needed()  # RFC 3207: forget what was said in clear
            if self.username is not None and self._password is not None:
                conn.login(self.username, self._password)
        except (smtplib.SMTPException, OSError) as exc:
            conn.close()
            raise self._setup_error(exc, "setting up the session") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _setup_error(self, exc: BaseException, stage: str) -> TransientSendError:
        where = f"{self.host}:{self.port}"
        if isinstance(exc, smtplib.SMTPResponseException):
            return _session_reply_error(exc.smtp_code, exc.smtp_error)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            if isinstance(exc.__context__, TimeoutError):  # smtplib's name for a timeout
                return TransientSendError(None, f"timed out after {self.timeout:g}s {stage}")
            return TransientSendError(None, f"connection lost {stage} with {where}")
        if isinstance(exc, smtplib.SMTPException):  # no STARTTLS / AUTH offered, ...
            return SessionRefusedError(None, f"{where}: {exc}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return SessionRefusedError(
                None, f"TLS certificate of {where} not trusted: {exc.verify_message}"
            )
        if isinstance(exc, TimeoutError):
            return TransientSendError(None, f"timed out after {self.timeout:g}s {stage}")
        if isinstance(exc, ConnectionRefusedError):
            return TransientSendError(None, f"connection to {where} refused")
        return TransientSendError(None, f"{stage} with {where} failed: {exc}")

    def _reset(self, conn: smtplib.SMTP) -> None:
        """RSET after an aborted transaction; a connection that cannot is dropped."""
        try:
            code, _ = conn.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._discard()

    def _exchange(
        self, stage: str, command: Callable[[], tuple[int, bytes]], *, at_mail: bool = False
    ) -> tuple[int, bytes]:
        """Run one command; a broken connection is dropped and raised as :class:`_Lost`."""
        try:
            return command()
        except (smtplib.SMTPException, OSError) as exc:
            # Whatever broke (EOF, reset, timeout, a garbled reply), the stream can no
            # longer be trusted to pair our commands with their replies.
            self._discard()
            # smtplib reports a socket timeout as SMTPServerDisconnected.
            timed_out = isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)
            if timed_out:
                reason = f"timed out after {self.timeout:g}s {stage}"
            elif isinstance(exc, smtplib.SMTPServerDisconnected):
                reason = f"connection lost {stage}"
            else:
                reason = f"connection broken {stage}: {exc}"
            raise _Lost(
                TransientSendError(None, reason), timed_out=timed_out, at_mail=at_mail
            ) from exc

    # -- one transaction

    def _mail_from(self, conn: smtplib.SMTP, envelope: _Envelope, options: list[str]) -> None:
        """Send MAIL FROM. :class:`_Lost` (including a 421 reply) means the
        transaction never started."""
        code, reply = self._exchange(
            "at MAIL FROM", lambda: conn.mail(envelope.sender, options), at_mail=True
        )
        if code == 250:
            return
        if code == 421:  # "closing transmission channel": the server hangs up now
            self._discard()
            raise _Lost(TransientSendError(code, _decode(reply)), timed_out=False, at_mail=True)
        self._reset(conn)
        raise _session_reply_error(code, reply)

    def _recipients(
        self, conn: smtplib.SMTP, envelope: _Envelope
    ) -> tuple[list[str], dict[str, tuple[int, str]]]:
        """RCPT TO for each recipient: the accepted ones and the refused ones.

        Raises when none was accepted (after RSET, so the connection stays usable).
        """
        accepted: list[str] = []
        refused: dict[str, tuple[int, str]] = {}
        for recipient in envelope.recipients:
            code, reply = self._exchange("at RCPT TO", partial(conn.rcpt, recipient))
            if code in (250, 251):
                accepted.append(recipient)
            elif code == 421:
                self._discard()
                raise TransientSendError(code, _decode(reply))
            else:
                refused[recipient] = (code, _short(_decode(reply)))
        if not accepted:
            self._reset(conn)
            raise _refusal(refused, delivered_to=())
        return accepted, refused

    def _data_command(self, conn: smtplib.SMTP) -> None:
        """DATA; returns only on a 354."""

        def data_command() -> tuple[int, bytes]:
            conn.putcmd("data")
            return conn.getreply()

        code, reply = self._exchange("at DATA", data_command)
        if code != 354:
            if code == 421:
                self._discard()
            else:
                self._reset(conn)
            raise classify_reply(code, reply)

    def _content(self, conn: smtplib.SMTP, payload: bytes) -> None:
        """The message after a 354, and the final reply; returns only on a 2xx."""

        def content() -> tuple[int, bytes]:
            conn.send(_dot_stuffed(payload))
            return conn.getreply()

        try:
            code, reply = self._exchange("after sending the message", content)
        except _Lost as lost:
            # The final "." may have arrived and the server may have queued the message
            # (RFC 1047). Resending here could deliver it twice; the caller's retry
            # policy decides, knowing the risk.
            log.warning("%s; the server may have accepted the message", lost.error.reason)
            error = TransientSendError(
                None, f"{lost.error.reason}; the server may have accepted it (not resent)"
            )
            raise _Lost(error, timed_out=lost.timed_out) from lost.__cause__
        if 200 <= code <= 299:
            return
        if code == 421:
            self._discard()
        # After the final reply the transaction is over either way (RFC 5321 4.1.1.4),
        # so no RSET is needed.
        raise classify_reply(code, reply)

    # -- the envelope, pipelined (RFC 2920)

    def _envelope_pipelined(
        self, conn: smtplib.SMTP, envelope: _Envelope, options: list[str]
    ) -> tuple[list[str], dict[str, tuple[int, str]]]:
        """Send MAIL, every RCPT and DATA in one write and read their replies in
        order: with the message after the 354, two round trips where the one-by-one
        dialogue takes three plus one per recipient. Returns once DATA was answered
        354, with the accepted and the refused recipients.

        Replies mean what they mean one by one. Raises :class:`_Lost` (``at_mail``
        when the MAIL reply never came or was 421) or the error of the first refusal,
        after resynchronising: every reply of the group read, then RSET (a connection
        that cannot is dropped). A refusal stays the error even when the connection
        is lost while the rest of the group's replies are read.
        """
        sender = smtplib.quoteaddr(envelope.sender) + "".join(" " + o for o in options)
        commands = [f"MAIL FROM:{sender}"]
        commands += [f"RCPT TO:{smtplib.quoteaddr(r)}" for r in envelope.recipients]
        commands.append("DATA")
        encoding = "utf-8" if envelope.international else "ascii"
        group = "".join(c + "\r\n" for c in commands).encode(encoding)

        def mail() -> tuple[int, bytes]:
            conn.send(group)
            return conn.getreply()

        code, reply = self._exchange("at MAIL FROM", mail, at_mail=True)
        if code == 421:  # the server hangs up now: the transaction never started
            self._discard()
            raise _Lost(TransientSendError(code, _decode(reply)), timed_out=False, at_mail=True)
        error: SendError | None = None if code == 250 else _session_reply_error(code, reply)

        def reply_to(stage: str) -> tuple[int, bytes]:
            try:
                return self._exchange(stage, conn.getreply)
            except _Lost as lost:
                if error is not None:
                    raise error from lost.__cause__
                raise

        accepted: list[str] = []
        refused: dict[str, tuple[int, str]] = {}
        for recipient in envelope.recipients:
            code, reply = reply_to("at RCPT TO")
            if code == 421:
                self._discard()
                raise error or TransientSendError(code, _decode(reply))
            if code in (250, 251):
                accepted.append(recipient)
            elif error is None:
                refused[recipient] = (code, _short(_decode(reply)))
        if error is None and not accepted:
            error = _refusal(refused, delivered_to=())
        code, reply = reply_to("at DATA")
        if code == 354 and error is None:
            return accepted, refused
        if code == 354:
            # The server took DATA though the envelope failed (RFC 2920 says it must
            # not): leave without the final dot, so it cannot deliver an empty message.
            self._discard()
        elif code == 421:
            self._discard()
        else:
            self._reset(conn)
        raise error or classify_reply(code, reply)


def _payload_for(
    conn: smtplib.SMTP, msg: EmailMessage, envelope: _Envelope
) -> tuple[bytes, list[str]]:
    """The message bytes to send after DATA and the MAIL FROM parameters they need."""
    options: list[str] = []
    if envelope.international:
        if not conn.has_extn("smtputf8"):
            raise PermanentSendError(
                None, "the server does not support SMTPUTF8, needed for this address"
            )
        options.append("SMTPUTF8")
    payload = wire_bytes(msg, utf8=envelope.international)
    if not payload.isascii():
        if conn.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        else:  # RFC 6152: without 8BITMIME only 7-bit data may be sent
            payload = wire_bytes(msg, utf8=envelope.international, seven_bit=True)
    if conn.has_extn("size"):
        options.append(f"SIZE={len(payload)}")
    return payload, options


def _dot_stuffed(payload: bytes) -> bytes:
    """DATA content: lines starting with "." doubled, ended by CRLF "." CRLF."""
    # What re.sub(rb"(?m)^\.", b"..", payload) does, without trying the pattern at
    # every byte (that regex cost more than the rest of a send).
    stuffed = payload.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


def _refusal(refused: Mapping[str, tuple[int, str]], *, delivered_to: Sequence[str]) -> SendError:
    """One error for refused recipients: permanent only if every refusal was."""
    replies = list(refused.values())
    transient = [reply for reply in replies if not _is_permanent(reply[0])]
    code, reason = transient[0] if transient else replies[0]
    return classify_reply(code, reason, refused=refused, delivered_to=delivered_to)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- DKIM


class DkimSigner:
    """Signs messages with DKIM (RSA-SHA256, relaxed/relaxed).

    The signature covers the headers in :attr:`SIGNED_HEADERS`; each is listed twice
    ("oversigned") so a copy of it added in transit breaks the signature. RFC 8058
    requires List-Unsubscribe and List-Unsubscribe-Post to be signed, or mailbox
    providers ignore one-click unsubscribe.

    The public key goes in DNS as TXT at ``SELECTOR._domainkey.DOMAIN``:
    ``v=DKIM1; k=rsa; p=<base64 of the DER SubjectPublicKeyInfo>``.
    """

    SIGNED_HEADERS: Final = (
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Reply-To",
        "Cc",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    )

    def __init__(self, selector: str, domain: str, private_key_pem: bytes | str) -> None:
        for what, value in (("selector", selector), ("domain", domain)):
            if not value or not value.isascii() or any(c.isspace() for c in value):
                raise ConfigError(f"DKIM {what} must be a non-empty ASCII name: {value!r}")
        key = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
        key = key.replace(b"\r\n", b"\n")
        try:
            dkim.crypto.parse_pem_private_key(key)
        except dkim.crypto.UnparsableKeyError as exc:
            raise ConfigError(f"DKIM private key is not an RSA key in PEM form: {exc}") from exc
        self.selector = selector
        self.domain = domain
        self._key = key
        names = [h.lower().encode("ascii") for h in self.SIGNED_HEADERS]
        self._include = names + names

    def sign(self, msg: EmailMessage) -> EmailMessage:
        """A signed copy of ``msg`` (which is left alone, so a retry signs afresh).

        The copy serialises (:func:`wire_bytes`) to exactly the bytes that were signed,
        with the DKIM-Signature field first as RFC 6376 section 5.6 asks.
        """
        raw = _flatten(msg, _WIRE_POLICY)
        header = dkim.sign(
            raw,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self._key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=self._include,
        )
        signed = email.message_from_bytes(bytes(header) + raw, policy=_WIRE_POLICY)
        assert isinstance(signed, EmailMessage)
        return signed


class DkimTransport(_Lifecycle):
    """Signs every message with ``signer`` and hands it to ``inner``."""

    def __init__(self, inner: Transport, signer: DkimSigner) -> None:
        self.inner = inner
        self.signer = signer

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def send(self, msg: EmailMessage) -> None:
        self.inner.send(self.signer.sign(msg))


# --------------------------------------------------------------------- rate limit


class RateLimiter:
    """Spaces events at least ``1 / per_second`` seconds apart (no bursts).

    Relays and mailbox providers throttle senders that arrive in bursts; an even pace
    is the simplest thing they all accept. Time spent by the caller counts towards
    the gap, so a slow sender never waits. ``clock`` and ``sleep`` are injectable
    for tests.
    """

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (per_second > 0 and math.isfinite(per_second)):
            raise ValueError(f"rate must be a positive number of messages per second: {per_second}")
        self.per_second = per_second
        self._interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None

    def wait(self) -> float:
        """Block until the next event may happen; the seconds slept."""
        now = self._clock()
        delay = 0.0 if self._next is None else self._next - now
        if delay > 0:
            self._sleep(delay)
            now += delay
        self._next = now + self._interval
        return max(delay, 0.0)


class RateLimitedTransport(_Lifecycle):
    """Hands messages to ``inner`` no faster than ``limiter`` allows.

    A failed send uses its slot too: the server saw the attempt.
    """

    def __init__(self, inner: Transport, limiter: RateLimiter) -> None:
        self.inner = inner
        self.limiter = limiter

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def send(self, msg: EmailMessage) -> None:
        self.limiter.wait()
        self.inner.send(msg)


# ----------------------------------------------------------------- configuration

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_SCHEMES: Final = ("smtp", "smtps", "maildir", "console", "memory")


def transport_for(settings: Settings) -> Transport:
    """The transport the settings configure: ``NEWSLETTER_MAIL_URL``'s, wrapped in a
    :class:`DkimTransport` when ``NEWSLETTER_DKIM_*`` are set. An unreadable or
    malformed key raises :class:`ConfigError` here, before anything is sent."""
    transport = transport_from_url(settings.mail_url)
    key_file = settings.dkim_key_file
    if not (settings.dkim_selector and settings.dkim_domain and key_file):
        return transport
    try:
        key = Path(key_file).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the DKIM key file {key_file}: {exc.strerror or exc}"
        ) from exc
    signer = DkimSigner(settings.dkim_selector, settings.dkim_domain, key)
    return DkimTransport(transport, signer)


def transport_from_url(url: str) -> Transport:
    """The transport a mail URL (``NEWSLETTER_MAIL_URL``) describes.

    See the module docstring for the forms. User and password are percent-decoded
    (write ``@`` as ``%40``). A malformed URL, an unknown scheme or option raises
    :class:`ConfigError`; its message never contains the password.
    """
    shown = _redacted(url)
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- parses the port now, so a bad one is reported here
    except ValueError as exc:
        raise ConfigError(f"mail URL {shown}: {exc}") from exc
    scheme = parts.scheme.lower()
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigError(f"mail URL {shown}: malformed options: {exc}") from exc
    options: dict[str, str] = {}
    for key, value in pairs:
        if key in options:
            raise ConfigError(f"mail URL {shown}: option {key!r} given twice")
        options[key] = value
    rate = _float_option(options, "rate", shown)

    transport: Transport
    if scheme in ("smtp", "smtps"):
        transport = _smtp_from_url(parts, scheme, options, shown)
    elif scheme == "maildir":
        if "@" in parts.netloc:
            raise ConfigError(f"mail URL {shown}: a maildir URL takes a path only")
        path = unquote(parts.netloc + parts.path)
        transport = MaildirTransport(path or DEFAULT_MAILDIR)
    elif scheme in ("console", "memory"):
        if parts.netloc or parts.path.strip("/"):
            raise ConfigError(f"mail URL {shown}: {scheme}:// takes no host or path")
        transport = ConsoleTransport() if scheme == "console" else MemoryTransport()
    elif not scheme:
        raise ConfigError(
            f"mail URL {shown!r} has no scheme; use one of {', '.join(_SCHEMES)}, "
            "e.g. smtp://localhost:1025 or maildir://var/maildir"
        )
    else:
        raise ConfigError(
            f"mail URL {shown}: unknown scheme {scheme!r}; use one of {', '.join(_SCHEMES)}"
        )
    if options:
        raise ConfigError(
            f"mail URL {shown}: unknown option(s) {', '.join(sorted(options))} for {scheme}://"
        )
    if rate is not None:
        transport = RateLimitedTransport(transport, RateLimiter(rate))
    return transport


def _smtp_from_url(
    parts: SplitResult, scheme: str, options: dict[str, str], shown: str
) -> SMTPTransport:
    if not parts.hostname:
        raise ConfigError(f"mail URL {shown}: no host")
    port = parts.port
    starttls = False
    if "starttls" in options:
        if scheme == "smtps":
            raise ConfigError(f"mail URL {shown}: smtps:// is already TLS; drop starttls")
        flag = options.pop("starttls").lower()
        if flag not in _TRUE | _FALSE:
            raise ConfigError(f"mail URL {shown}: starttls must be 1 or 0, not {flag!r}")
        starttls = flag in _TRUE
    timeout = _float_option(options, "timeout", shown)
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    try:
        return SMTPTransport(
            parts.hostname,
            port,
            starttls=starttls,
            use_ssl=scheme == "smtps",
            username=username,
            password=password,
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
        )
    except ConfigError as exc:
        raise ConfigError(f"mail URL {shown}: {exc}") from exc


def _float_option(options: dict[str, str], name: str, shown: str) -> float | None:
    if name not in options:
        return None
    text = options.pop(name)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"mail URL {shown}: {name} must be a positive number, not {text!r}")
    return value


def _redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        has_password = parts.password is not None
    except ValueError:
        return text.split(":", 1)[0] + "://…"  # unparseable: show no more than the scheme
    if not has_password:
        return text
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()
