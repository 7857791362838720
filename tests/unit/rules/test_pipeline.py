"""The rules pipeline with rules written inline: order, what a rule sees, what it may change, and every failure."""

import asyncio
import contextlib
import logging
import re
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from identity.clock import FrozenClock
from identity.oauth2.errors import AccessDenied
from identity.oauth2.interfaces import GrantResult, RuleOutcome, User
from identity.rules import InteractionRequired, Rule, RuleLoadError, RulesEngine, load_handler
from tests.unit.oauth2.fakes import API, CUSTOMERS, make_client

CLIENT = replace(make_client(grant_types=("password", "refresh_token")), metadata={"tier": "gold"})
ALICE = User(
    user_id="auth0|alice",
    connection="customers",
    email="alice@example.test",
    email_verified=True,
    name="Alice",
    logins_count=3,
    app_metadata={"roles": ["admin"]},
    user_metadata={"lang": "fr"},
)
RESULT = GrantResult(
    grant_type="password",
    client=CLIENT,
    user=ALICE,
    connection=CUSTOMERS,
    api=API,
    audience=API.identifier,
    scopes=("openid", "read:a"),
    access_claims={"https://example.test/before": 1},
    id_claims={"https://example.test/before-id": 1},
)
GENERIC = "Access denied: a rule failed"


async def run(*rules: Rule, result: GrantResult = RESULT, protocol: str = "oauth2-password") -> RuleOutcome:
    return await RulesEngine(rules).run(
        result, protocol=protocol, requested_scopes=("openid", "read:a"), client_ip="198.51.100.7", user_agent="ua/1"
    )


async def denied(*rules: Rule, result: GrantResult = RESULT):
    with pytest.raises((AccessDenied, InteractionRequired)) as caught:
        await run(*rules, result=result)
    return caught.value


def rule(name, handler, **options) -> Rule:
    return Rule(name=name, handler=handler, **options)


# -- running --------------------------------------------------------------------------------------------------------


async def test_no_rules_leaves_the_result_as_it_was():
    outcome = await run()
    assert outcome == RuleOutcome(RESULT, mfa_required=False)


async def test_rules_run_in_order_each_with_its_own_config():
    seen = []

    def first(event, api):
        seen.append(("first", dict(event.config)))
        api.access_token.remove_scope("read:a")

    async def second(event, api):
        seen.append(("second", dict(event.config), list(api.access_token.scopes)))

    await run(rule("first", first, config={"n": 1}), rule("second", second, config={"n": 2}))
    assert seen == [("first", {"n": 1}), ("second", {"n": 2}, ["openid"])], "a later rule sees what earlier ones did"


async def test_the_event_describes_the_exchange():
    events = []
    await run(rule("look", lambda event, api: events.append(event)), protocol="oauth2-refresh-token")
    (event,) = events
    assert (event.transaction.protocol, event.transaction.requested_scopes) == (
        "oauth2-refresh-token",
        ("openid", "read:a"),
    )
    assert event.transaction.requested_audience == API.identifier
    assert (event.client.client_id, event.client.name, dict(event.client.metadata)) == ("app", "app", {"tier": "gold"})
    assert (event.connection.name, event.connection.strategy) == ("customers", "auth0")
    assert (event.user.user_id, event.user.email, event.user.email_verified) == (ALICE.user_id, ALICE.email, True)
    assert (event.user.name, event.user.logins_count) == ("Alice", 3)
    assert dict(event.user.app_metadata) == {"roles": ["admin"]}
    assert dict(event.user.user_metadata) == {"lang": "fr"}
    assert (event.request.ip, event.request.user_agent) == ("198.51.100.7", "ua/1")
    assert [method["name"] for method in event.authentication.methods] == ["pwd"]


async def test_method_timestamps_are_now_on_the_injected_clock_for_a_fresh_login():
    clock = FrozenClock(1_800_000_000.9)
    seen = []
    await RulesEngine([rule("see", lambda event, api: seen.append(event))], clock).run(
        replace(RESULT, amr=("pwd", "mfa")), protocol="oauth2-password", requested_scopes=None, client_ip=None,
        user_agent=None,
    )  # fmt: skip
    (event,) = seen
    assert [dict(method) for method in event.authentication.methods] == [
        {"name": "pwd", "timestamp": 1_800_000_000},
        {"name": "mfa", "timestamp": 1_800_000_000},
    ]


