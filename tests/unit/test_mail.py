"""identity.mail against a real SMTP server (aiosmtpd, tests/smtp_support.py), and the IDENTITY_SMTP_* settings."""

from __future__ import annotations

import logging
import time

import pytest

from identity.mail import Mailer, MailError, is_mail_address
from identity.settings import Settings, SmtpSettings
from tests.smtp_support import SmtpSink, silent_server, unused_port

TO = "alice@example.test"
CODE = "493817"
PASSWORD = "s3cret/p@ss word"


async def send(mailer: Mailer, *, to: str = TO, issuer_name: str = "Example Login", minutes: int = 5) -> None:
    await mailer.send_code(to=to, code=CODE, issuer_name=issuer_name, minutes=minutes)


def assert_discreet(error: BaseException) -> None:
    """A MailError's text names neither the recipient, nor the code, nor the password."""
    text = str(error)
    for secret in (TO, CODE, PASSWORD, "alice"):
        assert secret not in text
    assert error.__cause__ is None and error.__suppress_context__


# --- sending -----------------------------------------------------------------------------------------------------


async def test_a_code_arrives_as_text_and_html(smtp_sink, caplog):
    caplog.set_level(logging.DEBUG, logger="identity.mail")
    await send(Mailer(smtp_sink.settings()), minutes=5)

    [message] = smtp_sink.wait_for(TO)
    assert smtp_sink.code_for(TO) == CODE
    assert message["Subject"] == "Your verification code for Example Login"
    assert message["From"] == smtp_sink.sender and message["To"] == TO
    assert message["Date"] and message["Message-ID"].endswith("@identity.test>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for part in (text, html):
        assert CODE in part
        assert "expires in 5 minutes" in part
        assert "you can ignore this email" in part
    assert "<strong>Example Login</strong>" in html
    # The log says that a mail went out, and nothing about to whom or what.
    assert [record.getMessage() for record in caplog.records] == ["mail sent"]
    assert TO not in caplog.text and CODE not in caplog.text


async def test_one_minute_is_singular(smtp_sink):
    await send(Mailer(smtp_sink.settings()), minutes=1)
    assert "expires in 1 minute." in smtp_sink.wait_for(TO)[0].get_body(("plain",)).get_content()


async def test_the_html_part_escapes_the_issuer_name(smtp_sink):
    await send(Mailer(smtp_sink.settings()), issuer_name='<script>alert("x")</script> & Co')
    [message] = smtp_sink.wait_for(TO)
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in html
    # The text part is not markup: the name reads as written there.
    assert '<script>alert("x")</script> & Co' in message.get_body(("plain",)).get_content()


async def test_an_issuer_name_cannot_add_headers(smtp_sink):
    await send(Mailer(smtp_sink.settings()), issuer_name="Example\r\nBcc: mallory@example.test")
    [message] = smtp_sink.wait_for(TO)
    assert message["Bcc"] is None
    assert message["Subject"] == "Your verification code for Example Bcc: mallory@example.test"


@pytest.mark.parametrize("to", ["alice@example.test, mallory@example.test", "Alice <alice@example.test>", "alice"])
async def test_only_one_plain_recipient_is_accepted(smtp_sink, to):
    assert not is_mail_address(to)
    with pytest.raises(MailError, match="not one plain email address"):
        await send(Mailer(smtp_sink.settings()), to=to)
    assert smtp_sink.messages == []


async def test_starttls_and_login():
    with SmtpSink(starttls=True, auth=("mailer@identity.test", PASSWORD)) as sink:
        settings = sink.settings()
        assert settings.security == "starttls" and settings.password == PASSWORD
        await send(Mailer(settings))
        assert sink.code_for(TO) == CODE


async def test_implicit_tls_and_login():
    with SmtpSink(tls=True, auth=("mailer", PASSWORD)) as sink:
        assert sink.url.startswith("smtps://")
        await send(Mailer(sink.settings()))
        assert sink.code_for(TO) == CODE


async def test_a_wrong_password_is_a_mail_error_that_names_no_secret(caplog):
    with SmtpSink(starttls=True, auth=("mailer", "another password")) as sink:
        settings = SmtpSettings.parse(sink.url.replace("another%20password", "s3cret%2Fp%40ss%20word"), sink.sender)
        assert settings.password == PASSWORD
        with pytest.raises(MailError, match=r"refused the login \(reply 535\)") as caught:
            await send(Mailer(settings))
    assert caught.value.reply == 535
    assert_discreet(caught.value)
    assert PASSWORD not in caplog.text and TO not in caplog.text


async def test_a_certificate_from_an_untrusted_ca_is_refused():
    with SmtpSink(tls=True) as sink:
        untrusted = SmtpSettings(host="127.0.0.1", port=sink.port, security="tls", sender=sink.sender, timeout=5)
        with pytest.raises(MailError, match=r"TLS with the mail server 127\.0\.0\.1:\d+ failed") as caught:
            await send(Mailer(untrusted))
        assert sink.messages == []
    assert_discreet(caught.value)


async def test_a_server_without_starttls_is_refused_when_the_settings_ask_for_it(smtp_sink):
    settings = SmtpSettings(host="127.0.0.1", port=smtp_sink.port, security="starttls", sender=smtp_sink.sender)
    with pytest.raises(MailError, match="does not offer STARTTLS"):
        await send(Mailer(settings))


@pytest.mark.parametrize(("code", "at"), [(554, "RCPT"), (451, "RCPT"), (552, "DATA")])
async def test_a_refusal_is_a_mail_error_with_the_reply_code(smtp_sink, caplog, code, at):
    smtp_sink.fail_with(code, at=at)
    with pytest.raises(MailError, match=rf"refused the (recipient|message) \(reply {code}\)") as caught:
        await send(Mailer(smtp_sink.settings()))
    assert caught.value.reply == code
    assert_discreet(caught.value)
    assert TO not in caplog.text and CODE not in caplog.text
    assert smtp_sink.messages == []

    smtp_sink.fail_with(None)
    await send(Mailer(smtp_sink.settings()))
    assert smtp_sink.code_for(TO) == CODE


async def test_a_server_that_is_down_is_a_mail_error_at_once():
    settings = SmtpSettings(host="127.0.0.1", port=unused_port(), sender="login@identity.test", timeout=2)
    started = time.monotonic()
    with pytest.raises(MailError, match=r"could not connect to the mail server 127\.0\.0\.1:") as caught:
        await send(Mailer(settings))
    assert time.monotonic() - started < 10
    assert caught.value.reply is None
    assert_discreet(caught.value)


async def test_a_server_that_never_answers_is_given_up_after_the_timeout():
    with silent_server() as port:
        settings = SmtpSettings(host="127.0.0.1", port=port, sender="login@identity.test", timeout=1)
        started = time.monotonic()
        with pytest.raises(MailError, match="did not answer within 1 s") as caught:
            await send(Mailer(settings))
        assert time.monotonic() - started < 10
    assert_discreet(caught.value)


async def test_a_message_that_finds_every_connection_busy_waits_at_most_the_timeout(smtp_sink):
    mailer = Mailer(smtp_sink.settings(timeout=1), max_connections=1)
    async with mailer._slots:  # the one connection is busy (a slow server would hold it so)
        started = time.monotonic()
        with pytest.raises(MailError, match=r"no connection to the mail server .* came free within 1 s") as caught:
            await send(mailer)
        assert time.monotonic() - started < 10
    assert_discreet(caught.value)
    await send(mailer)  # the connection came free
    assert smtp_sink.code_for(TO) == CODE


# --- settings ----------------------------------------------------------------------------------------------------


def test_no_smtp_url_means_no_email_factor():
    assert Settings.from_env({}).smtp is None
    assert Settings(hash_workers=1).smtp is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.test", ("mail.example.test", 25, "none", None, None)),
        ("smtp://mail.example.test:2525/", ("mail.example.test", 2525, "none", None, None)),
        ("smtp://u:p@mail.example.test:587?starttls=true", ("mail.example.test", 587, "starttls", "u", "p")),
        ("smtp://u:p@mail.example.test?starttls=true", ("mail.example.test", 25, "starttls", "u", "p")),
        ("smtps://u:p@MAIL.example.test", ("mail.example.test", 465, "tls", "u", "p")),
        ("smtps://u@[::1]:4650", ("::1", 4650, "tls", "u", None)),
        (
            "smtps://login%40example.test:s3cret%2Fp%40ss%20word@mail.example.test:465",
            ("mail.example.test", 465, "tls", "login@example.test", PASSWORD),
        ),
    ],
)
def test_smtp_url_forms(url, expected):
    settings = Settings.from_env({"IDENTITY_SMTP_URL": url, "IDENTITY_SMTP_FROM": "login@example.test"}).smtp
    assert settings is not None
    assert (settings.host, settings.port, settings.security, settings.username, settings.password) == expected
    assert settings.timeout == 10 and settings.cafile is None and settings.sender == "login@example.test"


