"""Mail transports, against a real SMTP server (aiosmtpd on 127.0.0.1).

Reconnect rules under test (``SMTPTransport``):

* reconnects, once, when a *kept* connection is found closed at MAIL FROM (dropped
  while idle, or a 421 there): nothing of that message had reached the server;
* raises ``TransientSendError`` without resending when the connection breaks later in
  the transaction, and says "may have accepted" when it broke after the data went out;
* raises on a fresh connection that fails at once (reconnecting would fail again).
"""

from __future__ import annotations

import datetime
import email
import email.policy
import io
import mailbox
import smtplib
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import dkim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.digest.send import (
    DEFAULT_MAILDIR,
    DEFAULT_TIMEOUT,
    ConsoleTransport,
    DkimSigner,
    DkimTransport,
    MaildirTransport,
    MemoryTransport,
    PermanentSendError,
    RateLimitedTransport,
    RateLimiter,
    SendError,
    SessionRefusedError,
    SMTPTransport,
    TransientSendError,
    classify_reply,
    transport_from_url,
    wire_bytes,
)
from newsletter.errors import ConfigError
from tests.smtp_server import (
    DROP,
    HOST,
    Delay,
    RecordingHandler,
    SMTPServer,
    accept_user,
    free_port,
    rsa_key_pair,
    self_signed_certificate,
    silent_server,
    smtp_server,
)

UNSUBSCRIBE = "https://digest.example.org/u/" + "Zm9vYmFy" * 12  # a long, realistic token
SUBJECT = "Your digest №{n}: équivariance, 拡散モデル ✓"
BODY = "Grüße! Three papers matched “graph neural network”.\n.a line starting with a dot\n"


def make_message(n: int = 1, *, to: str | list[str] = "reader@example.com") -> EmailMessage:
    """A digest-shaped message: the headers DESIGN.md asks for, text + HTML, UTF-8."""
    msg = EmailMessage()
    msg["From"] = "Paper Digest <digest@example.org>"
    msg["To"] = to if isinstance(to, str) else ", ".join(to)
    msg["Subject"] = SUBJECT.format(n=n)
    msg["Date"] = format_datetime(datetime.datetime(2025, 7, 30, 6, 0, n % 60, tzinfo=datetime.UTC))
    msg["Message-ID"] = f"<digest-{n}@digest.example.org>"
    msg["List-Id"] = "Paper digest <digest.example.org>"
    msg["List-Unsubscribe"] = f"<{UNSUBSCRIBE}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(BODY + f"message {n}\n")
    msg.add_alternative(f"<p>{BODY}</p><p>message {n}</p>", subtype="html")
    return msg


def parse(content: bytes) -> EmailMessage:
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content()).replace("\r\n", "\n")  # as received: CRLF


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelining"])
def server(request: pytest.FixtureRequest) -> Iterator[SMTPServer]:
    """The test server, with and without PIPELINING: every test below that takes it
    holds for both ways our client talks."""
    with smtp_server(RecordingHandler(pipelining=request.param)) as running:
        yield running


def smtp(server: SMTPServer, **options: Any) -> SMTPTransport:
    options.setdefault("timeout", 5.0)
    return SMTPTransport(server.host, server.port, local_hostname="client.test", **options)


# ------------------------------------------------------------------- delivery


def test_a_batch_travels_over_one_connection_intact(server: SMTPServer) -> None:
    messages = [make_message(n) for n in (1, 2, 3)]
    with smtp(server) as transport:
        for msg in messages:
            transport.send(msg)

    handler = server.handler
    assert len(handler.connections) == 1
    assert handler.saw("EHLO") == 1
    assert handler.saw("QUIT") == 1
    assert len(handler.accepted) == 3
    for n, got in enumerate(handler.accepted, start=1):
        assert got.mail_from == "digest@example.org"
        assert got.rcpt_tos == ["reader@example.com"]
        assert "BODY=8BITMIME" in got.mail_options
        received = parse(got.content)
        assert received["Subject"] == SUBJECT.format(n=n)
        assert received["Message-ID"] == f"<digest-{n}@digest.example.org>"
        assert received["List-Id"] == "Paper digest <digest.example.org>"
        assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert text_of(received) == BODY + f"message {n}\n"  # dot-stuffing undone
        # The long unsubscribe URL arrives as itself, not as an RFC 2047 encoded-word.
        assert f"List-Unsubscribe: <{UNSUBSCRIBE}>\r\n".encode() in got.content


def test_send_outside_with_connects_and_close_quits(server: SMTPServer) -> None:
    transport = smtp(server)
    transport.send(make_message(1))
    transport.send(make_message(2))
    assert server.handler.saw("QUIT") == 0
    transport.close()
    transport.close()  # idempotent
    assert len(server.handler.connections) == 1
    assert server.handler.saw("QUIT") == 1


