"""A real SMTP server for the tests of emailed one-time codes: aiosmtpd on 127.0.0.1, in a thread of its own.

`SmtpSink` keeps every message it accepts. It serves sync tests, async tests (it has its own event loop, so a test's
loop never waits on it) and tests that start ``identity serve``: its `SmtpSink.url` and `SmtpSink.env` go into the
subprocess's environment. With ``starttls=True`` or ``tls=True`` it presents a certificate from a throwaway CA made
here, and the URL names that CA (``?cafile=``), so the client checks the certificate as it would in production.

When `identity.mail.Mailer.send_code` returns, the message is already in `SmtpSink.messages`: the server stores it
before it answers the end of ``DATA``.
"""

from __future__ import annotations

import contextlib
import datetime
import email
import email.policy
import ipaddress
import re
import select
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from identity.settings import SmtpSettings

__all__ = ["SmtpSink", "connection_pending", "silent_listener", "silent_server", "unused_port"]

SENDER = "Identity Test <login@identity.test>"
_CODE_LINE = re.compile(r"^\s*(\d{6})\s*$", re.MULTILINE)


class SmtpSink:
    """An SMTP server that accepts mail for anyone and keeps it; a context manager (or `start` / `stop`)."""

    def __init__(self, starttls: bool = False, tls: bool = False, auth: tuple[str, str] | None = None) -> None:
        if starttls and tls:
            raise ValueError("starttls and tls exclude each other")
        if auth and not (starttls or tls):
            raise ValueError("identity never sends a password without TLS: use starttls=True or tls=True")
        self.starttls, self.tls, self.auth = starttls, tls, auth
        self.sender = SENDER
        self._received: list[tuple[list[str], EmailMessage]] = []
        self._changed = threading.Condition()
        self._failure: tuple[int, str] | None = None
        self._dir: Path | None = None
        self._controller: _Controller | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> SmtpSink:
        """Start listening on an ephemeral port of 127.0.0.1."""
        kwargs: dict[str, Any] = {}
        server_tls: ssl.SSLContext | None = None
        if self.starttls or self.tls:
            self._dir = Path(tempfile.mkdtemp(prefix="identity-smtp-"))
            server_tls = _certificates(self._dir)
        if self.starttls:
            kwargs.update(tls_context=server_tls, require_starttls=True)
        if self.auth:
            # aiosmtpd only counts STARTTLS as TLS: over implicit TLS it must allow AUTH "without TLS", and then it
            # refuses (warns) to require AUTH. The client logs in all the same, and a wrong password still fails.
            kwargs.update(authenticator=self._authenticate, auth_required=not self.tls, auth_require_tls=not self.tls)
        self._controller = _Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=0,
            ssl_context=server_tls if self.tls else None,
            server_hostname="smtp.identity.test",
            **kwargs,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop the server and remove its certificates."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- configuration of the client -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._controller is not None, "the SmtpSink is not started"
        return int(self._controller.port)

    @property
    def url(self) -> str:
        """``IDENTITY_SMTP_URL`` for this server (credentials percent-encoded, ``cafile`` when it speaks TLS)."""
        scheme = "smtps" if self.tls else "smtp"
        userinfo = f"{quote(self.auth[0], safe='')}:{quote(self.auth[1], safe='')}@" if self.auth else ""
        query = []
        if self.starttls:
            query.append("starttls=true")
        if self._dir is not None:
            query.append(f"cafile={quote(str(self._dir / 'ca.pem'))}")
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}" + ("?" + "&".join(query) if query else "")

    @property
    def env(self) -> dict[str, str]:
        """The environment variables that point ``identity serve`` at this server."""
        return {"IDENTITY_SMTP_URL": self.url, "IDENTITY_SMTP_FROM": self.sender}

    def settings(self, *, timeout: float = 10.0) -> SmtpSettings:
        """`SmtpSettings` for this server, as ``identity serve`` would read them from `env`."""
        query = f"{'&' if '?' in self.url else '?'}timeout={timeout:g}"
        return SmtpSettings.parse(self.url + query, self.sender)

    # --- behaviour -------------------------------------------------------------------------------------------------

    def fail_with(self, code: int | None, *, at: Literal["RCPT", "DATA"] = "RCPT") -> None:
        """Answer ``code`` (e.g. 451, 554) to every ``RCPT TO`` (or end of ``DATA``) from now on; ``None``: accept."""
        self._failure = None if code is None else (code, at)

    # --- what arrived ----------------------------------------------------------------------------------------------

    @property
    def messages(self) -> list[EmailMessage]:
        """Every message accepted so far, oldest first."""
        with self._changed:
            return [message for _, message in self._received]

    def clear(self) -> None:
        """Forget the messages received so far (between tests sharing one server)."""
        with self._changed:
            self._received.clear()

    def wait_for(self, to: str, count: int = 1, timeout: float = 5) -> list[EmailMessage]:
        """The messages for ``to`` once there are at least ``count`` of them (oldest first); fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := self._for(to)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(found)} of {count} messages for {to} arrived within {timeout} s")
                self._changed.wait(left)
            return found

    def code_for(self, to: str, timeout: float = 5) -> str:
        """The six-digit code of the latest message for ``to`` (read from its text part), waiting for one."""
        message = self.wait_for(to, timeout=timeout)[-1]
        body = message.get_body(("plain",))
        assert body is not None, "the message has no text part"
        match = _CODE_LINE.search(body.get_content())  # type: ignore[attr-defined]
        assert match, "the text part holds no line with a six-digit code"
        return match.group(1)

    def _for(self, to: str) -> list[EmailMessage]:
        return [message for recipients, message in self._received if to.lower() in recipients]

    # --- aiosmtpd's side (its thread) ------------------------------------------------------------------------------

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.auth is None:
            return AuthResult(success=False, handled=False)
        given = (data.login.decode(), data.password.decode())
        return AuthResult(success=given == self.auth, handled=False)  # handled=False: aiosmtpd answers 235 or 535

    def _receive(self, recipients: list[str], content: bytes) -> None:
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._changed:
            self._received.append(([address.lower() for address in recipients], message))
            self._changed.notify_all()


class _Handler:
    """aiosmtpd's handler hooks, forwarded to the sink."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        failure = self.sink._failure
        if failure and failure[1] == "RCPT":
            return f"{failure[0]} {_reply_text(failure[0])} for {address}"  # real servers quote the address too
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        failure = self.sink._failure
        if failure and failure[1] == "DATA":
            return f"{failure[0]} {_reply_text(failure[0])}"
        self.sink._receive(list(envelope.rcpt_tos), envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def _reply_text(code: int) -> str:
    return "Try again later" if code < 500 else "Rejected"


class _Controller(Controller):
    """aiosmtpd's threaded controller on an ephemeral port: the port the OS picked is read back before it is used."""

    def _create_server(self) -> Any:
        created = super()._create_server()

        async def bind() -> Any:
            server = await created
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bind()


def _certificates(directory: Path) -> ssl.SSLContext:
    """A throwaway CA (``ca.pem``) and a certificate for 127.0.0.1 it signed; the server's TLS context."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "identity test mail CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    return context


def unused_port() -> int:
    """A port of 127.0.0.1 nothing listens on (a mail server that is down: connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def silent_listener() -> Iterator[socket.socket]:
    """A listening socket that never accepts or says a word (a hung mail server: only the timeout ends a send).

    `connection_pending` tells when a client has connected to it (a send has begun)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes the handshakes; nobody ever accepts or answers
        yield listener


def connection_pending(listener: socket.socket, timeout: float) -> bool:
    """Whether a connection waits on ``listener`` (or arrives within ``timeout`` seconds); it is not accepted."""
    readable, _, _ = select.select([listener], [], [], timeout)
    return bool(readable)


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """The port of a `silent_listener`."""
    with silent_listener() as listener:
        yield int(listener.getsockname()[1])
