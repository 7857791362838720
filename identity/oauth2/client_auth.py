"""Client authentication at the token endpoint (RFC 6749 §2.3, Auth0 ``token_endpoint_auth_method``).

A client authenticates with exactly the method it is registered with: ``client_secret_basic`` (HTTP Basic),
``client_secret_post`` (``client_id`` and ``client_secret`` in the body) or ``none`` (a public client sends only its
``client_id``). Unknown client, wrong secret and wrong method all answer the same ``invalid_client``, so the endpoint
does not reveal which client ids exist.
"""

from __future__ import annotations

from identity.crypto import constant_time_equals, sha256_hex
from identity.oauth2.errors import InvalidClient, InvalidRequest
from identity.oauth2.interfaces import Client, TenantStore
from identity.oauth2.requests import BasicCredentials, TokenRequest

__all__ = ["AUTH_METHODS", "authenticate_client"]

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
# A fixed value to hash when the client is unknown, so that path costs the same as a wrong secret.
_NO_SECRET_HASH = sha256_hex("identity: no such client")


async def authenticate_client(request: TokenRequest, clients: TenantStore, *, challenge_realm: str) -> Client:
    """The authenticated client of ``request``; `InvalidClient` or `InvalidRequest` otherwise."""
    body_id = request.get("client_id")
    body_secret = request.get("client_secret")
    basic = request.basic
    if basic is not None:
        if body_secret is not None:
            # RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request.
            raise InvalidRequest("client authentication must use only one method")
        if body_id is not None and body_id not in (basic.client_id, basic.raw_client_id):
            raise InvalidRequest("client_id parameter does not match the authenticated client")
        method, client_ids, candidates = "client_secret_basic", _ids(basic), basic.secrets()
    else:
        if body_id is None:
            raise InvalidRequest("missing client_id parameter")
        method = "client_secret_post" if body_secret is not None else "none"
        client_ids, candidates = (body_id,), (body_secret,) if body_secret is not None else ()

    failure = InvalidClient(challenge_realm=challenge_realm if basic is not None else None)
    client = None
    for client_id in client_ids:
        if (client := await clients.client(client_id)) is not None:
            break
    if client is None:
        constant_time_equals(sha256_hex(candidates[0] if candidates else ""), _NO_SECRET_HASH)
        raise failure
    if client.token_endpoint_auth_method != method:
        raise failure
    if method != "none":
        expected = client.secret_hash or _NO_SECRET_HASH
        # Check every candidate (no early exit), so the time does not say which form matched.
        matches = [constant_time_equals(sha256_hex(secret), expected) for secret in candidates]
        if not any(matches) or client.secret_hash is None:
            raise failure
    return client


def _ids(basic: BasicCredentials) -> tuple[str, ...]:
    """RFC 6749 §2.3.1 form-decodes the Basic credentials; many clients send them raw. Accept both forms."""
    if basic.raw_client_id and basic.raw_client_id != basic.client_id:
        return (basic.client_id, basic.raw_client_id)
    return (basic.client_id,)
