"""In-memory fakes for the first-party apps engine: the session and code store, the MFA service, the factor menu,
the refresh-token store and a user lookup, in the style of ``fakes.py``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from identity.clock import FrozenClock
from identity.crypto import sha256_hex
from identity.oauth2.first_party import (
    CODE_LIFETIME,
    SESSION_LIFETIME,
    AuthSession,
    CodeDelivery,
    Delivery,
    IssuedCode,
)
from identity.oauth2.interfaces import (
    FactorCheck,
    GrantResult,
    MfaTransaction,
    RefreshTokenPolicy,
    StoredRefreshToken,
    User,
    WebAuthnOutcome,
)

MFA_TOKEN_LIFETIME = 600


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class _Row:
    record: AuthSession | IssuedCode
    user: User


class FakeFirstParty:
    """`AuthSessionStore` and `AuthorizationCodeStore` over dicts keyed by SHA-256 (as the real store keeps them)."""

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock
        self.sessions: dict[str, AuthSession] = {}
        self.codes: dict[str, IssuedCode] = {}
        self.families: dict[int, str] = {}
        self._next = 1

    def _id(self) -> int:
        self._next += 1
        return self._next

    def burn(self, session_id: int) -> bool:
        """What the factor services do to a session's pending step (conditional: once)."""
        for key, session in self.sessions.items():
            if session.id == session_id and session.pending:
                self.sessions[key] = replace(session, pending=False)
                return True
        return False

    def session_by_id(self, session_id: int) -> AuthSession:
        return next(s for s in self.sessions.values() if s.id == session_id)

    async def start(
        self, result: GrantResult, *, code_challenge: str, pending: bool, auth_time: float
    ) -> tuple[str, AuthSession]:
        token, now = secrets.token_urlsafe(32), self.clock.now()
        session = AuthSession(
            id=self._id(),
            client_id=result.client.client_id,
            user_id=result.user.user_id,
            connection=result.connection.name,
            audience=result.audience,
            scopes=result.scopes,
            amr=result.amr,
            code_challenge=code_challenge,
            pending=pending,
            created_at=now,
            expires_at=now + MFA_TOKEN_LIFETIME,
            access_claims=result.access_claims,
            id_claims=result.id_claims,
            app_metadata=result.app_metadata,
        )
        self.sessions[sha256_hex(token)] = session
        return token, session

    async def find(self, auth_session: str) -> AuthSession | None:
        return self.sessions.get(sha256_hex(auth_session))

    async def restart(self, session: AuthSession, result: GrantResult, *, code_challenge: str) -> AuthSession:
        key = next(k for k, s in self.sessions.items() if s.id == session.id)
        restarted = replace(
            self.sessions[key],
            audience=result.audience,
            scopes=result.scopes,
            access_claims=result.access_claims,
            code_challenge=code_challenge,
            pending=True,
        )
        self.sessions[key] = restarted
        return restarted

    async def issue_code(self, session: AuthSession, *, amr: tuple[str, ...], acr: str | None, auth_time: float) -> str:
        code, now = secrets.token_urlsafe(32), self.clock.now()
        self.codes[sha256_hex(code)] = IssuedCode(
            id=self._id(),
            client_id=session.client_id,
            user_id=session.user_id,
            connection=session.connection,
            audience=session.audience,
            scopes=session.scopes,
            amr=amr,
            acr=acr,
            auth_time=auth_time,
            code_challenge=session.code_challenge or "",
            expires_at=now + CODE_LIFETIME,
            consumed=False,
            access_claims=session.access_claims,
        )
        key = next(k for k, s in self.sessions.items() if s.id == session.id)
        self.sessions[key] = replace(self.sessions[key], expires_at=session.created_at + SESSION_LIFETIME)
        return code

    async def find_code(self, code: str) -> IssuedCode | None:
        found = self.codes.get(sha256_hex(code))
        if found is not None and found.id in self.families:
            found = replace(found, family_id=self.families[found.id])
        return found

    async def redeem(self, code: IssuedCode) -> bool:
        await asyncio.sleep(0)  # let concurrent redemptions interleave, as requests do
        key = next(k for k, c in self.codes.items() if c.id == code.id)
        if self.codes[key].consumed:
            return False
        self.codes[key] = replace(self.codes[key], consumed=True)
        return True

    async def remember_family(self, code: IssuedCode, family_id: str) -> None:
        self.families[code.id] = family_id