def test_bcc_is_an_envelope_recipient_but_not_a_header(server: SMTPServer) -> None:
    msg = make_message()
    msg["Bcc"] = "hidden@example.net"
    with smtp(server) as transport:
        transport.send(msg)
    (got,) = server.handler.accepted
    assert got.rcpt_tos == ["reader@example.com", "hidden@example.net"]
    assert b"hidden@example.net" not in got.content
    assert msg["Bcc"] == "hidden@example.net"  # the caller's message is untouched


def test_without_8bitmime_the_body_is_sent_as_7bit() -> None:
    # decode_data=True makes aiosmtpd stop offering 8BITMIME (RFC 6152).
    with smtp_server(decode_data=True) as server, smtp(server) as transport:
        transport.send(make_message())
    (got,) = server.handler.accepted
    assert got.content.isascii()
    assert "BODY=8BITMIME" not in got.mail_options
    assert text_of(parse(got.content)) == BODY + "message 1\n"


def test_international_address_uses_smtputf8(server: SMTPServer) -> None:
    with smtp(server) as transport:
        transport.send(make_message(to="jürgen@例え.jp"))
    (got,) = server.handler.accepted
    assert got.rcpt_tos == ["jürgen@例え.jp"]
    assert "SMTPUTF8" in got.mail_options
    assert parse(got.content)["To"] == "jürgen@例え.jp"


def test_international_address_without_smtputf8_is_permanent() -> None:
    with smtp_server(enable_SMTPUTF8=False) as server, smtp(server) as transport:
        with pytest.raises(PermanentSendError, match="SMTPUTF8"):
            transport.send(make_message(to="jürgen@例え.jp"))
        transport.send(make_message())  # the connection is still good
    assert len(server.handler.accepted) == 1


def test_a_message_without_recipients_is_a_bug(server: SMTPServer) -> None:
    msg = make_message()
    del msg["To"]
    with smtp(server) as transport, pytest.raises(ValueError, match="no recipients"):
        transport.send(msg)
    assert server.handler.connections == []  # refused before touching the network


# ------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (421, TransientSendError),
        (450, TransientSendError),
        (451, TransientSendError),
        (452, TransientSendError),
        (552, TransientSendError),  # RFC 5321 4.5.3.1.10: treat as temporary
        (550, PermanentSendError),
        (551, PermanentSendError),
        (553, PermanentSendError),
        (554, PermanentSendError),
        (250, TransientSendError),  # nonsense where an error was expected: not the address
        (-1, TransientSendError),
    ],
)
def test_classify_reply(code: int, expected: type[SendError]) -> None:
    error = classify_reply(code, b"5.1.1 text\r\n  more")
    assert type(error) is expected
    assert (error.code, error.reason) == (code, "5.1.1 text more")


REPLIES = {
    421: "421 4.3.2 System not accepting network messages",
    451: "451 4.3.0 Temporary lookup failure",
    550: "550 5.1.1 No such user",
    552: "552 5.2.2 Mailbox full",
    553: "553 5.1.3 Bad recipient address syntax",
    554: "554 5.7.1 Message rejected as spam",
}


@pytest.mark.parametrize(
    ("command", "code", "expected"),
    [
        ("RCPT", 421, TransientSendError),
        ("RCPT", 451, TransientSendError),
        ("RCPT", 550, PermanentSendError),
        ("RCPT", 552, TransientSendError),
        ("RCPT", 553, PermanentSendError),
        ("DATA", 421, TransientSendError),
        ("DATA", 451, TransientSendError),
        ("DATA", 550, PermanentSendError),
        ("DATA", 552, TransientSendError),
        ("DATA", 554, PermanentSendError),
        ("MAIL", 451, TransientSendError),
        # A refused *sender* is our configuration, not the reader's address.
        ("MAIL", 553, SessionRefusedError),
    ],
)
def test_server_replies_are_classified(
    server: SMTPServer, command: str, code: int, expected: type[SendError]
) -> None:
    reply = REPLIES[code]
    with smtp(server) as transport:
        transport.send(make_message(1))
        server.handler.faults.script(command, reply)
        with pytest.raises(SendError) as caught:
            transport.send(make_message(2))
        transport.send(make_message(3))  # the transport is still usable afterwards

    error = caught.value
    assert type(error) is expected
    assert error.code == code
    assert error.reason == reply[4:]
    assert [parse(m.content)["Message-ID"] for m in server.handler.accepted] == [
        "<digest-1@digest.example.org>",
        "<digest-3@digest.example.org>",
    ]
    # 421 means the server hangs up: the next message needed a new connection. Any
    # other refusal leaves the connection usable after an RSET.
    assert len(server.handler.connections) == (2 if code == 421 else 1)
    if code != 421 and command != "DATA":
        assert server.handler.saw("RSET") == 1