async def test_on_refresh_method_timestamps_stay_the_original_authentication_time():
    logged_in_at = 1_800_000_000.0
    clock = FrozenClock(logged_in_at)
    seen = []
    engine = RulesEngine([rule("see", lambda event, api: seen.append(event))], clock)
    clock.advance(5 * 3600)  # five hours of refreshes later
    refresh = replace(RESULT, grant_type="refresh_token", authenticated_at=logged_in_at)
    await engine.run(refresh, protocol="oauth2-refresh-token", requested_scopes=None, client_ip=None, user_agent=None)
    (event,) = seen
    assert [method["timestamp"] for method in event.authentication.methods] == [int(logged_in_at)]
    assert clock.now() - event.authentication.methods[0]["timestamp"] == 5 * 3600


async def test_a_code_exchange_shows_its_auth_time_to_rules():
    clock = FrozenClock(1_800_000_000.0)
    seen = []
    engine = RulesEngine([rule("see", lambda event, api: seen.append(event))], clock)
    await engine.run(
        replace(RESULT, auth_time=1_799_999_990.0), protocol="oauth2-password", requested_scopes=None, client_ip=None,
        user_agent=None,
    )  # fmt: skip
    assert [method["timestamp"] for method in seen[0].authentication.methods] == [1_799_999_990]


async def test_the_event_is_read_only_and_a_rule_that_writes_to_it_fails():
    def scribble(event, api):
        event.user.app_metadata["roles"] = ["root"]

    error = await denied(rule("scribble", scribble))
    assert (type(error), error.description) == (AccessDenied, GENERIC)
    assert ALICE.app_metadata == {"roles": ["admin"]}


async def test_a_sync_rule_may_return_an_awaitable():
    async def later(api):
        api.access_token.set_custom_claim("https://example.test/later", True)

    outcome = await run(rule("wrapped", lambda event, api: later(api)))
    assert outcome.result.access_claims["https://example.test/later"] is True


# -- deny, raise, time out, redirect ----------------------------------------------------------------------------------


async def test_deny_answers_access_denied_with_the_reason_and_stops_the_pipeline():
    ran = []

    def deny(event, api):
        api.access.deny("only staff")

    error = await denied(rule("deny", deny), rule("after", lambda event, api: ran.append(1)))
    assert error.to_body() == {"error": "access_denied", "error_description": "only staff"}
    assert error.status_code == 403
    assert ran == []


async def test_deny_without_a_reason_says_access_denied():
    error = await denied(rule("deny", lambda event, api: api.access.deny("")))
    assert error.description == "Access denied"


async def test_a_rule_that_swallows_its_own_denial_still_denies():
    def sneaky(event, api):
        with contextlib.suppress(Exception):
            api.access.deny("no")

    error = await denied(rule("sneaky", sneaky))
    assert (type(error), error.description) == (AccessDenied, "no")


async def test_a_rule_that_raises_denies_with_a_generic_description_and_logs_why(caplog):
    def broken(event, api):
        raise KeyError("secret detail")

    with caplog.at_level(logging.ERROR, logger="identity.rules"):
        error = await denied(rule("broken", broken))
    assert error.to_body() == {"error": "access_denied", "error_description": GENERIC}
    assert "secret detail" not in error.description
    (record,) = [r for r in caplog.records if r.name == "identity.rules" and r.levelno == logging.ERROR]
    assert record.getMessage() == "rule broken raised"
    assert record.exc_info is not None


async def test_an_async_rule_that_times_out_is_cancelled_and_denies(caplog):
    cancelled = asyncio.Event()

    async def slow(event, api):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with caplog.at_level(logging.ERROR, logger="identity.rules"):
        error = await denied(rule("slow", slow, timeout=0.05))
    assert (type(error), error.description) == (AccessDenied, GENERIC)
    assert cancelled.is_set()
    assert "rule slow timed out after 0.1 s" in caplog.text


