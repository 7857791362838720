"""WebAuthn endpoints: the MFA API's webauthn parts, Okta's primary-authenticate, Auth0's native passkey API.

``shared/API.md`` §7.1:

    POST /mfa/associate   authenticator_types ["webauthn"]  →  {"authenticator_type":"webauthn","publicKey":{…}}
    POST /mfa/challenge   challenge_type webauthn            →  {"challenge_type":"webauthn","publicKey":{…}}
    POST /oauth/primary-authenticate  challenge_hint=<grant URI>, mfa_token (second factor) or nothing (passkey)
    POST /passkey/challenge   client_id, realm?              →  {"authn_params_public_key":{…},"auth_session":"…"}
    POST /passkey/register    Bearer MFA-API token (enroll)  →  the same with creation options

The answers are completed at ``/oauth/token`` with the mfa-webauthn or webauthn grant
(`identity.oauth2.grants.webauthn`).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from litestar import MediaType, Request, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.attack import ProtectionPolicy, reserve_address
from identity.accounts.errors import AccountError
from identity.accounts.factors import AlreadyEnrolled
from identity.accounts.webauthn import Purpose
from identity.oauth2 import TokenRequest
from identity.oauth2.client_auth import authenticate_client
from identity.oauth2.errors import (
    AccessDenied,
    InvalidRequest,
    InvalidToken,
    UnauthorizedClient,
    UnsupportedChallengeType,
)
from identity.oauth2.grants.mfa import live_mfa_transaction
from identity.oauth2.grants.password import blocked_error
from identity.oauth2.grants.webauthn import MFA_WEBAUTHN, WEBAUTHN
from identity.oauth2.interfaces import Client, LoginBlocked, MfaTransaction
from identity.store import mfa as mfa_queries
from identity.store import users as user_queries
from identity.store.tenant import SqlTenantStore, tenant_settings
from identity.web import openapi
from identity.web.addresses import client_address
from identity.web.bearer import bearer_token, is_jwt, mfa_api_user
from identity.web.deps import Services, build_factors, build_webauthn
from identity.web.errors import NO_STORE
from identity.web.oauth import parse_token_request

__all__ = [
    "associate_webauthn",
    "challenge_webauthn",
    "passkey_challenge",
    "passkey_register",
    "primary_authenticate",
]

_MAX_BODY = 16 * 1024


def _json(body: dict[str, Any]) -> Response[Any]:
    return Response(body, media_type=MediaType.JSON, headers=NO_STORE)


async def _user_pk(db: AsyncSession, user_id: str) -> int:
    found = await user_queries.by_user_id(db, user_id)
    await db.commit()
    if found is None or found[0].id is None:
        raise InvalidRequest("unknown user")
    return found[0].id


async def associate_webauthn(services: Services, db: AsyncSession, transaction: MfaTransaction) -> Response[Any]:
    """``/mfa/associate`` for ``webauthn``: creation options bound to the mfa_token (no active factor yet)."""
    factors = build_factors(services, db)
    if await factors.authenticators.has_active(transaction.user_id):
        raise AccessDenied("User is already enrolled")
    try:
        recovery_code = await factors.recovery.pending(transaction.user_id)
    except AlreadyEnrolled:
        raise AccessDenied("User is already enrolled") from None
    options = await build_webauthn(services, db).registration_options(
        await _user_pk(db, transaction.user_id),
        Purpose.MFA_REGISTER,
        transaction_pk=transaction.id,
        client_id=transaction.client_id,
    )
    answer: dict[str, Any] = {"authenticator_type": "webauthn", "publicKey": options}
    if recovery_code is not None:
        answer["recovery_codes"] = [recovery_code]
    return _json(answer)


async def challenge_webauthn(
    services: Services,
    db: AsyncSession,
    transaction: MfaTransaction,
    *,
    challenge_type: str = "webauthn",
    authenticator_id: str | None = None,
) -> Response[Any]:
    """Request options for the user's keys, bound to the mfa_token (single use, five minutes).

    ``authenticator_id`` (the MFA API's choice of one authenticator): ``allowCredentials`` lists that key alone.
    """
    webauthn = build_webauthn(services, db)
    user_pk = await _user_pk(db, transaction.user_id)
    try:
        options = await webauthn.authentication_options(
            Purpose.MFA_ASSERT,
            user_pk=user_pk,
            transaction_pk=transaction.id,
            client_id=transaction.client_id,
            authenticator_id=authenticator_id,
        )
    except AccountError:
        raise UnsupportedChallengeType("User does not have any authenticator of the requested challenge type") from None
    return _json({"challenge_type": challenge_type, "publicKey": options})


async def has_webauthn(services: Services, db: AsyncSession, user_id: str) -> bool:
    """Whether the user has an enrolled security key or passkey."""
    keys = await build_webauthn(services, db).credentials(await _user_pk(db, user_id))
    await db.commit()
    return bool(keys)


async def _client(
    request: Request[Any, Any, State], services: Services, db: AsyncSession
) -> tuple[TokenRequest, Client]:
    """The request (with the end user's address, as the token endpoint decides it) and its authenticated client."""
    ip = client_address(request, services.settings)
    params = await parse_token_request(request, challenge_realm=services.settings.issuer, client_ip=ip)
    tenant = SqlTenantStore(db, issuer=services.settings.issuer)
    client = await authenticate_client(params, tenant, challenge_realm=services.settings.issuer)
    return params.for_client(client), client


def _allowed(client: Client, grant_type: str) -> None:
    if grant_type not in client.grant_types:
        raise UnauthorizedClient(f"Grant type '{grant_type}' not allowed for the client.")


@post(
    "/oauth/primary-authenticate",
    status_code=200,
    request_max_body_size=_MAX_BODY,
    operation_class=openapi.PRIMARY_AUTHENTICATE,
    tags=["oauth"],
)
async def primary_authenticate(
    request: Request[Any, Any, State], services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """Okta's challenge request: ``challenge_hint`` is the grant the client will complete with."""
    params, client = await _client(request, services, db)
    hint = params.require("challenge_hint")
    # Okta's SDKs send the webauthn hint with an mfa_token for the second factor too: the token decides.
    if hint == MFA_WEBAUTHN or (hint == WEBAUTHN and params.get("mfa_token") is not None):
        _allowed(client, MFA_WEBAUTHN)
        factors = build_factors(services, db)
        transaction = await live_mfa_transaction(
            factors, params.get("mfa_token"), client_id=client.client_id, clock=services.clock
        )
        return await challenge_webauthn(services, db, transaction, challenge_type=MFA_WEBAUTHN)
    if hint == WEBAUTHN:
        _allowed(client, WEBAUTHN)
        ceremony = await _passkey_ceremony(services, db, client, params)
        return _json({"challenge_type": WEBAUTHN, "publicKey": ceremony[0], "auth_session": ceremony[1]})
    raise InvalidRequest(f"challenge_hint must be {MFA_WEBAUTHN} or {WEBAUTHN}")


async def _passkey_ceremony(
    services: Services, db: AsyncSession, client: Client, params: TokenRequest
) -> tuple[dict[str, Any], str]:
    """Request options for a passkey sign-in and their ``auth_session``, paid for with a token of the address's bucket.

    Anyone may ask, and each answer is a stored challenge: so each takes a token of the suspicious-IP bucket that
    failed logins draw from (`identity.accounts.attack.reserve_address`), in the transaction that stores the
    challenge; a successful sign-in gives it back. An empty bucket answers as the password grant does (429).
    """
    realm = params.get("realm")
    if realm is not None:
        connection = await SqlTenantStore(db, issuer=services.settings.issuer).connection(realm)
        if connection is None:
            raise InvalidRequest("the connection was not found")
        if connection.name not in client.connections:
            raise InvalidRequest("the connection was disabled")
    await _purge_expired(services, db)
    policy = ProtectionPolicy.from_tenant(await tenant_settings(db))
    try:
        await reserve_address(db, policy, ip=params.client_ip, now=services.clock.now())
    except LoginBlocked as blocked:
        raise blocked_error(blocked) from None
    auth_session = secrets.token_urlsafe(32)
    options = await build_webauthn(services, db).authentication_options(
        Purpose.PASSKEY_ASSERT, session_binding=auth_session, client_id=client.client_id, connection=realm
    )
    return options, auth_session


async def _purge_expired(services: Services, db: AsyncSession) -> None:
    """Now and then, drop ceremonies that expired over an hour ago (anyone may start one)."""
    if secrets.randbelow(50):
        return
    await mfa_queries.purge_webauthn_challenges(db, datetime.fromtimestamp(services.clock.now() - 3600, UTC))
    await db.commit()


@post(
    "/passkey/challenge",
    status_code=200,
    request_max_body_size=_MAX_BODY,
    operation_class=openapi.PASSKEY_CHALLENGE,
    tags=["passkey"],
)
async def passkey_challenge(
    request: Request[Any, Any, State], services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """Auth0's passkey login challenge: request options for a discoverable credential and an ``auth_session``."""
    params, client = await _client(request, services, db)
    _allowed(client, WEBAUTHN)
    options, auth_session = await _passkey_ceremony(services, db, client, params)
    return _json({"authn_params_public_key": options, "auth_session": auth_session})


@post(
    "/passkey/register",
    status_code=200,
    request_max_body_size=_MAX_BODY,
    operation_class=openapi.PASSKEY_REGISTER,
    tags=["passkey"],
)
async def passkey_register(
    request: Request[Any, Any, State], services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """Registration of a passkey for a user who proved who they are (there is no open signup).

    ``Authorization: Bearer`` an MFA-API access token with the ``enroll`` scope (obtained after a second factor),
    issued to the client the request names: the ceremony is that client's, and it ends in that client's tokens, so a
    token of another client (or for another API, or without ``enroll``) registers nothing.
    """
    token = bearer_token(request)
    if not is_jwt(token):
        raise InvalidToken("an access token for the MFA API with the enroll scope is required", scope="enroll")
    params, client = await _client(request, services, db)
    user_id = (await mfa_api_user(services, db, token, "enroll", client_id=client.client_id)).user_id
    _allowed(client, WEBAUTHN)
    found = await user_queries.by_user_id(db, user_id)
    await db.commit()
    if found is None or found[0].id is None:
        raise InvalidToken("the token's user no longer exists", scope="enroll")
    realm = params.get("realm")
    if realm is not None and realm != found[1]:
        raise InvalidRequest("realm is not the user's connection")
    if found[1] not in client.connections:
        raise InvalidRequest("the connection was disabled")
    auth_session = secrets.token_urlsafe(32)
    try:
        options = await build_webauthn(services, db).registration_options(
            found[0].id,
            Purpose.PASSKEY_REGISTER,
            session_binding=auth_session,
            client_id=client.client_id,
            connection=found[1],
        )
    except AccountError as exc:
        raise InvalidRequest(str(exc)) from None
    return _json({"authn_params_public_key": options, "auth_session": auth_session})