def test_one_refused_recipient_of_several(server: SMTPServer) -> None:
    server.handler.faults.by_recipient["gone@example.com"] = REPLIES[550]
    with smtp(server) as transport, pytest.raises(PermanentSendError) as caught:
        transport.send(make_message(to=["gone@example.com", "reader@example.com"]))

    error = caught.value
    assert error.code == 550
    assert error.refused == {"gone@example.com": (550, "5.1.1 No such user")}
    assert error.delivered_to == ("reader@example.com",)  # do not send it again to them
    (got,) = server.handler.accepted
    assert got.rcpt_tos == ["reader@example.com"]


def test_all_recipients_refused_is_permanent_only_if_every_refusal_is(
    server: SMTPServer,
) -> None:
    faults = server.handler.faults
    faults.by_recipient.update({"a@example.com": REPLIES[550], "b@example.com": REPLIES[451]})
    with smtp(server) as transport:
        with pytest.raises(SendError) as mixed:
            transport.send(make_message(to=["a@example.com", "b@example.com"]))
        faults.by_recipient["b@example.com"] = REPLIES[553]
        with pytest.raises(SendError) as permanent:
            transport.send(make_message(to=["a@example.com", "b@example.com"]))

    assert type(mixed.value) is TransientSendError
    assert mixed.value.code == 451
    assert set(mixed.value.refused) == {"a@example.com", "b@example.com"}
    assert mixed.value.delivered_to == ()
    assert type(permanent.value) is PermanentSendError
    assert server.handler.accepted == []
    assert len(server.handler.connections) == 1


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelining"])
def test_pipelining_sends_the_envelope_in_one_write(
    monkeypatch: pytest.MonkeyPatch, pipelining: bool
) -> None:
    writes: list[bytes] = []
    send = smtplib.SMTP.send

    def counting_send(self: smtplib.SMTP, data: bytes | str) -> None:
        writes.append(data if isinstance(data, bytes) else data.encode())
        send(self, data)

    monkeypatch.setattr(smtplib.SMTP, "send", counting_send)
    handler = RecordingHandler(pipelining=pipelining)
    with smtp_server(handler) as server, smtp(server) as transport:
        transport.send(make_message(1))
        before = len(writes)
        transport.send(make_message(2, to=["a@example.com", "b@example.com"]))
        group = writes[before]
    # MAIL, two RCPT, DATA and the message: in two writes, or one write each.
    assert len(writes) - before - 1 == (2 if pipelining else 5)  # the last one is QUIT
    if pipelining:
        assert group.startswith(b"MAIL FROM:<digest@example.org>")
        assert group.endswith(b"RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
    assert [m.rcpt_tos for m in handler.accepted] == [
        ["reader@example.com"],
        ["a@example.com", "b@example.com"],
    ]


# ------------------------------------------------------- dropped connections


def test_connection_dropped_while_idle_is_reopened_transparently(server: SMTPServer) -> None:
    server.handler.faults.drop_after = 2  # the server hangs up after two messages
    with smtp(server) as transport:
        transport.send(make_message(1))
        transport.send(make_message(2))
        time.sleep(0.2)  # idle: the server's hang-up arrives meanwhile
        transport.send(make_message(3))

    assert len(server.handler.accepted) == 3
    assert len(server.handler.connections) == 2


def test_421_at_mail_from_on_a_kept_connection_is_reopened(server: SMTPServer) -> None:
    with smtp(server) as transport:
        transport.send(make_message(1))
        server.handler.faults.script("MAIL", REPLIES[421])
        transport.send(make_message(2))

    assert len(server.handler.accepted) == 2
    assert len(server.handler.connections) == 2


def test_reconnects_only_once(server: SMTPServer) -> None:
    with smtp(server) as transport:
        transport.send(make_message(1))
        server.handler.faults.script("MAIL", DROP, DROP)
        with pytest.raises(TransientSendError, match="connection lost at MAIL FROM") as caught:
            transport.send(make_message(2))
    assert caught.value.code is None
    assert len(server.handler.connections) == 2
    assert len(server.handler.accepted) == 1


def test_a_fresh_connection_that_drops_is_not_retried(server: SMTPServer) -> None:
    server.handler.faults.script("MAIL", DROP)
    with smtp(server) as transport, pytest.raises(TransientSendError):
        transport.send(make_message())
    assert len(server.handler.connections) == 1
    assert server.handler.accepted == []


def test_drop_during_rcpt_raises_and_is_not_resent(server: SMTPServer) -> None:
    with smtp(server) as transport:
        transport.send(make_message(1))
        server.handler.faults.script("RCPT", DROP)
        with pytest.raises(TransientSendError, match="connection lost at RCPT TO"):
            transport.send(make_message(2))
        transport.send(make_message(3))
    assert [parse(m.content)["Message-ID"] for m in server.handler.accepted] == [
        "<digest-1@digest.example.org>",
        "<digest-3@digest.example.org>",
    ]
    assert len(server.handler.connections) == 2


def test_drop_after_the_data_is_in_doubt_and_never_resent(server: SMTPServer) -> None:
    with smtp(server) as transport:
        transport.send(make_message(1))
        server.handler.faults.script("DATA", DROP)
        with pytest.raises(TransientSendError, match="may have accepted it"):
            transport.send(make_message(2))

    handler = server.handler
    assert len(handler.unacknowledged) == 1  # the server has it; we could not know
    assert handler.saw("DATA") == 2  # and it was not sent a second time
    assert len(handler.connections) == 1


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.sampled_from(
            [
                None,
                ("MAIL", DROP),
                ("MAIL", REPLIES[421]),
                ("MAIL", REPLIES[451]),
                ("RCPT", DROP),
                ("RCPT", REPLIES[550]),
                ("RCPT", REPLIES[421]),
                ("DATA", DROP),
                ("DATA", REPLIES[554]),
                ("DATA", REPLIES[421]),
            ]
        ),
        min_size=1,
        max_size=8,
    )
)
@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelining"])
def test_reported_sent_is_exactly_what_the_server_acknowledged(
    pipelining: bool, faults: list[tuple[str, Any] | None]
) -> None:
    reported: list[str] = []
    handler = RecordingHandler(pipelining=pipelining)
    with smtp_server(handler) as server, smtp(server) as transport:
        for n, fault in enumerate(faults):
            if fault is not None:
                server.handler.faults.script(*fault)
            msg = make_message(n)
            try:
                transport.send(msg)
            except SendError:
                continue
            reported.append(msg["Message-ID"])
        acknowledged = [parse(m.content)["Message-ID"] for m in server.handler.accepted]
    assert reported == acknowledged