async def test_a_sync_rule_that_times_out_denies_and_its_result_is_ignored():
    release = threading.Event()

    def slow(event, api):
        release.wait(10)
        api.access_token.set_custom_claim("https://example.test/late", True)

    try:
        error = await denied(rule("slow", slow, timeout=0.05))
    finally:
        release.set()  # the worker thread cannot be killed: let it finish
    assert (type(error), error.description) == (AccessDenied, GENERIC)


async def test_a_redirect_is_interaction_required():
    def redirect(event, api):
        assert api.redirect.can_redirect() is False
        api.redirect.send_user_to("https://example.test/consent", query={"a": "b"})

    error = await denied(rule("redirect", redirect))
    assert isinstance(error, InteractionRequired)
    assert (error.status_code, error.to_body()) == (
        403,
        {"error": "interaction_required", "error_description": "Redirects are not possible in this flow"},
    )


async def test_a_swallowed_redirect_is_still_interaction_required():
    def sneaky(event, api):
        with contextlib.suppress(Exception):
            api.redirect.send_user_to("https://example.test/")

    assert isinstance(await denied(rule("sneaky", sneaky)), InteractionRequired)


# -- claims -----------------------------------------------------------------------------------------------------------


async def test_custom_claims_are_added_to_both_tokens():
    def claims(event, api):
        api.access_token.set_custom_claim("https://example.test/roles", ["admin"])
        api.id_token.set_custom_claim("https://example.test/nick", "al")

    outcome = await run(rule("claims", claims))
    assert outcome.result.access_claims == {"https://example.test/before": 1, "https://example.test/roles": ["admin"]}
    assert outcome.result.id_claims == {"https://example.test/before-id": 1, "https://example.test/nick": "al"}


@pytest.mark.parametrize(
    ("target", "key", "value", "problem"),
    [
        ("access_token", "roles", 1, "custom claim 'roles' must be namespaced with a URL"),
        ("id_token", "sub", "someone", "custom claim 'sub' must be namespaced with a URL"),
        ("access_token", "https://example.test/x", {1, 2}, "custom claim 'https://example.test/x' has a value that"),
        ("id_token", "https://example.test/nan", float("nan"), "has a value that is not JSON"),
    ],
)
async def test_an_invalid_claim_denies_naming_the_rule(target, key, value, problem):
    def bad(event, api):
        getattr(api, target).set_custom_claim(key, value)

    error = await denied(rule("claim-rule", bad))
    assert isinstance(error, AccessDenied)
    assert error.description.startswith("Rule 'claim-rule' set an invalid claim: ")
    assert problem in error.description


async def test_claims_written_directly_are_checked_and_the_bad_ones_dropped():
    def direct(event, api):
        api.access_token.claims["https://example.test/ok"] = 1
        api.access_token.claims["iss"] = "https://evil.test/"
        api.id_token.claims["https://example.test/set"] = {1}

    outcome = await run(rule("direct", direct))
    assert outcome.result.access_claims == {"https://example.test/before": 1, "https://example.test/ok": 1}
    assert outcome.result.id_claims == {"https://example.test/before-id": 1}


# -- scopes -----------------------------------------------------------------------------------------------------------


async def test_scopes_can_be_added_within_the_api_and_removed():
    def scopes(event, api):
        api.access_token.add_scope("write:a")
        api.access_token.add_scope("email")
        api.access_token.add_scope("write:a")  # once
        api.access_token.remove_scope("read:a")
        api.access_token.remove_scope("never-granted")

    outcome = await run(rule("scopes", scopes))
    assert outcome.result.scopes == ("openid", "write:a", "email")


@pytest.mark.parametrize("scope", ["admin:everything", "read:o", "offline_access"])
async def test_add_scope_ignores_what_the_api_does_not_define(scope):
    outcome = await run(rule("wider", lambda event, api: api.access_token.add_scope(scope)))
    assert outcome.result.scopes == ("openid", "read:a")


async def test_scopes_written_directly_are_cut_to_the_api():
    def direct(event, api):
        api.access_token.scopes.extend(["admin:everything", "delete:a", "offline_access", 7])

    outcome = await run(rule("direct", direct))
    assert outcome.result.scopes == ("openid", "read:a", "delete:a")


