"""SQLModel tables. Persistence only: no behaviour beyond column definitions.

Secrets are never stored in clear: client secrets as SHA-256 (they are long and random), passwords as Argon2id, private
signing keys sealed with AES-GCM (``identity.crypto``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from identity import tenant_defaults as defaults

__all__ = [
    "ApiRow",
    "AttackCounterRow",
    "AuthenticatorRow",
    "ClientConnectionRow",
    "ClientGrantRow",
    "ClientRow",
    "ConnectionRow",
    "LogEventRow",
    "MfaAttemptRow",
    "MfaTransactionRow",
    "RecoveryCodeRow",
    "RefreshTokenRow",
    "RuleRow",
    "SigningKeyRow",
    "TenantRow",
    "UTCDateTime",
    "UserRow",
    "UserinfoClaimsRow",
    "WebAuthnChallengeRow",
    "WebAuthnCredentialRow",
    "WebAuthnUserRow",
    "WebSessionRow",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that is always UTC-aware in Python, whatever the database keeps (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return UTC-aware datetimes."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_type=sa.JSON, nullable=False)


class TenantRow(SQLModel, table=True):
    """The tenant's settings: a single row with ``id = 1``."""

    __tablename__ = "tenant"

    id: int = Field(default=1, primary_key=True)
    friendly_name: str = Field(default=defaults.FRIENDLY_NAME, max_length=255)
    default_directory: str | None = Field(default=None, max_length=128)
    default_audience: str | None = Field(default=None, max_length=600)
    mfa_policy: str = Field(default=defaults.MFA_POLICY, max_length=16)
    """``never``, ``if-enrolled`` (MFA exactly when the user has an active factor) or ``always``."""
    mfa_token_lifetime: int = Field(default=defaults.MFA_TOKEN_LIFETIME)
    brute_force_max_attempts: int = Field(default=defaults.BRUTE_FORCE_MAX_ATTEMPTS)
    """Consecutive failed logins for one identifier from one IP before that pair is blocked (Auth0: 10)."""
    brute_force_block_seconds: int = Field(default=defaults.BRUTE_FORCE_BLOCK_SECONDS)
    """How long a count (and a block) lasts after the last failure."""
    webauthn_user_verification: str = Field(default=defaults.WEBAUTHN_USER_VERIFICATION, max_length=16)
    """WebAuthn user verification: ``required`` (refuse assertions without UV), ``preferred`` or ``discouraged``."""
    webauthn_attestation: str = Field(default=defaults.WEBAUTHN_ATTESTATION, max_length=16)
    """The attestation asked at registration: ``none`` (default), ``indirect`` or ``direct``."""
    brute_force_enabled: bool = Field(default=defaults.BRUTE_FORCE_ENABLED)
    brute_force_mode: str = Field(default=defaults.BRUTE_FORCE_MODE, max_length=32)
    """Auth0's modes: ``count_per_identifier_and_ip``, or ``count_per_identifier`` (account lockout, growing waits)."""
    brute_force_allowlist: list[str] = _json(list)
    """Addresses and CIDRs never counted or blocked by brute-force protection."""
    suspicious_ip_throttling: dict[str, Any] = _json(dict)
    """Auth0's ``suspicious_ip_throttling`` object (``enabled``, ``allowlist``, ``stage.pre-login``); missing keys
    take Auth0's defaults (`identity.tenant_defaults`)."""
    password_min_length: int | None = Field(default=None)
    """NIST SP 800-63B: 15 when the password is the only factor, 8 with MFA; ``None`` picks by ``mfa_policy``."""
    breached_password_detection: dict[str, Any] = _json(dict)
    """Auth0's ``breached_password_detection`` object (``enabled``, default off; ``shields``, ``method``): a correct
    password found in the breached-password lists is refused at login with ``password_leaked`` (API.md §4.6)."""
    updated_at: datetime = _created()


class ConnectionRow(SQLModel, table=True):
    """A user directory (realm). Names are exact and unique."""

    __tablename__ = "connection"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True)
    strategy: str = Field(default=defaults.CONNECTION_STRATEGY, max_length=32)
    created_at: datetime = _created()