# ------------------------------------------------------------------ timeouts


def test_a_silent_server_times_out() -> None:
    with silent_server() as (host, port):
        transport = SMTPTransport(host, port, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TransientSendError, match=r"timed out after 0\.3s"):
            transport.send(make_message())
        assert time.monotonic() - started < 3
        transport.close()


def test_a_slow_final_reply_times_out_in_doubt(server: SMTPServer) -> None:
    with smtp(server, timeout=0.3) as transport:
        server.handler.faults.script("DATA", Delay(1.0))
        with pytest.raises(TransientSendError, match=r"timed out.*may have accepted"):
            transport.send(make_message())
    assert server.handler.saw("DATA") == 1


def test_connection_refused_is_transient() -> None:
    transport = SMTPTransport(HOST, free_port(), timeout=2)
    with pytest.raises(TransientSendError, match="refused") as caught:
        transport.send(make_message())
    assert caught.value.code is None


# ---------------------------------------------------------------- AUTH and TLS


def test_auth_with_username_and_password() -> None:
    with smtp_server(
        authenticator=accept_user("ann", "p ss:w@rd"), auth_require_tls=False
    ) as server:
        server.handler.faults.require_auth = True
        with smtp(server, username="ann", password="p ss:w@rd") as transport:
            transport.send(make_message(1))
            transport.send(make_message(2))
    assert [m.authenticated for m in server.handler.accepted] == [True, True]
    assert len(server.handler.connections) == 1


def test_wrong_password_refuses_the_session_not_the_reader() -> None:
    with smtp_server(authenticator=accept_user("ann", "secret"), auth_require_tls=False) as server:
        transport = smtp(server, username="ann", password="wrong")
        with pytest.raises(SessionRefusedError) as caught:
            transport.send(make_message())
    assert caught.value.code == 535
    assert isinstance(caught.value, TransientSendError)  # retried, never suppressed


