"""Emailed one-time codes: render the message, hand it to the mail server over SMTP without blocking the event loop.

`Mailer.send_code` is all the MFA flows need. It returns once the server has accepted the message (delivery to the
mailbox is the server's job) and raises `MailError` when it could not be handed over; the caller answers the client
and decides whether to retry. One `Mailer` serves one application (one event loop).

Bounds: a message may take `SmtpSettings.timeout` seconds in all, waiting for a free connection included, and at
most `Mailer.MAX_CONNECTIONS` connections are open at once, so a slow or dead mail server costs a bounded number of
sockets and a bounded wait per request instead of piling up connections.

Nothing here writes the recipient or the code anywhere but into the message: logs and `MailError` name the server
and its reply code only (a server's reply text often quotes the address, so it is never repeated).

The text is rendered from ``templates/mail/mfa_code.txt`` and ``templates/mail/mfa_code.html`` (found with
`identity.resources`, so an installed wheel reads the copies it ships); the HTML one is autoescaped, since the
issuer's name comes from the tenant's configuration.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import cache

import aiosmtplib
import jinja2

from identity.resources import resource
from identity.settings import SmtpSettings, mailbox_address

__all__ = ["MailError", "Mailer", "is_mail_address"]

logger = logging.getLogger("identity.mail")


class MailError(Exception):
    """The message could not be handed to the mail server.

    The text names the server and its reply code, never the recipient or the code: it may be logged as it is.
    """

    def __init__(self, message: str, *, reply: int | None = None, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.reply = reply
        """The server's SMTP reply code when it refused something (``4xx``: try later, ``5xx``: it will not)."""
        self.maybe_sent = maybe_sent
        """The exchange broke off after it began (a timeout, a dropped connection): the message may have arrived, so
        it still counts against the recipient's limit."""


def is_mail_address(text: str) -> bool:
    """Whether ``text`` is one plain address a code can be sent to (check it when the address is registered)."""
    return mailbox_address(text) == text


class Mailer:
    """Sends one-time codes through the mail server of `SmtpSettings`."""

    MAX_CONNECTIONS = 8
    """Connections to the mail server open at once; more messages wait for one (within the timeout)."""

    def __init__(self, settings: SmtpSettings, *, max_connections: int = MAX_CONNECTIONS) -> None:
        if max_connections < 1:
            raise ValueError("a Mailer needs at least one connection")
        self.settings = settings
        self._slots = asyncio.Semaphore(max_connections)
        # Built once: loading the trust store reads files. Certificates and host names are always checked.
        self._tls = ssl.create_default_context(cafile=settings.cafile) if settings.security != "none" else None
        self._domain = (settings.sender_address or "").rpartition("@")[2]
        self._templates = _templates()  # at start-up: an installation without its templates fails here, not later

    async def send_code(self, *, to: str, code: str, issuer_name: str, minutes: int) -> None:
        """Email ``code`` to ``to``: valid for ``minutes``, for signing in to ``issuer_name`` (the tenant's name).

        Raises:
            MailError: the message was not handed over (server unreachable, TLS or login refused, a 4xx/5xx reply,
                the timeout), or ``to`` is not an address mail can be sent to.
        """
        if not is_mail_address(to):
            raise MailError("the recipient is not one plain email address")
        context = {"code": code, "issuer_name": issuer_name, "minutes": minutes}
        message = self._message(
            to=to,
            subject=f"Your verification code for {' '.join(issuer_name.split())}",
            text=self._templates.get_template("mfa_code.txt").render(context),
            html=self._templates.get_template("mfa_code.html").render(context),
        )
        await self._hand_over(message, to)

    def _message(self, *, to: str, subject: str, text: str, html: str) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.settings.sender
        message["To"] = to
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=self._domain)  # with a domain: no blocking host name lookup
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a sender nobody reads
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message

    async def _hand_over(self, message: EmailMessage, to: str) -> None:
        settings = self.settings
        server = f"{settings.host}:{settings.port}"
        connected = False
        try:
            async with asyncio.timeout(settings.timeout):
                async with self._slots:
                    connected = True
                    await aiosmtplib.send(
                        message,
                        sender=settings.sender_address,
                        recipients=[to],
                        hostname=settings.host,
                        port=settings.port,
                        username=settings.username,
                        password=(settings.password or "") if settings.username is not None else None,
                        use_tls=settings.security == "tls",
                        start_tls=settings.security == "starttls",
                        tls_context=self._tls,
                        timeout=settings.timeout,
                    )
        except Exception as exc:
            error = _error(exc, server=server, timeout=settings.timeout, connected=connected)
            logger.warning(
                "mail failed: %s", error, extra={"event": {"smtp_server": server, "smtp_reply": error.reply}}
            )
            raise error from None  # the original's text may quote the recipient
        logger.info("mail sent", extra={"event": {"smtp_server": server}})


def _error(exc: Exception, *, server: str, timeout: float, connected: bool) -> MailError:
    """The `MailError` for what went wrong, in words that never repeat the server's reply text."""
    if isinstance(exc, TimeoutError):
        if not connected:
            return MailError(f"no connection to the mail server {server} came free within {timeout:g} s")
        return MailError(f"the mail server {server} did not answer within {timeout:g} s", maybe_sent=True)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return _refused(server, "the recipient", exc.recipients[0].code)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _refused(server, "the login", exc.code)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _refused(server, "the sender", exc.code)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _refused(server, "the message", exc.code)
    if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError):
        return MailError(f"TLS with the mail server {server} failed (is its certificate trusted?)")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return MailError(f"the mail server {server} does not take non-ASCII addresses (no SMTPUTF8)")
    for extension in ("STARTTLS", "AUTH"):  # aiosmtplib's own words, when the server does not offer them
        if type(exc) is aiosmtplib.SMTPException and extension in str(exc):
            return MailError(f"the mail server {server} does not offer {extension}, which the settings ask for")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return MailError(f"the mail server {server} closed the connection", maybe_sent=True)
    if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
        return MailError(f"could not connect to the mail server {server}")
    return MailError(f"sending through the mail server {server} failed ({type(exc).__name__})")


def _refused(server: str, what: str, reply: int) -> MailError:
    return MailError(f"the mail server {server} refused {what} (reply {reply})", reply=reply)


@cache
def _templates() -> jinja2.Environment:
    """The mail templates; HTML ones are autoescaped, text ones are not (they are never read as markup)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(resource("templates", "mail")),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
