"""The shipped rules, run through the pipeline as a tenant file lists them."""

from dataclasses import replace

import pytest

from identity.oauth2.errors import AccessDenied
from identity.rules import Rule, RulesEngine, load_handler
from identity.rules.builtin import add_roles, deny_ip_ranges, require_mfa_for_connections
from tests.unit.rules.test_pipeline import RESULT


async def run(handler, config, *, result=RESULT, client_ip="198.51.100.7"):
    engine = RulesEngine([Rule(name="builtin", handler=handler, config=config)])
    return await engine.run(
        result, protocol="oauth2-password", requested_scopes=None, client_ip=client_ip, user_agent=None
    )


@pytest.mark.parametrize("name", ["add_roles", "require_mfa_for_connections", "deny_ip_ranges"])
def test_the_documented_handler_paths_load(name):
    assert load_handler(f"identity.rules.builtin:{name}").__name__ == name


# -- add_roles --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["https://acme.test/", "https://acme.test"])
async def test_add_roles_puts_the_roles_in_both_tokens_under_the_namespace(namespace):
    outcome = await run(add_roles, {"namespace": namespace})
    assert outcome.result.access_claims["https://acme.test/roles"] == ["admin"]
    assert outcome.result.id_claims["https://acme.test/roles"] == ["admin"]


async def test_add_roles_has_a_default_namespace():
    outcome = await run(add_roles, {})
    assert outcome.result.access_claims["https://identity.local/roles"] == ["admin"]


@pytest.mark.parametrize(
    ("app_metadata", "roles"),
    [({}, []), ({"roles": "admin"}, []), ({"roles": ["a", 2, None]}, ["a", "2", "None"])],
    ids=["none", "not-a-list", "stringified"],
)
async def test_add_roles_always_issues_a_list_of_strings(app_metadata, roles):
    result = replace(RESULT, user=replace(RESULT.user, app_metadata=app_metadata))
    outcome = await run(add_roles, {"namespace": "https://acme.test/"}, result=result)
    assert outcome.result.access_claims["https://acme.test/roles"] == roles


async def test_add_roles_with_a_namespace_that_is_not_a_url_denies_naming_the_rule():
    with pytest.raises(AccessDenied, match="Rule 'builtin' set an invalid claim"):
        await run(add_roles, {"namespace": "acme"})


# -- require_mfa_for_connections --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connections", "required"), [(["customers"], True), (["employees"], False), ([], False), (None, False)]
)
async def test_require_mfa_for_the_listed_connections_only(connections, required):
    config = {} if connections is None else {"connections": connections}
    outcome = await run(require_mfa_for_connections, config)
    assert outcome.mfa_required is required


# -- deny_ip_ranges ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cidrs", [["198.51.100.0/24"], ["10.0.0.0/8", "198.51.100.7"], ["198.51.100.9/24"]])
async def test_deny_ip_ranges_refuses_addresses_inside_a_listed_network(cidrs):
    with pytest.raises(AccessDenied) as caught:
        await run(deny_ip_ranges, {"cidrs": cidrs})
    assert caught.value.description == "Access from your network is not allowed"


async def test_deny_ip_ranges_gives_the_configured_reason():
    with pytest.raises(AccessDenied) as caught:
        await run(deny_ip_ranges, {"cidrs": ["198.51.100.0/24"], "reason": "Not from the lab"})
    assert caught.value.description == "Not from the lab"


async def test_deny_ip_ranges_matches_ipv6():
    with pytest.raises(AccessDenied):
        await run(deny_ip_ranges, {"cidrs": ["2001:db8::/32"]}, client_ip="2001:db8::1")


@pytest.mark.parametrize(
    ("client_ip", "cidrs"),
    [("203.0.113.1", ["198.51.100.0/24"]), (None, ["0.0.0.0/0"]), ("not-an-address", ["0.0.0.0/0"]), ("1.2.3.4", [])],
    ids=["outside", "unknown-address", "unparsable-address", "no-ranges"],
)
async def test_deny_ip_ranges_lets_other_logins_through(client_ip, cidrs):
    outcome = await run(deny_ip_ranges, {"cidrs": cidrs}, client_ip=client_ip)
    assert outcome.result.scopes == RESULT.scopes