class ApiRow(SQLModel, table=True):
    """A resource server; ``identifier`` is the audience of its tokens."""

    __tablename__ = "api"

    id: int | None = Field(default=None, primary_key=True)
    identifier: str = Field(max_length=600, unique=True)
    name: str = Field(max_length=255)
    scopes: list[str] = _json(list)
    signing_alg: str = Field(default=defaults.API_SIGNING_ALG, max_length=16)
    token_lifetime: int = Field(default=defaults.API_TOKEN_LIFETIME)
    allow_offline_access: bool = Field(default=defaults.API_ALLOW_OFFLINE_ACCESS)
    created_at: datetime = _created()


class ClientRow(SQLModel, table=True):
    """An application. ``secret_hash`` is the SHA-256 of its secret, or NULL for a public client."""

    __tablename__ = "client"

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(max_length=128, unique=True)
    name: str = Field(max_length=255)
    secret_hash: str | None = Field(default=None, max_length=64)
    token_endpoint_auth_method: str = Field(default=defaults.CLIENT_AUTH_METHOD, max_length=32)
    grant_types: list[str] = _json(list)
    client_metadata: dict[str, str] = _json(dict)
    refresh_token: dict[str, Any] = _json(dict)
    """Auth0's ``refresh_token`` settings object; missing keys take the defaults."""
    is_token_endpoint_ip_header_trusted: bool = Field(default=defaults.CLIENT_IP_HEADER_TRUSTED)
    """A confidential client whose ``auth0-forwarded-for`` header names the end user's address (API.md §4.4)."""
    created_at: datetime = _created()


class ClientConnectionRow(SQLModel, table=True):
    """A connection enabled for a client."""

    __tablename__ = "client_connection"

    client_pk: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("client.id", ondelete="CASCADE"), primary_key=True)
    )
    connection_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("connection.id", ondelete="CASCADE"), primary_key=True)
    )


class UserRow(SQLModel, table=True):
    """A user of one directory. The same email may exist in two directories as two users."""

    __tablename__ = "users"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "email_key", name="uq_users_connection_email"),
        sa.UniqueConstraint("connection_id", "username_key", name="uq_users_connection_username"),
        # The Management API lists users by creation (its default order): pages without sorting the table.
        sa.Index("ix_users_created_at_id", "created_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(max_length=64, unique=True)
    connection_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("connection.id", ondelete="RESTRICT"), nullable=False)
    )
    email: str | None = Field(default=None, max_length=320)
    email_key: str | None = Field(default=None, max_length=320)
    """Lower-cased email, for case-insensitive lookup and uniqueness."""
    username: str | None = Field(default=None, max_length=128)
    username_key: str | None = Field(default=None, max_length=128)
    password_hash: str = Field(max_length=255)
    email_verified: bool = Field(default=False)
    blocked: bool = Field(default=False)
    name: str | None = Field(default=None, max_length=255)
    given_name: str | None = Field(default=None, max_length=150)
    family_name: str | None = Field(default=None, max_length=150)
    nickname: str | None = Field(default=None, max_length=255)
    picture: str | None = Field(default=None, max_length=2048)
    app_metadata: dict[str, Any] = _json(dict)
    user_metadata: dict[str, Any] = _json(dict)
    logins_count: int = Field(default=0)
    last_login: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class SigningKeyRow(SQLModel, table=True):
    """A token signing key. The private part is sealed; ``active_slot`` (= alg) is set on the one key in use."""

    __tablename__ = "signing_key"

    kid: str = Field(primary_key=True, max_length=64)
    alg: str = Field(max_length=16)
    private_key: str = Field(sa_type=sa.Text)
    """PKCS#8 PEM, sealed by `identity.crypto.SecretBox`."""
    public_jwk: dict[str, Any] = _json(dict)
    status: str = Field(default="active", max_length=16)
    """``next`` (published, not signing yet), ``active`` (signs), ``previous`` (published until ``retire_at``),
    ``retired`` (unpublished), ``revoked`` (unpublished and refused at once). See `identity.tokens.rotation`."""
    active_slot: str | None = Field(default=None, max_length=16, unique=True)
    """Equal to ``alg`` for the active key of that algorithm, NULL otherwise: at most one active key per alg."""
    created_at: datetime = _created()
    next_slot: str | None = Field(default=None, max_length=16, unique=True)
    """Equal to ``alg`` for the next key of that algorithm, NULL otherwise: at most one next key per alg."""
    activated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    rotated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When it stopped signing (became ``previous``)."""
    retire_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When every token it signed has expired: it is unpublished from then on."""
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


