"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, with fault injection.

``smtp_server()`` runs an aiosmtpd ``Controller`` in a thread of the test process on a
free loopback port and yields an :class:`SMTPServer` whose handler records every
connection and message. A test scripts faults on ``server.handler.faults``:

* ``script("MAIL", "451 4.3.0 try later", DROP, ...)`` -- the next MAIL FROM commands
  get these answers in turn (a reply line, :data:`DROP` to hang up without a reply, or
  a :class:`Delay` to answer late); RCPT and DATA likewise (DATA's answer is the
  final reply, after the content has been received);
* ``faults.by_recipient["x@example.org"] = "550 5.1.1 no such user"``;
* ``faults.drop_after = N`` -- hang up right after acknowledging the Nth message of a
  connection, as a server with an idle timeout or a per-connection limit does.

``RecordingHandler(pipelining=True)`` offers PIPELINING, so a client may send its
envelope commands in one go.

Also here: a silent server (accepts TCP and never speaks), a free port nobody listens
on, a self-signed certificate and an RSA key pair for DKIM.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOST = "127.0.0.1"


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


#: Scripted action: close the connection instead of answering.
DROP = _Drop()


@dataclass(frozen=True)
class Delay:
    """Scripted action: wait ``seconds``, then answer ``reply``."""

    seconds: float
    reply: str = "250 OK"


Action = str | _Drop | Delay


@dataclass(frozen=True)
class Received:
    """One message as the server got it."""

    peer: tuple[str, int]
    mail_from: str
    mail_options: list[str]
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    authenticated: bool


@dataclass
class Faults:
    scripts: dict[str, deque[Action]] = field(default_factory=dict)
    by_recipient: dict[str, str] = field(default_factory=dict)
    drop_after: int | None = None
    require_auth: bool = False

    def script(self, command: str, *actions: Action) -> None:
        """Queue answers for the next ``command`` ("MAIL", "RCPT", "DATA")."""
        self.scripts.setdefault(command, deque()).extend(actions)

    def next(self, command: str) -> Action | None:
        queue = self.scripts.get(command)
        return queue.popleft() if queue else None


