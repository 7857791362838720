"""Deployment settings, read once from the environment.

`Settings.from_env(os.environ)` is called once, by the CLI or the ASGI entry point; tests build `Settings(...)`
directly. Nothing in the package reads the environment anywhere else.

Environment variables:

- ``IDENTITY_DATABASE_URL``: SQLAlchemy URL. ``sqlite:///path`` and ``postgresql://...`` are accepted and mapped to
  their async drivers. Default: ``sqlite:///identity.db`` (the embedded database, in the working directory).
- ``IDENTITY_ISSUER``: the public issuer URL (``iss`` of every token), e.g. ``https://login.example.com/``. A trailing
  slash is added when missing, as Auth0 does. Default: ``http://127.0.0.1:8000/``.
- ``IDENTITY_ENCRYPTION_KEYS``: the keys that encrypt secrets at rest (signing keys, later TOTP secrets), as
  ``kid=base64key[,kid=base64key...]``; the first one encrypts, all of them decrypt, so keys can be rotated.
- ``IDENTITY_ENCRYPTION_KEY_FILE``: the same, one ``kid=base64key`` per line, read from a file. Used when
  ``IDENTITY_ENCRYPTION_KEYS`` is unset. With the embedded SQLite database and neither variable set, a key file
  ``.identity/encryption.keys`` is created beside the working directory on first start; with any other database the
  keys must be given explicitly, since every instance must share them.
- ``IDENTITY_ARGON2_TIME_COST`` / ``IDENTITY_ARGON2_MEMORY_KIB`` / ``IDENTITY_ARGON2_PARALLELISM``: Argon2id parameters
  (default OWASP's minimum: t=2, m=19 MiB, p=1).
- ``IDENTITY_HASH_WORKERS``: threads that hash passwords (default: the number of CPUs).
- ``IDENTITY_HASH_QUEUE``: logins that may wait for a hash worker; past that a login is answered ``503
  temporarily_unavailable`` at once (default: four per worker).
- ``IDENTITY_HASH_WAIT_MS``: how long a login waits for a hash worker before it gives up the same way (default 2000).
- ``IDENTITY_TRUSTED_PROXIES``: comma-separated addresses or CIDRs of the proxies in front of the service. Only a
  request from one of them has its ``X-Forwarded-For`` read (right to left); default empty: the TCP peer is the client.
- ``IDENTITY_LOG_RETENTION_DAYS``: audit-log events older than this are purged (default 30, Auth0's longest plan).
- ``IDENTITY_SQLITE_SYNCHRONOUS``: ``NORMAL`` (default: in WAL mode a crash of the process or of the service loses
  nothing, a power cut or a kernel crash may lose the last commits) or ``FULL`` (every commit is fsynced before the
  response: durable against power loss, slower writes; docs/benchmarks.md measures both).
- ``IDENTITY_CONFIG_CACHE_SECONDS``: how long a process trusts its cached tenant configuration before it compares
  the database's configuration version again (default 1; changes made through identity reach every instance
  within about that long). ``0`` turns the cache off: every request reads the configuration (tests, debugging).

Operations (`OpsSettings`):

- ``IDENTITY_LOG_LEVEL``: ``DEBUG``, ``INFO`` (default), ``WARNING``, ``ERROR``.
- ``IDENTITY_LOG_FORMAT``: ``json`` (default: one JSON object per line) or ``text`` (for a terminal).
- ``IDENTITY_METRICS``: ``off`` (default) or ``on``: Prometheus metrics at ``/metrics``. With
  ``IDENTITY_METRICS_PORT`` set they are served on that port only (bound to ``IDENTITY_METRICS_HOST``, default
  127.0.0.1), never on the public one.
- ``IDENTITY_SHUTDOWN_DELAY``: seconds between SIGTERM and closing the listening socket, while ``/readyz`` answers
  503 so a load balancer stops routing here (default 0). In-flight requests always finish.
- ``IDENTITY_PURGE_INTERVAL``: seconds between housekeeping runs of the server (default 3600; 0 turns it off).
- ``IDENTITY_KEYS_REFRESH``: seconds between checks of the signing-key table, so every instance follows a rotation
  or a revocation within that delay (default 4: every configuration change reaches every instance within 5 s).
- ``IDENTITY_JWKS_MAX_AGE``: ``Cache-Control: max-age`` of the JWKS, the seconds an API may keep a JWKS it fetched
  (default 300). ``identity keys rotate`` waits until the next key has been published this long (plus the refresh).

WebAuthn (security keys and passkeys):

- ``IDENTITY_WEBAUTHN_RP_ID``: the WebAuthn relying party id (a registrable domain). Default: the issuer's host, or
  ``localhost`` when the issuer's host is a loopback IP address (WebAuthn refuses IP addresses).
- ``IDENTITY_WEBAUTHN_ORIGINS``: the origins (``scheme://host[:port]``, comma separated) WebAuthn responses may come
  from. Default: the issuer's origin, with ``localhost`` in place of a loopback IP address.
- ``IDENTITY_WEBAUTHN_ATTESTATION_ROOTS``: a PEM file of attestation root certificates (FIDO Metadata Service roots,
  a vendor's CA). Only a key whose attestation chains to one of them (or to a root py_webauthn ships for its
  format) counts as hardware-bound (``amr`` ``hwk``); every other key is ``swk``.

HTTP limits (`HttpLimits`, enforced by `identity.http_limits` under ``identity serve``):

- ``IDENTITY_HTTP_HEADER_TIMEOUT``: seconds a connection may take to send a request's line and headers, counted from
  when it opens or its previous response ended (default 10): idle and slowly trickled connections are closed.
- ``IDENTITY_HTTP_BODY_TIMEOUT``: seconds a request may take to send its body once the headers are in (default 20).
- ``IDENTITY_HTTP_MAX_HEADER_BYTES``: the most bytes of request line and headers (default 32768); more is a 431.

Email (one-time codes, `SmtpSettings`, sent by `identity.mail`):

- ``IDENTITY_SMTP_URL``: the mail server that sends one-time codes. Unset (the default): no email factor.
  ``smtp://host:25`` is plain SMTP (no TLS; only for a relay on a trusted network),
  ``smtp://user:password@host:587?starttls=true`` upgrades with STARTTLS, ``smtps://user:password@host:465`` is TLS
  from the first byte. The user name and password are percent-decoded (write ``@`` as ``%40``, ``/`` as ``%2F``).
  Default ports: 25 for ``smtp``, 465 for ``smtps``. Credentials are refused without TLS. Query parameters:
  ``timeout`` (seconds one message may take, connection included; default 10) and ``cafile`` (a PEM file of the CA
  certificates to trust instead of the system's, for a server with a private CA).
- ``IDENTITY_SMTP_FROM``: the sender, ``login@example.com`` or ``Example Login <login@example.com>``; required with
  ``IDENTITY_SMTP_URL``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import getaddresses
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from identity.network import Networks, parse_networks

__all__ = [
    "DEFAULT_KEY_FILE",
    "Argon2Params",
    "EncryptionKeys",
    "HttpLimits",
    "OpsSettings",
    "Settings",
    "SmtpSettings",
    "mailbox_address",
    "normalize_database_url",
]

DEFAULT_KEY_FILE = Path(".identity/encryption.keys")
_KEY_BYTES = 32
_KID = re.compile(r"[A-Za-z0-9_-]{1,16}")


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id cost parameters; the defaults are OWASP's minimum for Argon2id."""

    time_cost: int = 2
    memory_kib: int = 19 * 1024
    parallelism: int = 1