def _user_fk(*, primary_key: bool = False, unique: bool = False) -> Any:
    return Field(
        sa_column=sa.Column(
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
            primary_key=primary_key,
            unique=unique,
            index=not primary_key and not unique,
        )
    )


class AuthenticatorRow(SQLModel, table=True):
    """An enrolled (``active``) or pending second factor: ``kind`` ``totp``, ``webauthn`` or ``email``.

    ``secret`` is sealed: an app's TOTP secret, an email factor's address (a security key keeps none here).
    """

    __tablename__ = "authenticator"

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(max_length=64, unique=True)
    """``totp|dev_<random>``, the id the MFA API shows."""
    user_pk: int = _user_fk()
    kind: str = Field(default="totp", max_length=16)
    secret: str = Field(sa_type=sa.Text)
    """The TOTP secret (base32), sealed by `identity.crypto.SecretBox`."""
    active: bool = Field(default=False)
    last_step: int | None = Field(default=None, sa_type=sa.BigInteger)
    """The last accepted TOTP time step: a code is accepted only for a later step (no replay)."""
    created_at: datetime = _created()
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RecoveryCodeRow(SQLModel, table=True):
    """The user's one recovery code, as a SHA-256 hash. ``active`` once the first factor is confirmed."""

    __tablename__ = "recovery_code"

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(max_length=64, unique=True)
    user_pk: int = _user_fk(unique=True)
    code_hash: str = Field(max_length=64)
    active: bool = Field(default=False)
    created_at: datetime = _created()


class MfaTransactionRow(SQLModel, table=True):
    """A login paused at ``mfa_required``: what the ``mfa_token`` (stored as SHA-256) stands for.

    The first-party apps endpoint keeps its ``auth_session`` and authorization codes here too (``kind``), each
    stored as the SHA-256 of its value (`identity.store.first_party`).
    """

    __tablename__ = "mfa_transaction"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    client_id: str = Field(max_length=128)
    user_pk: int = _user_fk()
    connection: str = Field(max_length=128)
    grant_type: str = Field(max_length=128)
    audience: str | None = Field(default=None, max_length=600)
    scopes: list[str] = _json(list)
    access_claims: dict[str, Any] = _json(dict)
    id_claims: dict[str, Any] = _json(dict)
    created_at: datetime = _created()
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    consumed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    app_metadata: dict[str, Any] = Field(
        default_factory=dict, sa_type=sa.JSON, nullable=False, sa_column_kwargs={"server_default": "{}"}
    )
    """``app_metadata`` keys rules set during the password step: saved only when the second factor completes."""
    amr: list[str] = _json(list)
    """The first factor's methods (empty: ``pwd``); ``swk``/``hwk`` after a passkey (issue 14)."""
    first_factor: str | None = Field(default=None, max_length=64)
    """The authenticator id of a passkey first factor, which cannot also be the second (issue 14)."""
    # --- first-party apps (issue 15): the same store keeps auth_sessions and the codes they yield ----------------
    kind: str = Field(default="mfa_token", max_length=24, sa_column_kwargs={"server_default": "mfa_token"})
    """``mfa_token``; ``auth_session`` (``consumed_at`` set: no step pending) or ``authorization_code``."""
    code_challenge: str | None = Field(default=None, max_length=64)
    """PKCE S256 challenge the (pending) authorization's code is bound to."""
    acr: str | None = Field(default=None, max_length=255)
    """A code's authentication context class (the multi-factor PAPE policy after a second factor)."""
    auth_time: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When the user last proved a factor (a session), or the ``auth_time`` a code's tokens carry."""
    family_id: str | None = Field(default=None, max_length=64)
    """A redeemed code's refresh-token family, revoked if the code is presented again (RFC 6749 §4.1.2)."""


