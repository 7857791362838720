"""The client_credentials grant over fakes: who may use it, the order of its checks, scopes, and the hooks."""

from dataclasses import replace

import pytest

from identity.oauth2.errors import AccessDenied, InvalidRequest, OAuthError, UnauthorizedClient
from identity.oauth2.grants.client_credentials import ClientCredentialsGrant, CredentialsExchange
from identity.oauth2.interfaces import ClientGrant
from identity.oauth2.requests import TokenRequest
from tests.unit.oauth2.fakes import (
    API,
    OTHER_API,
    SECRET,
    FakeClientGrants,
    FakeTenant,
    RecordingClientIssuer,
    make_client,
)

MACHINE = make_client("machine", method="client_secret_post", secret=SECRET, grant_types=("client_credentials",))
GRANT = ClientGrant(id="cgr_1", client_id="machine", audience=API.identifier, scopes=("read:a", "write:a", "gone:a"))
MFA_API = replace(OTHER_API, identifier="https://mfa.test/", requires_mfa=True)


class Setup:
    def __init__(self, *grants: ClientGrant, hooks=()) -> None:
        self.tenant = FakeTenant(clients=[MACHINE], apis=[API, OTHER_API, MFA_API])
        self.issuer = RecordingClientIssuer()
        self.grant = ClientCredentialsGrant(self.tenant, FakeClientGrants(*grants), self.issuer, hooks)

    async def handle(self, params, client=MACHINE, **transport):
        return await self.grant.handle(TokenRequest(params, **transport), client)

    async def refused(self, params, client=MACHINE) -> OAuthError:
        with pytest.raises(OAuthError) as caught:
            await self.handle(params, client)
        assert self.issuer.issued == []
        return caught.value


async def test_without_scope_the_client_gets_the_grants_scopes_that_the_api_still_has():
    setup = Setup(GRANT)
    response = await setup.handle({"audience": API.identifier})
    ((client, api, scopes, claims),) = setup.issuer.issued
    assert (client, api, scopes, claims) == (MACHINE, API, ("read:a", "write:a"), {})
    assert response.scope == "read:a write:a"


async def test_asked_scopes_within_the_grant_are_granted_as_asked():
    setup = Setup(GRANT)
    await setup.handle({"audience": API.identifier, "scope": "write:a"})
    assert setup.issuer.issued[0][2] == ("write:a",)


@pytest.mark.parametrize(("asked", "missing"), [("read:a delete:a", "delete:a"), ("gone:a openid", "gone:a openid")])
async def test_asked_scopes_beyond_the_grant_are_refused_by_name(asked, missing):
    error = await Setup(GRANT).refused({"audience": API.identifier, "scope": asked})
    assert error.to_body() == {
        "error": "access_denied",
        "error_description": f"Client has not been granted scopes: {missing}",
    }


@pytest.mark.parametrize(
    "client",
    [make_client("machine", grant_types=("client_credentials",)), replace(MACHINE, secret_hash=None)],
    ids=["public", "no-secret"],
)
async def test_a_client_that_keeps_no_secret_may_not_use_it(client):
    error = await Setup(GRANT).refused({"audience": API.identifier}, client=client)
    assert isinstance(error, UnauthorizedClient)
    assert error.description == "Grant type 'client_credentials' not allowed for the client."


async def test_audience_is_required_and_the_default_audience_does_not_apply():
    error = await Setup(GRANT).refused({})
    assert isinstance(error, InvalidRequest)
    assert error.description == "missing audience parameter"


@pytest.mark.parametrize("audience", ["https://unknown.test/", MFA_API.identifier], ids=["unknown", "mfa-api"])
async def test_an_unknown_or_user_only_api_is_not_found(audience):
    error = await Setup(GRANT, replace(GRANT, audience=MFA_API.identifier)).refused({"audience": audience})
    assert isinstance(error, AccessDenied)
    assert error.description == f"Service not found: {audience}"


async def test_an_api_without_a_client_grant_is_not_authorized():
    error = await Setup(GRANT).refused({"audience": OTHER_API.identifier})
    assert error.description == (
        f"Client 'machine' is not authorized to access resource server '{OTHER_API.identifier}'. "
        "You need to create a 'client-grant' associated to this API."
    )
    assert '"' not in error.description, "RFC 6749 §5.2 forbids double quotes in error_description"


async def test_hooks_see_the_exchange_and_add_claims_in_order():
    seen: list[CredentialsExchange] = []

    async def first(exchange):
        seen.append(exchange)
        return {"https://example.test/a": 1, "https://example.test/b": 1}

    async def second(exchange):
        return {"https://example.test/b": 2}

    async def nothing(exchange):
        return None

    setup = Setup(GRANT, hooks=[first, second, nothing])
    await setup.handle({"audience": API.identifier, "scope": "read:a"}, client_ip="192.0.2.4")
    assert seen == [CredentialsExchange(client=MACHINE, api=API, scopes=("read:a",), client_ip="192.0.2.4")]
    assert setup.issuer.issued[0][3] == {"https://example.test/a": 1, "https://example.test/b": 2}


async def test_a_hook_can_deny_the_exchange():
    async def deny(exchange):
        raise AccessDenied("not during maintenance")

    error = await Setup(GRANT, hooks=[deny]).refused({"audience": API.identifier})
    assert error.description == "not during maintenance"