@dataclass(frozen=True)
class EncryptionKeys:
    """Symmetric keys for encryption at rest, by key id. The first key encrypts; every key decrypts."""

    keys: tuple[tuple[str, bytes], ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("at least one encryption key is required")
        for number, (kid, key) in enumerate(self.keys, start=1):
            # Messages name the key by position, never by text: a forgotten "kid=" puts the key in the id.
            if not _KID.fullmatch(kid):
                raise ValueError(f"invalid encryption key id (key #{number}): use 1-16 letters, digits, _ or -")
            if len(key) != _KEY_BYTES:
                raise ValueError(f"encryption key #{number} must be {_KEY_BYTES} bytes (base64 of 32 random bytes)")

    @classmethod
    def parse(cls, text: str) -> EncryptionKeys:
        """Parse ``kid=base64key`` items separated by commas or new lines."""
        items = [item.strip() for item in text.replace("\n", ",").split(",")]
        keys: list[tuple[str, bytes]] = []
        for item in items:
            if not item or item.startswith("#"):
                continue
            kid, sep, value = item.partition("=")
            if not sep:
                raise ValueError("encryption keys must be written as kid=base64key")
            try:
                raw = base64.b64decode(value.strip() + "=" * (-len(value.strip()) % 4), validate=True)
            except ValueError:
                raise ValueError(f"encryption key #{len(keys) + 1} is not valid base64") from None
            keys.append((kid.strip(), raw))
        return cls(tuple(keys))

    @classmethod
    def generate(cls, kid: str = "k1") -> EncryptionKeys:
        """A fresh random key (for the embedded default and for tests)."""
        return cls(((kid, secrets.token_bytes(_KEY_BYTES)),))

    def dump(self) -> str:
        """The ``kid=base64key`` text form, one key per line."""
        return "".join(f"{kid}={base64.b64encode(key).decode()}\n" for kid, key in self.keys)


def normalize_database_url(url: str) -> str:
    """Map plain SQLAlchemy URLs to the async drivers the service uses."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url.removeprefix("sqlite:")
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    return url


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class OpsSettings:
    """How the service runs: logs, metrics, shutdown, housekeeping, key refresh (see the module docstring)."""

    log_level: str = "INFO"
    log_format: str = "json"
    metrics: bool = False
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    shutdown_delay: float = 0.0
    purge_interval: float = 3600.0
    keys_refresh: float = 4.0
    """Seconds between checks of the signing-key table (one small query): a rotation or revocation made elsewhere is
    followed within this, inside the 5 s in which every configuration change reaches every instance."""
    jwks_max_age: int = 300

    def __post_init__(self) -> None:
        if self.log_level not in _LOG_LEVELS:
            raise ValueError(f"IDENTITY_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}")
        if self.log_format not in ("json", "text"):
            raise ValueError("IDENTITY_LOG_FORMAT must be json or text")
        if self.shutdown_delay < 0 or self.purge_interval < 0 or self.keys_refresh <= 0 or self.jwks_max_age < 0:
            raise ValueError("IDENTITY_SHUTDOWN_DELAY, IDENTITY_PURGE_INTERVAL and IDENTITY_KEYS_REFRESH are seconds")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OpsSettings:
        """Read the ``IDENTITY_*`` operations variables."""
        metrics = environ.get("IDENTITY_METRICS", "off").strip().lower()
        if metrics not in ("on", "off", "true", "false", "1", "0"):
            raise ValueError("IDENTITY_METRICS must be on or off")
        port = environ.get("IDENTITY_METRICS_PORT", "").strip()
        try:
            return cls(
                log_level=environ.get("IDENTITY_LOG_LEVEL", cls.log_level).strip().upper(),
                log_format=environ.get("IDENTITY_LOG_FORMAT", cls.log_format).strip().lower(),
                metrics=metrics in ("on", "true", "1"),
                metrics_port=int(port) if port else None,
                metrics_host=environ.get("IDENTITY_METRICS_HOST", cls.metrics_host),
                shutdown_delay=float(environ.get("IDENTITY_SHUTDOWN_DELAY", cls.shutdown_delay)),
                purge_interval=float(environ.get("IDENTITY_PURGE_INTERVAL", cls.purge_interval)),
                keys_refresh=float(environ.get("IDENTITY_KEYS_REFRESH", cls.keys_refresh)),
                jwks_max_age=int(environ.get("IDENTITY_JWKS_MAX_AGE", cls.jwks_max_age)),
            )
        except ValueError as exc:
            if "IDENTITY_" in str(exc):
                raise
            raise ValueError(f"an IDENTITY_* operations setting is not a number: {exc}") from None


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to know about its deployment."""

    database_url: str = "sqlite+aiosqlite:///identity.db"
    issuer: str = "http://127.0.0.1:8000/"
    encryption_keys: EncryptionKeys = field(default_factory=EncryptionKeys.generate, repr=False)
    argon2: Argon2Params = field(default_factory=Argon2Params)
    hash_workers: int = field(default_factory=lambda: os.cpu_count() or 2)
    id_token_lifetime: int = 36_000
    ops: OpsSettings = field(default_factory=OpsSettings)
    # --- WebAuthn (issue 14) ---
    webauthn_rp_id: str | None = None
    """``None``: derived from the issuer (`rp_id`)."""
    webauthn_origins: tuple[str, ...] = ()
    """Empty: derived from the issuer (`origins`)."""
    webauthn_attestation_roots: tuple[bytes, ...] = field(default=(), repr=False)
    """PEM certificates that make an attested key count as hardware-bound."""
    # Attack protection and audit log (issue 11).
    hash_queue: int | None = None
    """Logins that may wait for a hash worker (``None``: four per worker)."""
    hash_wait_ms: int = 2000
    trusted_proxies: tuple[str, ...] = ()
    log_retention_days: int = 30
    sqlite_synchronous: str = "NORMAL"
    config_cache_seconds: float = 1.0
    # --- hardening (issue 12) ---
    http: HttpLimits = field(default_factory=lambda: HttpLimits())
    # --- email one-time codes (issue 15) ---
    smtp: SmtpSettings | None = None
    """The mail server for emailed one-time codes; ``None``: no email factor."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "database_url", normalize_database_url(self.database_url))
        if not self.issuer.endswith("/"):
            object.__setattr__(self, "issuer", self.issuer + "/")
        if not self.issuer.startswith(("https://", "http://")):
            raise ValueError("IDENTITY_ISSUER must be an http(s) URL")
        if self.hash_workers < 1:
            raise ValueError("IDENTITY_HASH_WORKERS must be at least 1")
        for origin in self.webauthn_origins:
            if origin.startswith("android:apk-key-hash:") and len(origin) > len("android:apk-key-hash:"):
                continue  # an Android app's origin (its signing certificate's hash)
            parts = urlsplit(origin)
            if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in ("", "/"):
                raise ValueError(
                    "IDENTITY_WEBAUTHN_ORIGINS must list origins such as https://login.example.com "
                    "(or android:apk-key-hash:... for an Android app)"
                )
        if self.hash_queue is not None and self.hash_queue < 0:
            raise ValueError("IDENTITY_HASH_QUEUE must be 0 or more")
        if self.hash_wait_ms < 1:
            raise ValueError("IDENTITY_HASH_WAIT_MS must be at least 1")
        if self.log_retention_days < 1:
            raise ValueError("IDENTITY_LOG_RETENTION_DAYS must be at least 1")
        parse_networks(self.trusted_proxies, what="IDENTITY_TRUSTED_PROXIES entry")
        if self.sqlite_synchronous not in ("NORMAL", "FULL"):
            raise ValueError("IDENTITY_SQLITE_SYNCHRONOUS must be NORMAL or FULL")
        if not 0 <= self.config_cache_seconds <= 5:
            raise ValueError("IDENTITY_CONFIG_CACHE_SECONDS must be between 0 and 5")

    @property
    def rp_id(self) -> str:
        """The WebAuthn relying party id: configured, else the issuer's host (``localhost`` for a loopback IP)."""
        if self.webauthn_rp_id:
            return self.webauthn_rp_id
        return _webauthn_host(urlsplit(self.issuer).hostname or "localhost")

    @property
    def origins(self) -> tuple[str, ...]:
        """The origins WebAuthn responses may carry: configured, else the issuer's origin."""
        if self.webauthn_origins:
            return tuple(origin.rstrip("/") for origin in self.webauthn_origins)
        parts = urlsplit(self.issuer)
        host = _webauthn_host(parts.hostname or "localhost")
        return (f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else ""),)

    @cached_property
    def proxies(self) -> Networks:
        """The trusted proxies, parsed."""
        return Networks.parse(self.trusted_proxies)

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is the embedded SQLite one."""
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from environment variables (see the module docstring)."""
        database_url = normalize_database_url(environ.get("IDENTITY_DATABASE_URL", cls.database_url))
        argon2 = Argon2Params(
            time_cost=int(environ.get("IDENTITY_ARGON2_TIME_COST", Argon2Params.time_cost)),
            memory_kib=int(environ.get("IDENTITY_ARGON2_MEMORY_KIB", Argon2Params.memory_kib)),
            parallelism=int(environ.get("IDENTITY_ARGON2_PARALLELISM", Argon2Params.parallelism)),
        )
        return cls(
            database_url=database_url,
            issuer=environ.get("IDENTITY_ISSUER", cls.issuer),
            encryption_keys=_load_encryption_keys(environ, embedded=database_url.startswith("sqlite")),
            argon2=argon2,
            hash_workers=int(environ.get("IDENTITY_HASH_WORKERS", os.cpu_count() or 2)),
            ops=OpsSettings.from_env(environ),
            webauthn_rp_id=environ.get("IDENTITY_WEBAUTHN_RP_ID") or None,
            webauthn_origins=tuple(
                o.strip() for o in environ.get("IDENTITY_WEBAUTHN_ORIGINS", "").split(",") if o.strip()
            ),
            webauthn_attestation_roots=_pem_certificates(environ.get("IDENTITY_WEBAUTHN_ATTESTATION_ROOTS")),
            hash_queue=int(environ["IDENTITY_HASH_QUEUE"]) if environ.get("IDENTITY_HASH_QUEUE") else None,
            hash_wait_ms=int(environ.get("IDENTITY_HASH_WAIT_MS") or 2000),
            trusted_proxies=tuple(
                item.strip() for item in environ.get("IDENTITY_TRUSTED_PROXIES", "").split(",") if item.strip()
            ),
            log_retention_days=int(environ.get("IDENTITY_LOG_RETENTION_DAYS") or 30),
            sqlite_synchronous=environ.get("IDENTITY_SQLITE_SYNCHRONOUS", cls.sqlite_synchronous).upper(),
            config_cache_seconds=float(environ.get("IDENTITY_CONFIG_CACHE_SECONDS", cls.config_cache_seconds)),
            http=HttpLimits.from_env(environ),
            smtp=SmtpSettings.from_env(environ),
        )