class MfaAttemptRow(SQLModel, table=True):
    """A user's bucket of failed second-factor attempts: ``tokens`` as of ``updated_at`` (epoch seconds)."""

    __tablename__ = "mfa_attempt"

    user_pk: int = _user_fk(primary_key=True)
    tokens: float = Field(default=10.0)
    updated_at: float = Field(default=0.0)
    version: int = Field(default=0)
    """Bumped on every change: updates are compare-and-set on it, so concurrent failures each cost a token."""


class RuleRow(SQLModel, table=True):
    """An operator rule, in pipeline order (``position``), as the tenant file lists it."""

    __tablename__ = "rule"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True)
    handler: str = Field(max_length=255)
    """``module:function``, importable by every instance."""
    enabled: bool = Field(default=defaults.RULE_ENABLED)
    position: int = Field(default=0)
    timeout_seconds: float = Field(default=defaults.RULE_TIMEOUT_SECONDS)
    config: dict[str, Any] = _json(dict)


class WebSessionRow(SQLModel, table=True):
    """A session of the enrollment pages (`identity.web.enroll.sessions`), shared by every instance on the database."""

    __tablename__ = "web_session"

    key_hash: str = Field(primary_key=True, max_length=64)
    """SHA-256 (hex) of the session id: the cookie's value itself is never stored."""
    data: bytes = Field(sa_type=sa.LargeBinary, nullable=False)
    """The serialised session (who signed in, when, and whether the second factor passed; no secrets)."""
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    """Idle expiry, pushed forward on every request; NULL never expires (unused by the pages)."""
    user_id: str | None = Field(default=None, max_length=64, index=True)
    """The signed-in user's public id, so that a password change or an MFA reset can end their sessions."""


class RefreshTokenRow(SQLModel, table=True):
    """One refresh token of a family. Only the SHA-256 of the token is kept; the successor is sealed for leeway."""

    __tablename__ = "refresh_token"
    __table_args__ = (sa.Index("ix_refresh_token_user_client", "user_pk", "client_id"),)

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    family_id: str = Field(max_length=64, index=True)
    parent_id: int | None = Field(default=None)
    client_id: str = Field(max_length=128)
    user_pk: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False))
    connection: str = Field(max_length=128)
    audience: str | None = Field(default=None, max_length=600)
    scopes: list[str] = _json(list)
    amr: list[str] = _json(list)
    access_claims: dict[str, Any] = _json(dict)
    id_claims: dict[str, Any] = _json(dict)
    created_at: datetime = _created()
    auth_time: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When the user proved the factors in ``amr``, at the family's start (copied to every token of it); ``NULL``
    on families older than the column, which fall back to the family's first ``created_at``."""
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """Absolute expiry of the family (copied to every token of it)."""
    idle_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When this token was exchanged for its successor (rotation)."""
    successor: str | None = Field(default=None, sa_type=sa.Text)
    """The successor token, sealed: handed out again to a retry within the client's leeway."""
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_reason: str | None = Field(default=None, max_length=32)


class UserinfoClaimsRow(SQLModel, table=True):
    """Namespaced ID-token claims rules added, kept per access token (``jti``) so ``/userinfo`` can return them."""

    __tablename__ = "userinfo_claims"

    jti: str = Field(primary_key=True, max_length=64)
    user_pk: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False))
    claims: dict[str, Any] = _json(dict)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)


# --- Attack protection and the audit log (issue 11) -------------------------------------------------------------