def test_missing_credentials_refuse_the_session() -> None:
    with smtp_server(authenticator=accept_user("ann", "secret"), auth_require_tls=False) as server:
        server.handler.faults.require_auth = True
        with smtp(server) as transport, pytest.raises(SessionRefusedError) as caught:
            transport.send(make_message())
    assert caught.value.code == 530


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that verifies the server against our self-signed certificate."""
    return ssl.create_default_context(cafile=str(certificate[0]))


def test_starttls_then_auth(certificate: tuple[Path, Path]) -> None:
    with smtp_server(
        tls_context=server_tls(certificate),
        require_starttls=True,
        authenticator=accept_user("ann", "secret"),  # AUTH offered only after TLS
    ) as server:
        server.handler.faults.require_auth = True
        with smtp(
            server,
            starttls=True,
            username="ann",
            password="secret",
            ssl_context=trusting(certificate),
        ) as transport:
            transport.send(make_message(1))
            transport.send(make_message(2))
    assert [(m.tls, m.authenticated) for m in server.handler.accepted] == [(True, True)] * 2
    assert len(server.handler.connections) == 1


def test_starttls_verifies_the_certificate_by_default(certificate: tuple[Path, Path]) -> None:
    with smtp_server(tls_context=server_tls(certificate)) as server:
        transport = smtp(server, starttls=True)  # system CAs: our certificate is unknown
        with pytest.raises(SessionRefusedError, match=r"certificate .* not trusted"):
            transport.send(make_message())
    assert server.handler.accepted == []


def test_starttls_not_offered_never_downgrades(server: SMTPServer) -> None:
    transport = smtp(server, starttls=True)
    with pytest.raises(SessionRefusedError, match="STARTTLS"):
        transport.send(make_message())
    assert server.handler.accepted == []


def test_implicit_tls(certificate: tuple[Path, Path]) -> None:
    with (
        smtp_server(implicit_tls=server_tls(certificate)) as server,
        smtp(server, use_ssl=True, ssl_context=trusting(certificate)) as transport,
    ):
        transport.send(make_message())
    (got,) = server.handler.accepted
    assert got.tls or got.peer  # implicit TLS is below aiosmtpd's session.ssl
    assert parse(got.content)["Subject"] == SUBJECT.format(n=1)


def test_password_is_never_sent_in_clear_to_a_remote_host() -> None:
    with pytest.raises(ConfigError, match=r"unencrypted to mail\.example\.org"):
        SMTPTransport("mail.example.org", 25, username="ann", password="secret")
    SMTPTransport("localhost", 1025, username="ann", password="secret")  # loopback is fine
    SMTPTransport("mail.example.org", 587, username="a", password="b", starttls=True)


def test_credentials_must_be_ascii() -> None:
    with pytest.raises(ConfigError, match="ASCII"):
        SMTPTransport("localhost", username="ann", password="pässword")


def test_repr_hides_the_password() -> None:
    transport = SMTPTransport("mail.example.org", username="ann", password="s3cr3t", use_ssl=True)
    assert "s3cr3t" not in repr(transport)
    assert repr(transport) == "SMTPTransport(ann@mail.example.org:465, ssl)"


# ---------------------------------------------------------- other transports


def test_maildir_transport_writes_readable_messages(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "maildir"
    with MaildirTransport(path) as transport:
        transport.send(make_message(1))
        transport.send(make_message(2))

    assert {p.name for p in path.iterdir()} == {"cur", "new", "tmp"}
    assert len(list((path / "new").iterdir())) == 2
    box = mailbox.Maildir(path, factory=None, create=False)
    subjects = sorted(str(parse(box.get_bytes(key))["Subject"]) for key in box.iterkeys())
    assert subjects == [SUBJECT.format(n=1), SUBJECT.format(n=2)]
    assert all(b"\r\n" not in box.get_bytes(key) for key in box.iterkeys())


def test_maildir_completes_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "box").mkdir()  # exists, but without cur/new/tmp
    MaildirTransport(tmp_path / "box").send(make_message())
    assert len(list((tmp_path / "box" / "new").iterdir())) == 1


def test_maildir_write_failure_is_transient(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(TransientSendError, match="Maildir"):
        MaildirTransport(tmp_path / "file").send(make_message())


def test_maildir_names_are_unique_and_tmp_is_left_empty(tmp_path: Path) -> None:
    # Two transports in one process and second: names must still differ.
    with MaildirTransport(tmp_path) as first, MaildirTransport(tmp_path) as second:
        for n in range(50):
            (first if n % 2 else second).send(make_message(n))
    assert len(set((tmp_path / "new").iterdir())) == 50
    assert list((tmp_path / "tmp").iterdir()) == []


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    sender=st.sampled_from(
        [
            "digest@example.org",
            "Paper Digest <digest@example.org>",
            '"Digest, Papers" <digest@example.org>',
            "Grüße <gruss@example.org>",
            "digest@example.org (Paper Digest)",
        ]
    ),
    to=st.lists(
        st.sampled_from(
            ["a@example.org", "B <b@example.org>", "c@exämple.org", "d.e+f@example.co.uk"]
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_envelope_reads_addresses_like_the_stdlib(sender: str, to: list[str]) -> None:
    from email.utils import getaddresses

    from newsletter.digest.send import _addresses

    msg = EmailMessage(policy=email.policy.SMTPUTF8)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    expected = [a for _, a in getaddresses([str(v) for v in msg.get_all("From") or ()]) if a]
    expected += [a for _, a in getaddresses([str(v) for v in msg.get_all("To") or ()]) if a]
    assert _addresses(msg, "From", "To") == expected


def test_console_transport_writes_readable_text() -> None:
    stream = io.StringIO()
    with ConsoleTransport(stream) as transport:
        transport.send(make_message(1))
        transport.send(make_message(2))
    out = stream.getvalue()
    assert out.count(ConsoleTransport.RULE + "\n") == 2
    assert f"Subject: {SUBJECT.format(n=1)}\n" in out  # UTF-8 shown as such
    assert "Grüße!" in out


def test_console_transport_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleTransport().send(make_message())
    assert "To: reader@example.com" in capsys.readouterr().out


def test_memory_transport_records_and_fails_on_request() -> None:
    transport = MemoryTransport([None, TransientSendError(451, "later")])
    transport.fail_next(PermanentSendError(550, "gone"))
    msg = make_message(1)
    with transport:
        transport.send(msg)
        with pytest.raises(TransientSendError):
            transport.send(make_message(2))
        with pytest.raises(PermanentSendError):
            transport.send(make_message(3))
        transport.send(make_message(4))
    msg.replace_header("Subject", "changed afterwards")
    assert [m["Message-ID"] for m in transport.sent] == [
        "<digest-1@digest.example.org>",
        "<digest-4@digest.example.org>",
    ]
    assert transport.sent[0]["Subject"] == SUBJECT.format(n=1)  # a copy was kept
    assert (transport.opened, transport.closed) == (1, 1)
    with pytest.raises(ValueError, match="no From"):
        del msg["From"]
        transport.send(msg)


# ------------------------------------------------------------------ wire format


def test_wire_bytes_keeps_long_ascii_headers_and_encodes_non_ascii() -> None:
    msg = make_message()
    raw = wire_bytes(msg)
    assert f"List-Unsubscribe: <{UNSUBSCRIBE}>\r\n".encode() in raw
    subject = raw.split(b"Subject: ", 1)[1].split(b"\r\nDate:", 1)[0]
    assert subject.isascii()
    assert b"=?utf-8?" in subject
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw == wire_bytes(msg)  # the same bytes every time


def test_wire_bytes_folds_long_ascii_headers_at_whitespace() -> None:
    msg = make_message()
    words = " ".join(f"word{i}" for i in range(40))
    msg["X-Long"] = words
    raw = wire_bytes(msg)
    header = raw.split(b"X-Long: ")[1].split(b"\r\n", 8)
    assert all(len(line) <= 78 for line in header[:3])
    assert parse(raw)["X-Long"] == words


# ---------------------------------------------------------------------- DKIM


@pytest.fixture(scope="module")
def dkim_key() -> tuple[bytes, bytes]:
    return rsa_key_pair()


def dns_for(public_der: bytes) -> Any:
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s2025._domainkey.digest.example.org."
        return record

    return dnsfunc


def signer(dkim_key: tuple[bytes, bytes]) -> DkimSigner:
    return DkimSigner("s2025", "digest.example.org", dkim_key[0])


def test_dkim_signature_verifies_and_covers_the_list_headers(
    dkim_key: tuple[bytes, bytes],
) -> None:
    msg = make_message()
    signed = signer(dkim_key).sign(msg)
    raw = wire_bytes(signed)

    assert raw.startswith(b"DKIM-Signature: ")
    assert dkim.verify(raw, dnsfunc=dns_for(dkim_key[1]))
    fields = dkim.util.parse_tag_value(signed["DKIM-Signature"].encode())
    covered = {name.strip().lower() for name in fields[b"h"].split(b":")}
    for name in (
        b"from", b"to", b"subject", b"date", b"message-id",
        b"list-id", b"list-unsubscribe", b"list-unsubscribe-post",
    ):  # fmt: skip
        assert name in covered
    assert "DKIM-Signature" not in msg  # the original is untouched


def test_dkim_signature_breaks_when_headers_change(dkim_key: tuple[bytes, bytes]) -> None:
    raw = wire_bytes(signer(dkim_key).sign(make_message()))
    dnsfunc = dns_for(dkim_key[1])
    tampered = raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"X: y")
    assert not dkim.verify(tampered, dnsfunc=dnsfunc)
    # Oversigned: a second List-Unsubscribe added in transit breaks it too.
    added = raw.replace(b"\r\n\r\n", b"\r\nList-Unsubscribe: <https://evil.example>\r\n\r\n", 1)
    assert not dkim.verify(added, dnsfunc=dnsfunc)


def test_dkim_signed_mail_verifies_after_smtp_and_maildir(
    server: SMTPServer, dkim_key: tuple[bytes, bytes], tmp_path: Path
) -> None:
    with DkimTransport(smtp(server), signer(dkim_key)) as transport:
        transport.send(make_message(1))
        transport.send(make_message(2))
    assert len(server.handler.connections) == 1
    dnsfunc = dns_for(dkim_key[1])
    assert [dkim.verify(m.content, dnsfunc=dnsfunc) for m in server.handler.accepted] == [
        True,
        True,
    ]

    DkimTransport(MaildirTransport(tmp_path), signer(dkim_key)).send(make_message(3))
    box = mailbox.Maildir(tmp_path, factory=None, create=False)
    (key,) = box.keys()
    assert dkim.verify(box.get_bytes(key), dnsfunc=dnsfunc)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=st.text(min_size=1, max_size=200), body=st.text(max_size=2000))
def test_dkim_verifies_for_any_subject_and_body(
    dkim_key: tuple[bytes, bytes], subject: str, body: str
) -> None:
    msg = EmailMessage()
    msg["From"] = "digest@digest.example.org"
    msg["To"] = "reader@example.com"
    msg["Subject"] = " ".join(subject.split()) or "x"  # header values are one line
    msg["List-Unsubscribe"] = f"<{UNSUBSCRIBE}>"
    msg.set_content(body)
    assert dkim.verify(wire_bytes(signer(dkim_key).sign(msg)), dnsfunc=dns_for(dkim_key[1]))


def test_dkim_signer_rejects_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="RSA key"):
        DkimSigner("s1", "example.org", b"-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END")
    with pytest.raises(ConfigError, match="selector"):
        DkimSigner("", "example.org", b"")
    with pytest.raises(ConfigError, match="domain"):
        DkimSigner("s1", "exa mple.org", b"")


# ----------------------------------------------------------------- rate limit


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_limiter_spaces_messages_evenly() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        limiter.wait()
    assert clock.sleeps == [0.25] * 4

    clock.now += 0.1  # the caller took some of the gap itself
    assert limiter.wait() == pytest.approx(0.15)
    clock.now += 10  # idle for a while: no wait, and no burst saved up either
    assert limiter.wait() == 0
    assert limiter.wait() == 0.25


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_rate_limiter_needs_a_positive_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(rate)


def test_rate_limited_transport() -> None:
    clock = FakeClock()
    inner = MemoryTransport([None, TransientSendError(451, "later")])
    transport = RateLimitedTransport(inner, RateLimiter(2, clock=clock, sleep=clock.sleep))
    with transport:
        transport.send(make_message(1))
        with pytest.raises(TransientSendError):
            transport.send(make_message(2))
        transport.send(make_message(3))
    assert clock.sleeps == [0.5, 0.5]  # a failed attempt used its slot
    assert len(inner.sent) == 2
    assert (inner.opened, inner.closed) == (1, 1)


# ------------------------------------------------------------- configuration


def test_url_smtp_with_starttls_auth_and_timeout() -> None:
    transport = transport_from_url(
        "smtp://us%40er:p%3Ass%20w@mail.example.org:587?starttls=1&timeout=10"
    )
    assert isinstance(transport, SMTPTransport)
    assert (transport.host, transport.port, transport.starttls, transport.use_ssl) == (
        "mail.example.org",
        587,
        True,
        False,
    )
    assert (transport.username, transport._password) == ("us@er", "p:ss w")
    assert transport.timeout == 10


@pytest.mark.parametrize(
    ("url", "host", "port", "starttls", "use_ssl", "username"),
    [
        ("smtps://user:pass@mail.example.org:465", "mail.example.org", 465, False, True, "user"),
        ("smtps://user:pass@mail.example.org", "mail.example.org", 465, False, True, "user"),
        ("smtp://localhost:1025", "localhost", 1025, False, False, None),
        ("smtp://localhost", "localhost", 25, False, False, None),
        ("smtp://mail.example.org?starttls=1", "mail.example.org", 587, True, False, None),
        ("smtp://[::1]:2525?starttls=0", "::1", 2525, False, False, None),
        ("SMTP://Mail.Example.org:25", "mail.example.org", 25, False, False, None),
    ],
)
def test_url_smtp_forms(
    url: str, host: str, port: int, starttls: bool, use_ssl: bool, username: str | None
) -> None:
    transport = transport_from_url(url)
    assert isinstance(transport, SMTPTransport)
    assert (transport.host, transport.port) == (host, port)
    assert (transport.starttls, transport.use_ssl, transport.username) == (
        starttls,
        use_ssl,
        username,
    )
    assert transport.timeout == DEFAULT_TIMEOUT


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("maildir://var/maildir", Path("var/maildir")),
        ("maildir:///abs/path", Path("/abs/path")),
        ("maildir://", DEFAULT_MAILDIR),
        ("maildir://var/my%20mail", Path("var/my mail")),
    ],
)
def test_url_maildir(url: str, path: Path) -> None:
    transport = transport_from_url(url)
    assert isinstance(transport, MaildirTransport)
    assert transport.path == path


def test_url_console_memory_and_rate() -> None:
    assert isinstance(transport_from_url("console://"), ConsoleTransport)
    assert isinstance(transport_from_url("memory://"), MemoryTransport)
    limited = transport_from_url("maildir://var/maildir?rate=5")
    assert isinstance(limited, RateLimitedTransport)
    assert isinstance(limited.inner, MaildirTransport)
    assert limited.limiter.per_second == 5


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "no scheme"),
        ("localhost:25", "unknown scheme 'localhost'"),
        ("mailhog://localhost", "unknown scheme 'mailhog'"),
        ("smtp://", "no host"),
        ("smtp://host:port", "Port could not be cast"),
        ("smtp://host:99999", "Port out of range"),
        ("smtp://[::1", "Invalid IPv6"),
        ("smtp://localhost?startls=1", r"unknown option\(s\) startls"),
        ("smtp://localhost?starttls=maybe", "starttls must be 1 or 0"),
        ("smtp://localhost?timeout=0", "timeout must be a positive number"),
        ("smtp://localhost?timeout=soon", "timeout must be a positive number"),
        ("smtp://localhost?timeout=1&timeout=2", "given twice"),
        ("smtps://u:p@host?starttls=1", "already TLS"),
        ("smtp://user@mail.example.org?starttls=1", "both a username and a password"),
        ("smtp://user:pw@mail.example.org", "unencrypted to mail.example.org"),
        ("maildir://user@host/x", "path only"),
        ("console://stderr", "takes no host or path"),
        ("memory://x", "takes no host or path"),
        ("console://?rate=fast", "rate must be a positive number"),
        ("memory://?colour=red", r"unknown option\(s\) colour"),
    ],
)
def test_url_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        transport_from_url(url)


def test_url_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        transport_from_url("smtp://ann:hunter2@mail.example.org:25?timeout=-1")
    assert "hunter2" not in str(caught.value)
    assert "ann:***@mail.example.org:25" in str(caught.value)


@given(st.binary(max_size=200) | st.text(alphabet=".\r\nab", max_size=60).map(str.encode))
def test_dot_stuffing_doubles_every_leading_dot(payload: bytes) -> None:
    import re

    from newsletter.digest.send import _dot_stuffed

    stuffed = _dot_stuffed(payload)
    expected = re.sub(rb"(?m)^\.", b"..", payload)
    if not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert stuffed == expected + b".\r\n"


@contextmanager
def _scripted_server(
    replies: dict[bytes, bytes], *, pipelining: bool = True, hang_up_after: bytes | None = None
) -> Iterator[tuple[int, list[bytes]]]:
    """A bare SMTP server answering each command by its verb from ``replies`` (250
    otherwise) and hanging up right after answering ``hang_up_after``; yields its port
    and the command lines it heard. For misbehaviour aiosmtpd will not produce."""
    import socketserver
    import threading

    heard: list[bytes] = []
    ehlo = b"250-scripted\r\n250 PIPELINING\r\n" if pipelining else b"250 scripted\r\n"

    class Scripted(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 scripted\r\n")
            for line in self.rfile:
                heard.append(line)
                verb = line[:4].upper()
                self.wfile.write(ehlo if verb == b"EHLO" else replies.get(verb, b"250 OK\r\n"))
                if verb == hang_up_after:
                    return

    with socketserver.ThreadingTCPServer((HOST, 0), Scripted) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1], heard
        finally:
            server.shutdown()


def test_pipelined_data_accepted_after_a_refused_envelope_is_abandoned() -> None:
    """A server that answers 354 to a pipelined DATA although it refused MAIL FROM
    (RFC 2920 forbids it) gets no content and no final dot: the client hangs up, so
    the server cannot deliver an empty message, and reports the refusal."""
    replies = {
        b"MAIL": b"451 4.3.0 not now\r\n",
        b"RCPT": b"503 5.5.1 need MAIL\r\n",
        b"DATA": b"354 go ahead anyway\r\n",
    }
    with _scripted_server(replies) as (port, heard):
        transport = SMTPTransport(HOST, port, timeout=5)
        with pytest.raises(TransientSendError) as caught:
            transport.send(make_message(1))
        transport.close()
    assert caught.value.code == 451
    verbs = [line[:4].upper() for line in heard]
    assert verbs == [b"EHLO", b"MAIL", b"RCPT", b"DATA"]  # then nothing: no content, no "."


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelining"])
def test_refused_sender_then_hang_up_is_a_refused_session(pipelining: bool) -> None:
    """A relay that refuses our sender and hangs up (an ACL "drop") refuses the
    session, pipelined or not: the worker hands the batch back instead of trying
    every message."""
    replies = {b"MAIL": b"550 5.7.1 sender rejected\r\n"}
    with _scripted_server(replies, pipelining=pipelining, hang_up_after=b"MAIL") as (port, _):
        transport = SMTPTransport(HOST, port, timeout=5)
        with pytest.raises(SessionRefusedError) as caught:
            transport.send(make_message(1))
        transport.close()
    assert caught.value.code == 550