class RecordingHandler:
    """aiosmtpd handler that records what it sees and follows ``faults``.

    ``accepted`` holds messages acknowledged with 2xx; ``unacknowledged`` those whose
    content arrived but whose final reply was a hang-up (the client cannot know).
    """

    def __init__(self, *, pipelining: bool = False) -> None:
        self.faults = Faults()
        #: Offer PIPELINING (RFC 2920). aiosmtpd reads commands in order from its
        #: stream, so it serves a pipelined client correctly; it just never says so.
        self.pipelining = pipelining
        self.accepted: list[Received] = []
        self.unacknowledged: list[Received] = []
        self.commands: list[tuple[tuple[str, int], str]] = []
        self._peers: list[tuple[str, int]] = []
        self._per_peer: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    @property
    def connections(self) -> list[tuple[str, int]]:
        """Client connections that said EHLO, in order (a TLS upgrade is the same one)."""
        with self._lock:
            return list(self._peers)

    def saw(self, command: str) -> int:
        """How many times a command (EHLO, RSET, QUIT, ...) arrived."""
        with self._lock:
            return sum(1 for _peer, name in self.commands if name == command)

    def _note(self, session: Any, command: str) -> None:
        with self._lock:
            self.commands.append((session.peer, command))

    async def handle_EHLO(
        self, server: SMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self._note(session, "EHLO")
        with self._lock:
            if session.peer not in self._peers:
                self._peers.append(session.peer)
        session.host_name = hostname
        if self.pipelining:
            responses = [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_RSET(self, server: SMTP, session: Any, envelope: Any) -> str:
        self._note(session, "RSET")
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Any, envelope: Any) -> str:
        self._note(session, "QUIT")
        return "221 Bye"

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self._note(session, "MAIL")
        if self.faults.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        reply = await _perform(server, self.faults.next("MAIL"))
        if reply.startswith("250"):
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return reply

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self._note(session, "RCPT")
        scripted = self.faults.next("RCPT")
        if scripted is None:
            scripted = self.faults.by_recipient.get(address)
        reply = await _perform(server, scripted)
        if reply.startswith("25"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self._note(session, "DATA")
        message = Received(
            peer=session.peer,
            mail_from=envelope.mail_from,
            mail_options=list(envelope.mail_options),
            rcpt_tos=list(envelope.rcpt_tos),
            content=envelope.original_content,
            tls=session.ssl is not None,
            authenticated=bool(session.authenticated),
        )
        action = self.faults.next("DATA")
        if action is DROP:
            with self._lock:
                self.unacknowledged.append(message)
        reply = await _perform(server, action)
        if not reply.startswith("2"):
            return reply
        with self._lock:
            self.accepted.append(message)
            count = self._per_peer[session.peer] = self._per_peer.get(session.peer, 0) + 1
        if self.faults.drop_after is not None and count >= self.faults.drop_after:
            # Hang up once the 250 below is written: push() writes before it yields.
            assert server.transport is not None
            server.loop.call_soon(server.transport.close)
        return reply


async def _perform(server: SMTP, action: Action | None) -> str:
    """The reply for a scripted action (hanging up or waiting first if asked)."""
    if action is None:
        return "250 OK"
    if isinstance(action, Delay):
        await asyncio.sleep(action.seconds)
        return action.reply
    if isinstance(action, _Drop):
        assert server.transport is not None
        server.transport.close()
        # connection_lost() cancels this task; the reply is never written.
        await asyncio.sleep(3600)
        raise AssertionError("unreachable: the connection was closed")
    if action.startswith("421"):
        # A server saying 421 closes the channel right after (RFC 5321 3.8).
        assert server.transport is not None
        server.loop.call_soon(server.transport.close)
    return action


def accept_user(name: str, password: str) -> Any:
    """An aiosmtpd authenticator accepting exactly one login and password."""

    def authenticator(
        server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (
            name.encode(),
            password.encode(),
        )
        # handled=False: aiosmtpd answers 535 itself (True would mean "already did").
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticator


class _LoopbackController(Controller):
    def factory(self) -> SMTP:
        # Handing aiosmtpd its loop spares it the asyncio.get_event_loop() probe it
        # makes otherwise (under catch_warnings, per connection, in the server thread),
        # which warns on newer Pythons and races with pytest's warning filters.
        return SMTP(self.handler, loop=self.loop, **self.SMTP_kwargs)


@dataclass
class SMTPServer:
    host: str
    port: int
    handler: RecordingHandler


def free_port() -> int:
    """A loopback port that was free a moment ago (nobody listens on it)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def smtp_server(
    handler: RecordingHandler | None = None,
    *,
    tls_context: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    **smtp_options: Any,
) -> Iterator[SMTPServer]:
    """Run an aiosmtpd server on 127.0.0.1 for the duration of the block.

    ``tls_context`` offers STARTTLS; ``implicit_tls`` speaks TLS from the first byte;
    ``smtp_options`` go to aiosmtpd's ``SMTP`` (``authenticator``, ``auth_require_tls``,
    ``require_starttls``, ``decode_data``, ``enable_SMTPUTF8``, ...).
    """
    handler = handler or RecordingHandler()
    controller = _LoopbackController(
        handler,
        hostname=HOST,
        port=free_port(),
        server_hostname="localhost",
        ssl_context=implicit_tls,
        tls_context=tls_context,
        ready_timeout=10.0,
        **smtp_options,
    )
    controller.start()
    try:
        yield SMTPServer(HOST, controller.port, handler)
    finally:
        controller.stop()


@contextmanager
def silent_server() -> Iterator[tuple[str, int]]:
    """A port where TCP connects but nothing is ever said (the kernel's backlog
    completes the handshake; no one calls accept)."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(8)
        yield HOST, listener.getsockname()[1]


# ----------------------------------------------------------------- keys and certs
#
# With the cryptography package when it is installed, else with the openssl command.


def rsa_key_pair() -> tuple[bytes, bytes]:
    """A fresh 2048-bit RSA key: (private key PEM, public key DER SubjectPublicKeyInfo)."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        return _openssl_rsa_key_pair()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, valid for a day: (cert, key) paths."""
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
    except ImportError:
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key_path), "-out", str(cert_path),
        )  # fmt: skip
        return cert_path, key_path
    import datetime
    import ipaddress

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _openssl_rsa_key_pair() -> tuple[bytes, bytes]:
    private = _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
    public = _openssl("pkey", "-pubout", "-outform", "DER", stdin=private)
    return private, public


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    if shutil.which("openssl") is None:
        pytest.skip("needs the cryptography package or the openssl command")
    done = subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, check=True, timeout=60
    )
    return done.stdout