class AttackCounterRow(SQLModel, table=True):
    """One attack-protection counter (API.md §4): failed logins reserved before the password hash is computed.

    ``kind`` is ``identifier_ip`` (brute-force protection: one identifier from one IP), ``identifier`` (account
    lockout mode: one identifier from every IP) or ``ip`` (suspicious-IP throttling: one address, every account).
    The identifier is kept only as ``identifier_hash`` (SHA-256 of directory and normalised identifier), so a block is
    found by identifier without storing it; the address is the grouped one (IPv6 by /64), as Auth0's user blocks show.
    Times are epoch seconds so that "expired" is plain arithmetic in one conditional UPDATE on every database.
    """

    __tablename__ = "attack_counter"

    key_hash: str = Field(primary_key=True, max_length=64)
    """SHA-256 of (kind, identifier hash, address): the row a reservation updates."""
    kind: str = Field(max_length=16)
    identifier_hash: str | None = Field(default=None, max_length=64, index=True)
    connection: str | None = Field(default=None, max_length=128)
    ip: str | None = Field(default=None, max_length=64)
    count: float = Field(default=0.0)
    """Failures counted (brute force), or tokens spent (the IP bucket)."""
    updated_at: float = Field(default=0.0, index=True)
    """When the count last grew (epoch seconds)."""
    wait: float = Field(default=900.0)
    """Brute force: seconds a count (and a block) lasts after ``updated_at``. IP bucket: seconds per token."""


class LogEventRow(SQLModel, table=True):
    """An audit-log event, with the fields of Auth0's log events (API.md §6). Never a password, code or token."""

    __tablename__ = "log_event"
    __table_args__ = (sa.Index("ix_log_event_user_date", "user_id", "date"),)

    id: int | None = Field(default=None, primary_key=True)
    log_id: str = Field(max_length=64, unique=True)
    date: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    type: str = Field(max_length=40, index=True)
    description: str | None = Field(default=None, max_length=255)
    client_id: str | None = Field(default=None, max_length=128)
    client_name: str | None = Field(default=None, max_length=255)
    ip: str | None = Field(default=None, max_length=64, index=True)
    client_ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=512)
    user_id: str | None = Field(default=None, max_length=64)
    user_name: str | None = Field(default=None, max_length=320)
    connection: str | None = Field(default=None, max_length=128)
    connection_id: str | None = Field(default=None, max_length=64)
    strategy: str | None = Field(default=None, max_length=32)
    strategy_type: str | None = Field(default=None, max_length=32)
    audience: str | None = Field(default=None, max_length=600)
    scope: str | None = Field(default=None, sa_type=sa.Text)
    hostname: str | None = Field(default=None, max_length=255)
    details: dict[str, Any] = _json(dict)


# --- hardening (issue 12) ------------------------------------------------------------------------------------------


class UnpersistedRow(RuntimeError):
    """A row used as stored has no primary key: a bug, reported as one (never an ``assert``, which ``-O`` strips)."""


def row_id(row: Any) -> int:
    """The primary key of a stored row."""
    if getattr(row, "id", None) is None:
        raise UnpersistedRow(f"{type(row).__name__} has no id: it was never stored")
    return int(row.id)


# --- Management API (issue 16) ------------------------------------------------------------------------------------