@pytest.mark.parametrize(
    ("before", "after"),
    [(("openid", "offline_access"), ("openid", "offline_access")), (("openid",), ("openid",))],
    ids=["grant-had-it", "grant-did-not"],
)
async def test_offline_access_stays_only_if_the_grant_had_it(before, after):
    offline = replace(API, allow_offline_access=True)

    def widen(event, api):
        api.access_token.add_scope("offline_access")
        api.access_token.scopes.append("offline_access")

    outcome = await run(rule("widen", widen), result=replace(RESULT, api=offline, scopes=before))
    assert outcome.result.scopes == after


async def test_a_scope_list_replaced_by_something_else_grants_no_scope():
    def replace_list(event, api):
        api.access_token.scopes = "openid read:a"

    outcome = await run(rule("replace", replace_list))
    assert outcome.result.scopes == ()


# -- multifactor and app_metadata -------------------------------------------------------------------------------------


async def test_multifactor_enable_demands_a_second_factor():
    outcome = await run(rule("mfa", lambda event, api: api.multifactor.enable("any", allow_remember_browser=True)))
    assert outcome.mfa_required is True
    assert (await run(rule("noop", lambda event, api: None))).mfa_required is False


async def test_set_app_metadata_travels_with_the_result():
    def remember(event, api):
        api.user.set_app_metadata("plan", {"name": "pro"})
        api.user.set_app_metadata("visits", 4)

    outcome = await run(rule("remember", remember))
    assert outcome.result.app_metadata == {"plan": {"name": "pro"}, "visits": 4}
    assert outcome.result.user.app_metadata == {"roles": ["admin"]}, "nothing is saved by the rules themselves"


async def test_set_app_metadata_refuses_a_value_that_is_not_json():
    error = await denied(rule("meta", lambda event, api: api.user.set_app_metadata("when", object())))
    assert isinstance(error, AccessDenied)
    assert error.description == "Rule 'meta' set an invalid claim: app_metadata key 'when' has a value that is not JSON"


async def test_app_metadata_written_directly_keeps_only_json_values():
    def direct(event, api):
        api.user.app_metadata["ok"] = [1, 2]
        api.user.app_metadata["bad"] = {1, 2}

    outcome = await run(rule("direct", direct))
    assert outcome.result.app_metadata == {"ok": [1, 2]}


async def test_app_metadata_replaced_by_something_else_is_ignored():
    def replace_dict(event, api):
        api.user.app_metadata = ["not", "a", "mapping"]

    outcome = await run(rule("replace", replace_dict))
    assert outcome.result.app_metadata == {}


# -- loading handlers -------------------------------------------------------------------------------------------------


def test_load_handler_imports_module_and_function():
    handler = load_handler("tests.rule_handlers:record")
    from tests import rule_handlers

    assert handler is rule_handlers.record


def test_load_handler_loads_a_file_once(tmp_path: Path):
    path = tmp_path / "my_rules.py"
    path.write_text("CALLS = []\n\ndef on_login(event, api):\n    CALLS.append(1)\n")
    first = load_handler(f"{path}:on_login")
    assert load_handler(f"{path}:on_login") is first


@pytest.mark.parametrize("spec", ["no_colon", ":function", "module:", ""])
def test_load_handler_refuses_a_malformed_path(spec):
    with pytest.raises(RuleLoadError, match=re.escape("must be written 'module:function' or 'file.py:function'")):
        load_handler(spec)


def test_load_handler_reports_an_import_failure(tmp_path: Path):
    with pytest.raises(RuleLoadError, match=re.escape("cannot import 'tests.no_such_rules_module'")):
        load_handler("tests.no_such_rules_module:f")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(RuleLoadError, match="boom at import"):
        load_handler(f"{broken}:f")


def test_load_handler_refuses_a_missing_or_uncallable_attribute():
    with pytest.raises(RuleLoadError, match="has no callable 'SEEN'"):
        load_handler("tests.rule_handlers:SEEN")
    with pytest.raises(RuleLoadError, match="has no callable 'absent'"):
        load_handler("tests.rule_handlers:absent")