def test_smtp_timeout_and_cafile(tmp_path):
    cafile = tmp_path / "ca.pem"
    cafile.write_text("")
    settings = SmtpSettings.parse(f"smtp://mail.example.test?timeout=2.5&cafile={cafile}", "login@example.test")
    assert settings.timeout == 2.5 and settings.cafile == str(cafile)


@pytest.mark.parametrize(
    "sender", ["login@example.test", "Example Login <login@example.test>", '"Login, Example" <login@example.test>']
)
def test_smtp_from_may_have_a_display_name(sender):
    settings = SmtpSettings.parse("smtp://mail.example.test", sender)
    assert settings.sender == sender and settings.sender_address == "login@example.test"


FROM = "login@example.test"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"IDENTITY_SMTP_URL": "smtp://mail.example.test"}, "IDENTITY_SMTP_FROM is required"),
        ({"IDENTITY_SMTP_FROM": FROM}, "IDENTITY_SMTP_URL is not"),
        ({"IDENTITY_SMTP_URL": "http://mail.example.test", "IDENTITY_SMTP_FROM": FROM}, "smtp:// or smtps://"),
        ({"IDENTITY_SMTP_URL": "smtp://", "IDENTITY_SMTP_FROM": FROM}, "must name the mail server's host"),
        ({"IDENTITY_SMTP_URL": "smtp://h:0", "IDENTITY_SMTP_FROM": FROM}, "port"),
        ({"IDENTITY_SMTP_URL": "smtp://h?tls=yes", "IDENTITY_SMTP_FROM": FROM}, "accepts the query parameters"),
        ({"IDENTITY_SMTP_URL": "smtp://h?timeout=1&timeout=2", "IDENTITY_SMTP_FROM": FROM}, "each once"),
        ({"IDENTITY_SMTP_URL": "smtp://h?starttls=maybe", "IDENTITY_SMTP_FROM": FROM}, "starttls must be true"),
        ({"IDENTITY_SMTP_URL": "smtps://h?starttls=true", "IDENTITY_SMTP_FROM": FROM}, "applies to smtp:// only"),
        ({"IDENTITY_SMTP_URL": "smtp://h?timeout=soon", "IDENTITY_SMTP_FROM": FROM}, "timeout"),
        ({"IDENTITY_SMTP_URL": "smtp://h?timeout=0", "IDENTITY_SMTP_FROM": FROM}, "timeout"),
        ({"IDENTITY_SMTP_URL": "smtp://h?cafile=/nonexistent/ca.pem", "IDENTITY_SMTP_FROM": FROM}, "cafile"),
        ({"IDENTITY_SMTP_URL": "smtp://h", "IDENTITY_SMTP_FROM": "login"}, "IDENTITY_SMTP_FROM must be"),
        ({"IDENTITY_SMTP_URL": "smtp://h", "IDENTITY_SMTP_FROM": "a@example.test, b@example.test"}, "_FROM must"),
        ({"IDENTITY_SMTP_URL": "smtp://h", "IDENTITY_SMTP_FROM": "a@example.test\r\nBcc: b@x.test"}, "_FROM must"),
    ],
)
def test_smtp_settings_refuse_wrong_values(environ, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(environ)


@pytest.mark.parametrize(
    "url",
    [
        f"smtp://u:{PASSWORD.replace(' ', '%20')}@mail.example.test:587?starttls=true",  # / and @ not encoded
        "smtp://u:pa?ss@mail.example.test",
        "smtp://u:pa#ss@mail.example.test",
        "smtp://u:secret@mail.example.test",  # a password without TLS
        "smtp://u:secret@mail.example.test?starttls=perhaps",
        "smtps://u:secret@mail.example.test:99999",
        "ftp://u:secret@mail.example.test",
    ],
)
def test_errors_never_quote_the_password(url):
    with pytest.raises(ValueError) as caught:
        SmtpSettings.parse(url, "login@example.test")
    for piece in ("secret", "s3cret", "p@ss", "pa?ss", "pa#ss", "ss@mail"):
        assert piece not in str(caught.value)


def test_the_password_is_not_in_the_settings_repr():
    smtp = SmtpSettings.parse("smtps://u:s3cret%2Fp%40ss%20word@mail.example.test", "login@example.test")
    assert smtp.password == PASSWORD
    assert PASSWORD not in repr(smtp) and "s3cret" not in repr(smtp)
    assert "s3cret" not in repr(Settings(hash_workers=1, smtp=smtp))