class ClientGrantRow(SQLModel, table=True):
    """A client grant (Auth0 ``POST /client-grants``): the scopes a client may get for one API by client_credentials."""

    __tablename__ = "client_grant"
    __table_args__ = (sa.UniqueConstraint("client_pk", "audience", name="uq_client_grant_client_audience"),)

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(max_length=64, unique=True)
    """``cgr_<random>``, the id the Management API shows."""
    client_pk: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("client.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    audience: str = Field(max_length=600)
    scopes: list[str] = _json(list)
    created_at: datetime = _created()


# --- WebAuthn (issue 14) ----------------------------------------------------------------------------------------


class WebAuthnUserRow(SQLModel, table=True):
    """The user handle of a user: 32 random bytes, never derived from the user's id or email (WebAuthn §14.6.1)."""

    __tablename__ = "webauthn_user"

    user_pk: int = _user_fk(primary_key=True)
    user_handle: bytes = Field(sa_column=sa.Column(sa.LargeBinary(64), nullable=False, unique=True))


class WebAuthnCredentialRow(SQLModel, table=True):
    """A registered security key or passkey. The factor itself is its `AuthenticatorRow` (kind ``webauthn``).

    The public key is stored as the authenticator sent it (COSE): it is not a secret.
    """

    __tablename__ = "webauthn_credential"

    id: int | None = Field(default=None, primary_key=True)
    authenticator_pk: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("authenticator.id", ondelete="CASCADE"), nullable=False, unique=True
        )
    )
    user_pk: int = _user_fk()
    credential_id: bytes = Field(sa_column=sa.Column(sa.LargeBinary(1023), nullable=False, unique=True))
    public_key: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    sign_count: int = Field(default=0, sa_type=sa.BigInteger)
    name: str = Field(max_length=64)
    transports: list[str] = _json(list)
    aaguid: str = Field(default="", max_length=36)
    attestation_format: str = Field(default="none", max_length=32)
    hardware: bool = Field(default=False)
    """The attestation chained to a trusted root and the key is not synced: ``amr`` ``hwk``, else ``swk``."""
    backup_eligible: bool = Field(default=False)
    created_at: datetime = _created()
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OobCodeRow(SQLModel, table=True):
    """One emailed code (issue 15): the ``oob_code`` that names it and the code sent, both as hashes; used once.

    ``binding_hash`` is the SHA-256 of the oob_code and the 6-digit code together: the 256-bit oob_code, never
    stored, keys it, so the table alone gives no way to try the million codes. ``transaction_pk`` binds it to the
    mfa_token (or first-party ``auth_session``) it was sent for; ``authenticator_pk`` to the email factor (a pending
    one is confirmed by its code).
    """

    __tablename__ = "oob_code"

    id: int | None = Field(default=None, primary_key=True)
    oob_hash: str = Field(max_length=64, unique=True)
    binding_hash: str = Field(max_length=64)
    user_pk: int = _user_fk()
    authenticator_pk: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("authenticator.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    transaction_pk: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("mfa_transaction.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    created_at: datetime = _created()
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    consumed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class MfaSendRow(SQLModel, table=True):
    """A user's bucket of emailed codes (issue 15): ``tokens`` as of ``updated_at`` (epoch seconds)."""

    __tablename__ = "mfa_send"

    user_pk: int = _user_fk(primary_key=True)
    tokens: float = Field(default=10.0)
    updated_at: float = Field(default=0.0)
    version: int = Field(default=0)


class WebAuthnChallengeRow(SQLModel, table=True):
    """One WebAuthn ceremony: the challenge (SHA-256) and what it is bound to; used at most once.

    ``purpose`` says which ceremony (``mfa-register``, ``mfa-assert``, ``passkey-assert``, ``passkey-register``,
    ``page-register``, ``page-assert``); ``transaction_pk`` binds it to an mfa_token, ``session_hash`` to an
    ``auth_session`` (stored as SHA-256) or an enrollment-page session.
    """

    __tablename__ = "webauthn_challenge"

    id: int | None = Field(default=None, primary_key=True)
    challenge_hash: str = Field(max_length=64, unique=True)
    purpose: str = Field(max_length=24)
    user_pk: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True),
    )
    transaction_pk: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("mfa_transaction.id", ondelete="CASCADE"), nullable=True, index=True
        ),
    )
    session_hash: str | None = Field(default=None, max_length=64, unique=True)
    client_id: str | None = Field(default=None, max_length=128)
    connection: str | None = Field(default=None, max_length=128)
    user_verification: str = Field(default="preferred", max_length=16)
    created_at: datetime = _created()
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    consumed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# --- perf (issue 10): the tenant configuration's version counter -------------------------------------------------


class ConfigVersionRow(SQLModel, table=True):
    """One row (``id = 1``): bumped by every change of tenant configuration, so each instance's cache reloads."""

    __tablename__ = "config_version"

    id: int = Field(default=1, primary_key=True)
    version: int = Field(default=1, sa_type=sa.BigInteger)