def _webauthn_host(host: str) -> str:
    """WebAuthn refuses IP addresses as RP ids and origins: a loopback address becomes ``localhost``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return "localhost" if address.is_loopback else host


def _pem_certificates(path: str | None) -> tuple[bytes, ...]:
    """The PEM certificates of a bundle file, each as its own bytes (py_webauthn takes a list)."""
    if not path:
        return ()
    text = Path(path).read_text()
    end = "-----END CERTIFICATE-----"
    blocks = [block + end + "\n" for block in text.split(end) if "-----BEGIN CERTIFICATE-----" in block]
    if not blocks:
        raise ValueError("IDENTITY_WEBAUTHN_ATTESTATION_ROOTS names a file without PEM certificates")
    return tuple(block[block.index("-----BEGIN CERTIFICATE-----") :].encode() for block in blocks)


def _load_encryption_keys(environ: Mapping[str, str], *, embedded: bool) -> EncryptionKeys:
    if text := environ.get("IDENTITY_ENCRYPTION_KEYS"):
        return EncryptionKeys.parse(text)
    if path := environ.get("IDENTITY_ENCRYPTION_KEY_FILE"):
        return EncryptionKeys.parse(Path(path).read_text())
    if not embedded:
        raise ValueError(
            "IDENTITY_ENCRYPTION_KEYS or IDENTITY_ENCRYPTION_KEY_FILE must be set when the database is not the "
            "embedded SQLite one: every instance must share the keys that encrypt secrets at rest"
        )
    if DEFAULT_KEY_FILE.exists():
        return EncryptionKeys.parse(DEFAULT_KEY_FILE.read_text())
    keys = EncryptionKeys.generate()
    DEFAULT_KEY_FILE.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(DEFAULT_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(keys.dump())
    return keys


# --- hardening (issue 12) ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpLimits:
    """How long and how large a request may be before the HTTP layer refuses it (see the module docstring)."""

    header_timeout: float = 10.0
    body_timeout: float = 20.0
    max_header_bytes: int = 32 * 1024

    def __post_init__(self) -> None:
        if self.header_timeout <= 0 or self.body_timeout <= 0 or self.max_header_bytes < 1024:
            raise ValueError(
                "IDENTITY_HTTP_HEADER_TIMEOUT and IDENTITY_HTTP_BODY_TIMEOUT must be positive and "
                "IDENTITY_HTTP_MAX_HEADER_BYTES at least 1024"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> HttpLimits:
        """Read the ``IDENTITY_HTTP_*`` variables."""
        try:
            return cls(
                header_timeout=float(environ.get("IDENTITY_HTTP_HEADER_TIMEOUT", cls.header_timeout)),
                body_timeout=float(environ.get("IDENTITY_HTTP_BODY_TIMEOUT", cls.body_timeout)),
                max_header_bytes=int(environ.get("IDENTITY_HTTP_MAX_HEADER_BYTES", cls.max_header_bytes)),
            )
        except ValueError as exc:
            if "IDENTITY_" in str(exc):
                raise
            raise ValueError(f"an IDENTITY_HTTP_* setting is not a number: {exc}") from None


# --- email one-time codes (issue 15) -------------------------------------------------------------------------------

SmtpSecurity = Literal["starttls", "tls", "none"]
_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
_SMTP_QUERY = ("starttls", "timeout", "cafile")
# One address, no display name, nothing that could end a header or name a second recipient.
_ADDRESS = re.compile(r"[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\.]+")


def mailbox_address(text: str) -> str | None:
    """The address in ``text`` (``login@example.com`` or ``Name <login@example.com>``), else ``None``.

    Exactly one address, and nothing that could end a mail header or name a second recipient: used for
    ``IDENTITY_SMTP_FROM`` here and for recipients by `identity.mail`.
    """
    if any(char in text for char in "\r\n\0"):
        return None
    pairs = getaddresses([text])
    return pairs[0][1] if len(pairs) == 1 and _ADDRESS.fullmatch(pairs[0][1]) else None


@dataclass(frozen=True)
class SmtpSettings:
    """The mail server that sends emailed one-time codes, from ``IDENTITY_SMTP_URL`` and ``IDENTITY_SMTP_FROM``.

    Error messages about the URL never quote it: it may carry the password, whole or, when a ``/``, ``?`` or ``#``
    in it was not percent-encoded, cut into pieces that land in the host, path or query.
    """

    host: str
    sender: str
    """The ``From`` header: ``login@example.com`` or ``Example Login <login@example.com>``."""
    port: int = 25
    security: SmtpSecurity = "none"
    username: str | None = None
    """Log in (``AUTH``) as this user; ``None``: send without logging in."""
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    """Seconds one message may take, from waiting for a free connection to the server's last reply."""
    cafile: str | None = None
    """A PEM file of CA certificates trusted instead of the system's (a private CA); ``None``: the system's."""

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("IDENTITY_SMTP_URL must name the mail server's host")
        if not 0 < self.port < 65536:
            raise ValueError("IDENTITY_SMTP_URL's port must be between 1 and 65535")
        if self.security not in ("starttls", "tls", "none"):
            raise ValueError("the SMTP security must be starttls, tls or none")
        if self.username is not None and self.security == "none":
            raise ValueError("IDENTITY_SMTP_URL would send a password without TLS: use smtps:// or add ?starttls=true")
        if not 0 < self.timeout <= 300:
            raise ValueError("IDENTITY_SMTP_URL's timeout must be between 0 and 300 seconds")
        if self.cafile is not None and not Path(self.cafile).is_file():
            raise ValueError(f"IDENTITY_SMTP_URL's cafile {self.cafile} is not a file")
        if self.sender_address is None:
            raise ValueError("IDENTITY_SMTP_FROM must be an address, login@example.com or Name <login@example.com>")

    @property
    def sender_address(self) -> str | None:
        """The address of `sender`, the SMTP envelope's ``MAIL FROM`` (``None`` only while validating)."""
        return mailbox_address(self.sender)

    @classmethod
    def parse(cls, url: str, sender: str) -> SmtpSettings:
        """Read ``smtp[s]://[user[:password]@]host[:port][?starttls=true&timeout=10&cafile=/path.pem]``."""
        parts = urlsplit(url.strip())
        if parts.scheme not in _DEFAULT_PORTS:
            raise ValueError("IDENTITY_SMTP_URL must start with smtp:// or smtps://")
        if parts.path not in ("", "/") or parts.fragment:
            raise ValueError(
                "IDENTITY_SMTP_URL has a path or fragment: a / or # in the password must be written %2F or %23"
            )
        try:
            query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
            port = parts.port
        except ValueError:
            raise ValueError(
                "IDENTITY_SMTP_URL's port or query is malformed (is a character of the password not percent-encoded?)"
            ) from None
        options = dict(query)
        if len(options) != len(query) or not set(options) <= set(_SMTP_QUERY):
            raise ValueError(f"IDENTITY_SMTP_URL accepts the query parameters {', '.join(_SMTP_QUERY)}, each once")
        starttls = options.get("starttls", "false").lower()
        if starttls not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError("IDENTITY_SMTP_URL's starttls must be true or false")
        security: SmtpSecurity = "tls" if parts.scheme == "smtps" else "none"
        if starttls in ("true", "1", "yes"):
            if security == "tls":
                raise ValueError("smtps:// is TLS from the start: starttls=true applies to smtp:// only")
            security = "starttls"
        try:
            timeout = float(options.get("timeout", cls.timeout))
        except ValueError:
            raise ValueError("IDENTITY_SMTP_URL's timeout must be a number of seconds") from None
        return cls(
            host=parts.hostname or "",
            port=_DEFAULT_PORTS[parts.scheme] if port is None else port,
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            sender=sender.strip(),
            timeout=timeout,
            cafile=options.get("cafile") or None,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SmtpSettings | None:
        """Read ``IDENTITY_SMTP_URL`` and ``IDENTITY_SMTP_FROM``; ``None`` when no mail server is configured."""
        url = environ.get("IDENTITY_SMTP_URL", "").strip()
        sender = environ.get("IDENTITY_SMTP_FROM", "").strip()
        if not url:
            if sender:
                raise ValueError("IDENTITY_SMTP_FROM is set but IDENTITY_SMTP_URL is not")
            return None
        if not sender:
            raise ValueError("IDENTITY_SMTP_FROM is required with IDENTITY_SMTP_URL: the address codes are sent from")
        return cls.parse(url, sender)