class FakeMfa:
    """`MfaService`: each user's one valid OTP and recovery code; a bucket of attempts; burns through the store."""

    def __init__(self, store: FakeFirstParty, *, policy: str = "if-enrolled") -> None:
        self.store = store
        self.policy = policy
        self.otps: dict[str, str] = {}
        self.recovery_codes: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.checked: list[tuple[int, str]] = []
        self.emailed: dict[tuple[int, str], str] = {}
        """The emailed code of each (session row, auth_session): the last one sent (`FakeFactors` sends them)."""

    def enroll(self, user: User, otp: str = "123456", recovery_code: str = "RECOVERY-CODE-0001") -> None:
        self.otps[user.user_id] = otp
        self.recovery_codes[user.user_id] = recovery_code

    async def required(self, user: User, *, forced: bool) -> bool:
        if forced or self.policy == "always":
            return True
        return self.policy == "if-enrolled" and user.user_id in self.otps

    async def start(self, result: GrantResult) -> str:
        raise AssertionError("the challenge endpoint makes no mfa_token")

    async def find(self, mfa_token: str) -> MfaTransaction | None:
        raise AssertionError("the challenge endpoint finds no mfa_token")

    def _take(self, user_id: str) -> bool:
        left = self.attempts.get(user_id, 10)
        if left < 1:
            return False
        self.attempts[user_id] = left - 1
        return True

    async def check_otp(self, transaction: MfaTransaction, otp: str) -> FactorCheck:
        self.checked.append((transaction.id, otp))
        if not self._take(transaction.user_id):
            return FactorCheck.RATE_LIMITED
        if self.otps.get(transaction.user_id) != otp:
            return FactorCheck.INVALID
        self.attempts[transaction.user_id] += 1
        return FactorCheck.ACCEPTED if self.store.burn(transaction.id) else FactorCheck.TOKEN_USED

    async def check_oob(
        self, transaction: MfaTransaction, oob_code: str | None, binding_code: str, *, session_key: str | None = None
    ) -> FactorCheck:
        sent = self.emailed.get((transaction.id, session_key or ""))
        if oob_code is not None or sent is None:
            return FactorCheck.UNKNOWN_CODE
        if not self._take(transaction.user_id):
            return FactorCheck.RATE_LIMITED
        if binding_code != sent:
            return FactorCheck.INVALID
        del self.emailed[(transaction.id, session_key or "")]
        return FactorCheck.ACCEPTED if self.store.burn(transaction.id) else FactorCheck.TOKEN_USED

    async def redeem_recovery_code(self, transaction: MfaTransaction, code: str) -> tuple[FactorCheck, str | None]:
        if not self._take(transaction.user_id):
            return FactorCheck.RATE_LIMITED, None
        if self.recovery_codes.get(transaction.user_id) != code or not self.store.burn(transaction.id):
            return FactorCheck.INVALID, None
        self.recovery_codes[transaction.user_id] = "RECOVERY-CODE-0002"
        return FactorCheck.ACCEPTED, "RECOVERY-CODE-0002"

    async def user(self, transaction: MfaTransaction) -> User | None:
        return None


class FakeWebAuthn:
    """`WebAuthnFactor`: an assertion is good when its ``clientDataJSON`` is ``"good"``."""

    def __init__(self, store: FakeFirstParty) -> None:
        self.store = store

    async def confirm_enrollment(self, transaction: MfaTransaction, credential: Mapping[str, Any]) -> WebAuthnOutcome:
        raise AssertionError("not here")

    async def check_assertion(self, transaction: MfaTransaction, credential: Mapping[str, Any]) -> WebAuthnOutcome:
        if credential["response"]["clientDataJSON"] != "good":
            return WebAuthnOutcome(FactorCheck.INVALID)
        if not self.store.burn(transaction.id):
            return WebAuthnOutcome(FactorCheck.TOKEN_USED)
        return WebAuthnOutcome(FactorCheck.ACCEPTED, authenticator_id="webauthn|dev_1", hardware=True)

    async def passkey(self, client_id: str, auth_session: str | None, credential: Mapping[str, Any]) -> WebAuthnOutcome:
        raise AssertionError("not here")


@dataclass
class FakeFactors:
    """`SecondFactors`: the methods each user has; WebAuthn options that name the session they are bound to; emails
    that "arrive" in `sent` (the code is remembered by `FakeMfa`), or fail as `delivery` says."""

    mfa: FakeMfa
    methods_of: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sent: list[tuple[int, str]] = field(default_factory=list)
    """(session row, code) of each email sent."""
    delivery: Delivery = Delivery.SENT

    async def methods(self, user_id: str) -> tuple[str, ...]:
        return self.methods_of.get(user_id, ())

    async def webauthn_options(self, session: AuthSession) -> Mapping[str, Any]:
        return {"challenge": f"for-session-{session.id}", "allowCredentials": []}

    async def send_email_code(self, session: AuthSession, auth_session: str) -> CodeDelivery:
        if self.delivery is not Delivery.SENT:
            return CodeDelivery(self.delivery, retry_after=3600 if self.delivery is Delivery.LIMITED else None)
        code = f"{len(self.sent) + 100_000:06d}"
        self.mfa.emailed[(session.id, auth_session)] = code
        self.sent.append((session.id, code))
        return CodeDelivery(Delivery.SENT, to="a***@example.test")


class FakeLookup:
    """`UserLookup` over the users the test names."""

    def __init__(self, *users: User) -> None:
        self.users = {user.user_id: user for user in users}

    async def by_id(self, user_id: str) -> User | None:
        return self.users.get(user_id)


class FakeRefreshTokens:
    """The `RefreshTokenStore` parts the authorization_code grant uses."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.revoked: list[tuple[str, str]] = []

    async def issue(self, result: GrantResult) -> str:
        token = f"rt-{len(self.tokens)}"
        self.tokens[token] = f"family-{len(self.tokens)}"
        return token

    async def find(self, token: str) -> StoredRefreshToken | None:
        family = self.tokens.get(token)
        if family is None:
            return None
        return StoredRefreshToken(
            id=1, family_id=family, client_id="app", user_id="u", connection="customers", audience=None, scopes=(),
            amr=(), access_claims={}, id_claims={}, expires_at=None, idle_expires_at=None, used_at=None,
            revoked=False, newest=True,
        )  # fmt: skip

    async def rotate(self, stored: StoredRefreshToken, policy: RefreshTokenPolicy) -> str | None:
        raise AssertionError("not here")

    async def successor_within_leeway(self, stored: StoredRefreshToken, policy: RefreshTokenPolicy) -> str | None:
        raise AssertionError("not here")

    async def touch(self, stored: StoredRefreshToken, policy: RefreshTokenPolicy) -> None:
        raise AssertionError("not here")

    async def revoke_family(self, family_id: str, reason: str) -> None:
        self.revoked.append((family_id, reason))
